"""Hedged requests: when an attempt is slow to commit, the next target starts alongside it.

With a chain's ``hedge_after: S``, ``race`` runs the first pick with a timer beside it; if it
has not answered (a unary call: its whole answer; a stream: its commit point) after S seconds,
and the budget allows, the next target that may be tried now starts in parallel. The first *answer*
wins; the other attempt is cancelled with ``HEDGE_LOST`` (its connection is closed, its breaker
is released without a verdict and its attempt is recorded as ``hedge_lost``: a lost hedge is no
failure of its target). A *failure* of either does not end the race: it is recorded and judged
as usual while the other goes on; when both fail, the chain goes on without further hedging. At
most one hedge per request.

``HedgeBudget`` keeps, per chain, the requests and the hedges of the last 60 s in one-second
buckets: a hedge is allowed while ``hedges + 1 <= hedge_budget * requests``, so a slow provider
is not sent twice its load.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from .attempt import AttemptFn, Committed, Won
from .policy import Routes, Target
from .stream import close_quietly

if TYPE_CHECKING:
    from .loop import Loop, Run

T = TypeVar("T")
HEDGE_LOST = "anyllm-hedge-lost"
WINDOW = 60  # seconds


class _Window:
    __slots__ = ("buckets", "hedges", "requests")

    def __init__(self) -> None:
        self.buckets: dict[int, list[int]] = {}  # second -> [requests, hedges]
        self.requests = 0
        self.hedges = 0


class HedgeBudget:
    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._chains: dict[str, _Window] = {}

    def _window(self, chain: str) -> tuple[_Window, list[int]]:
        window = self._chains.get(chain)
        if window is None:
            window = self._chains[chain] = _Window()
        second = int(self._clock())
        bucket = window.buckets.get(second)
        if bucket is None:
            for old in [s for s in window.buckets if s <= second - WINDOW]:
                gone = window.buckets.pop(old)
                window.requests -= gone[0]
                window.hedges -= gone[1]
            bucket = window.buckets[second] = [0, 0]
        return window, bucket

    def request(self, chain: str) -> None:
        window, bucket = self._window(chain)
        bucket[0] += 1
        window.requests += 1

    def allow(self, chain: str, budget: float) -> bool:
        window, _ = self._window(chain)
        return window.hedges + 1 <= budget * window.requests

    def hedged(self, chain: str) -> None:
        window, bucket = self._window(chain)
        bucket[1] += 1
        window.hedges += 1


async def race(
    loop: Loop, run: Run, first: Target, attempt: AttemptFn[T], routes: Routes
) -> Won[T] | None:
    """``first``, hedged by the next available target after ``hedge_after`` (see above).

    The first attempt runs inline, in the request's own task, with one timer beside it: an
    unhedged request (nearly all of them) pays for nothing more. When the timer fires the hedge
    starts as a task; if it answers (or fails in a way that stops the chain) before the first
    one, it interrupts the request's task with ``HEDGE_LOST``, which ends the first attempt as
    a lost hedge (its connection closed, no breaker verdict) and hands over the hedge's result.
    """
    me = asyncio.current_task()
    assert me is not None
    hedge: asyncio.Task[Won[T] | None] | None = None
    first_over = False

    def interrupt(task: asyncio.Task[Won[T] | None]) -> None:
        if first_over or task.cancelled():
            return
        if task.exception() is not None or task.result() is not None:
            me.cancel(HEDGE_LOST)  # the hedge answered first (or stopped the chain)

    def start() -> None:
        nonlocal hedge
        if not loop.hedges.allow(run.chain.name, run.policy.hedge_budget):
            return
        second = loop.pick(run, fallback=False)
        if second is None:
            return
        run.hedged = True
        loop.hedges.hedged(run.chain.name)
        hedge = asyncio.ensure_future(loop.target(run, second, attempt, routes))
        hedge.add_done_callback(interrupt)

    timer = asyncio.get_running_loop().call_later(run.policy.hedge_after or 0.0, start)
    handed_over = False  # the hedge's answer is the one returned
    try:
        try:
            won = await loop.target(run, first, attempt, routes)
        except asyncio.CancelledError as exc:
            if hedge is None or HEDGE_LOST not in exc.args or me.uncancel() > 0:
                raise  # the request itself is cancelled: the hedge goes too (below)
            run.outcome.hedge = "won" if hedge.exception() is None else "failed"
            handed_over = True
            return hedge.result()  # an answer, or the error that stopped the chain
        finally:
            first_over = True
            timer.cancel()
        if hedge is None:
            return won
        if won is not None:
            run.outcome.hedge = "lost"
            return won
        run.outcome.hedge = "failed"  # unless the hedge still answers:
        result = await hedge
        handed_over = True
        if result is not None:
            run.outcome.hedge = "won"
        return result
    finally:
        if hedge is not None and not handed_over:
            if not hedge.done():
                hedge.cancel(HEDGE_LOST if run.outcome.hedge == "lost" else None)
            await asyncio.gather(hedge, return_exceptions=True)
            await _let_go(hedge)


async def _let_go(task: asyncio.Future[Won[T] | None]) -> None:
    """An answer that came too late (both answered in the same turn): give back what it holds."""
    if task.cancelled() or task.exception() is not None:
        return
    won = task.result()
    if won is None:
        return
    won.lease.release()
    if isinstance(won.value, Committed):
        await close_quietly(won.value.events)
