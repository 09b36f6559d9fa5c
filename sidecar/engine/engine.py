"""The fallback engine: what the surfaces call (``create``, ``open_stream``, ``count_tokens``).

For each request the engine admits it (engine/lifecycle.py), picks a chain (``x-anyllm-chain``,
else routing by model) and hands the chain to the fallback loop (engine/loop.py) with what an
attempt *is* for that call kind: a whole message (``create``), a stream up to its commit point
(``open_stream``), a token count. The loop walks the chain's targets — groups balanced by
engine/balance.py, targets open in their breaker or predicted over their rate limit
(engine/limits.py) skipped, a slow attempt hedged (engine/hedge.py) — and returns the first
answer with the lease it holds; when every target failed it raises ``ChainExhaustedError``.

Streams have a commit point: the engine reads an attempt's events, holding back
``message_start``, pings and empty block starts, until the first real content event (or a
complete empty answer). Until then any failure, including the time-to-first-token timer, falls
back invisibly. ``open_stream`` returns only after that, so a surface can still answer a
pre-commit failure with a proper status. After it nothing is retried: ``EngineStream`` raises
the failure (idle timeout, cut, in-band error) for the surface to end the stream explicitly.

A backend with a configured ``max_connections`` has that many slots (``slots.py``): an attempt
takes one before its timers start and before its breaker is asked, so waiting for one is the
sidecar's own time; none free within ``pool_timeout`` is a ``LocalLimitError`` (529 /
RESOURCE_EXHAUSTED) with no attempt, no breaker movement and no fallback.

A call in OpenAI's dialect (the OpenAI door) carries what its translation into ``request``
lost (``Call.openai_notes``): an attempt whose target answered in Anthropic's dialect, i.e.
was sent that translation, adds them to its degradations; one that relayed the caller's own
body (``is_relayed_chat``) lost nothing.

Every request fills an ``Outcome`` (attempts, who answered, skips, hedge, exhausted); errors
carry its metadata so both surfaces can report it. Backoff sleeps, the clock and the random
numbers are injectable so tests run without real waiting.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TypeVar

from sidecar.backends.base import Backend
from sidecar.errors import FailureKind, InvalidRequestError
from sidecar.model import (
    Answer,
    Call,
    CountCall,
    RawEvent,
    RawMessage,
    StreamItem,
    TokenCount,
    answer_usage,
    is_relayed_chat,
)

from .attempt import AttemptFn, Committed, Try, Won
from .balance import Balancer, InFlight
from .breaker import Breakers
from .hedge import HedgeBudget
from .lifecycle import Admission, Generation
from .limits import RateLimits
from .loop import Loop
from .outcome import NullObserver, Observer, Outcome
from .policy import Chain, Routes, Target
from .stream import EngineStream, bounded, close_quietly, until_commit
from .validation import check_request

T = TypeVar("T")


class Engine:
    def __init__(
        self,
        *,
        backends: Mapping[str, Backend],
        routes: Routes,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        jitter: Callable[[], float] = random.random,
        observer: Observer | None = None,
        max_concurrent: int = 1 << 30,
        report_degradations: bool = True,
        limits: Mapping[str, int] | None = None,
        rand: Callable[[], float] = random.random,
    ) -> None:
        # limits: backend name -> its max_connections (0 or absent: unbounded); see slots.py.
        self._gen = Generation(backends, routes, limits or {})
        self._observer = observer or NullObserver()
        self._admission = Admission(self._observer, max_concurrent)
        self.breakers = Breakers(clock)
        self.limits = RateLimits(clock)
        self.in_flight_by_target = InFlight()
        self.loop = Loop(
            breakers=self.breakers,
            limits=self.limits,
            balancer=Balancer(self.in_flight_by_target, clock, rand),
            in_flight=self.in_flight_by_target,
            hedges=HedgeBudget(clock),
            sleep=sleep,
            jitter=jitter,
            report_degradations=report_degradations,
            observer=self._observer,
        )

    # ------------------------------------------------------------------ routing, lifecycle

    @property
    def routes(self) -> Routes:
        return self._gen.routes

    def _chain_for(self, routes: Routes, model: str, requested: str | None) -> tuple[Chain, str]:
        if requested is not None:
            chain = routes.chains.get(requested)
            if chain is None:
                known = ", ".join(sorted(routes.chains))
                raise InvalidRequestError(
                    f"x-anyllm-chain: unknown chain {requested!r} (configured: {known})",
                    field="x-anyllm-chain",
                )
            return chain, "header"
        return routes.resolve(model)

    def _start(
        self, kind: str, surface: str, request_id: str, model: str, requested: str | None
    ) -> tuple[Chain, Outcome, Generation]:
        self._admission.admit(surface, kind)
        gen = self._gen
        chain, route = self._chain_for(gen.routes, model, requested)
        outcome = Outcome(
            request_id=request_id,
            chain=chain.name,
            kind=kind,
            surface=surface,
            route=route,
            started=asyncio.get_running_loop().time(),
        )
        self._admission.started(outcome, gen)
        return chain, outcome, gen

    @property
    def draining(self) -> bool:
        return self._admission.draining

    @draining.setter
    def draining(self, value: bool) -> None:
        self._admission.draining = value

    @property
    def in_flight(self) -> int:
        return self._admission.in_flight

    async def wait_idle(self) -> None:
        """Return once no request is in flight."""
        await self._admission.wait_idle()

    def abort_all(self) -> int:
        """End every request still running with an explicit overloaded_error (the drain's grace
        is over): each caller gets an error response, an error event or an UNAVAILABLE status.
        Returns how many were running."""
        return self._admission.abort_all()

    def model_names(self) -> list[str]:
        """Names a caller can put in ``model`` to pick a chain (for ``/v1/models``)."""
        return sorted(self._gen.routes.chains)

    def reload(
        self,
        backends: Mapping[str, Backend],
        routes: Routes,
        limits: Mapping[str, int] | None = None,
    ) -> None:
        """New requests use ``backends`` and ``routes``; requests in flight finish on the old
        ones, whose connections are closed once the last of them is done. Breakers, rate-limit
        windows and balancing state persist."""
        old, self._gen = self._gen, Generation(backends, routes, limits or {})
        old.retired = True
        if old.in_flight == 0:
            old.close_soon()

    async def aclose(self) -> None:
        await self._gen.close()

    def _finish(self, outcome: Outcome, gen: Generation, result: str, target: Target) -> None:
        self.limits.used(target, (outcome.input_tokens or 0) + (outcome.output_tokens or 0))
        self._admission.finish(outcome, gen, result)

    # ------------------------------------------------------------------ call kinds

    def _run(
        self,
        chain: Chain,
        gen: Generation,
        outcome: Outcome,
        deadline: float | None,
        attempt: AttemptFn[T],
    ) -> Awaitable[Won[T]]:
        return self.loop.run(chain, outcome, gen.backends, gen.slots, gen.routes, deadline, attempt)

    async def create(self, call: Call) -> tuple[Answer, Outcome]:
        check_request(call.request)
        chain, outcome, gen = self._start(
            "create", call.surface, call.request_id, call.request.model, call.chain
        )

        async def attempt(t: Try) -> Answer:
            model = t.target.model or call.request.model
            answering = t.backend.create(
                call, model, t.notes, connect_timeout=t.policy.connect_timeout
            )
            answer = await _bounded(answering, t.backend.name, t.end, t.deadline)
            if call.openai_notes and not is_relayed_chat(answer):
                t.notes.extend(call.openai_notes)  # this target was sent the translation
            return answer

        won = await self._admission.observed(
            outcome, gen, self._run(chain, gen, outcome, call.deadline, attempt)
        )
        won.lease.release()
        message = won.value
        outcome.input_tokens, outcome.output_tokens = answer_usage(message)
        if type(message) is RawMessage:
            outcome.upstream_headers = message.headers
        self._finish(outcome, gen, "ok", won.target)
        return message, outcome

    async def open_stream(self, call: Call) -> EngineStream:
        """Try targets until one stream commits; raise if none does."""
        check_request(call.request)
        chain, outcome, gen = self._start(
            "stream", call.surface, call.request_id, call.request.model, call.chain
        )

        async def attempt(t: Try) -> Committed:
            events = t.backend.stream(
                call,
                t.target.model or call.request.model,
                t.notes,
                connect_timeout=t.policy.connect_timeout,
            )
            ttft_end = min(asyncio.get_running_loop().time() + t.policy.ttft_timeout, t.end)
            held: list[StreamItem] = []
            try:
                await until_commit(events, held, ttft_end, t.deadline, t.backend.name)
            except BaseException:
                await close_quietly(events)
                raise
            if call.openai_notes and not is_relayed_chat(held[0]):
                t.notes.extend(call.openai_notes)  # this target was sent the translation
            return Committed(events, held, t.end, t.policy, t.backend.name)

        won = await self._admission.observed(
            outcome, gen, self._run(chain, gen, outcome, call.deadline, attempt)
        )
        committed, target = won.value, won.target
        outcome.ttft = asyncio.get_running_loop().time() - outcome.started
        if type(committed.held[0]) is RawEvent:
            outcome.upstream_headers = committed.held[0].headers
        return EngineStream(
            committed.events,
            committed.held,
            outcome,
            idle_timeout=committed.policy.idle_timeout,
            attempt_end=committed.end,
            backend=committed.backend,
            finish=lambda done, result: self._finish(done, gen, result, target),
            tasks=self._admission.tasks,
            # once the body was read to its end: the connection is free
            on_close=won.lease.release,
        )

    async def count_tokens(self, call: CountCall) -> tuple[TokenCount, Outcome]:
        check_request(call.request)
        picked, outcome, gen = self._start(
            "count_tokens", call.surface, call.request_id, call.request.model, call.chain
        )

        async def attempt(t: Try) -> TokenCount:
            counting = t.backend.count_tokens(call, t.target.model or call.request.model)
            count = await _bounded(counting, t.backend.name, t.end, t.deadline)
            if count.estimated:
                t.notes.append("count_tokens.estimated")
            return count

        won = await self._admission.observed(
            outcome, gen, self._run(picked, gen, outcome, None, attempt)
        )
        won.lease.release()
        outcome.input_tokens = won.value.input_tokens
        self._admission.finish(outcome, gen, "ok")
        return won.value, outcome


def _bounded(work: Awaitable[T], backend: str, end: float, deadline: float) -> Awaitable[T]:
    """``work`` within the attempt's end; a timeout there is the attempt's (or the budget's)."""
    return bounded(work, end, backend, deadline, FailureKind.READ_TIMEOUT)
