"""Hedged requests: when an attempt is slow to commit, the next target starts alongside it.

With a chain's ``hedge_after: S``, ``race`` runs the first pick as a task; if it has not
answered (a unary call: its whole answer; a stream: its commit point) after S seconds, and the
budget allows, the next target that may be tried now starts in parallel. The first *answer*
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
    """``first``, hedged by the next available target after ``hedge_after`` (see above)."""
    hedge_after = run.policy.hedge_after or 0.0
    a = asyncio.ensure_future(loop.target(run, first, attempt, routes))
    tasks = {a}
    winner: asyncio.Future[Won[T] | None] | None = None
    try:
        done, _ = await asyncio.wait(tasks, timeout=hedge_after)
        if done:
            return a.result()
        if not loop.hedges.allow(run.chain.name, run.policy.hedge_budget):
            return await a
        second = loop.pick(run, fallback=False)
        if second is None:
            return await a
        run.hedged = True
        loop.hedges.hedged(run.chain.name)
        b = asyncio.ensure_future(loop.target(run, second, attempt, routes))
        tasks.add(b)
        while tasks:
            done, tasks = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                won = task.result()  # a chain-stopping error propagates, cancelling the other
                if won is not None and winner is None:
                    winner = task
                    run.outcome.hedge = "won" if task is b else "lost"
            if winner is not None:
                tasks |= done - {winner}  # both answered at once: the other is let go below
                return winner.result()
        run.outcome.hedge = "failed"  # both failed: the chain goes on
        return None
    finally:
        for task in tasks:
            if not task.done():
                # With a winner the other is a lost hedge; else the request itself is ending.
                task.cancel(HEDGE_LOST) if winner is not None else task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for task in tasks:
            await _let_go(task)


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
