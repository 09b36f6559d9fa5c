"""The fallback engine: one generic loop over the ordered targets of a chain.

For each request the engine picks a chain (``x-anyllm-chain``, else routing by model) and runs
``_run``: targets in order, skipping those whose circuit breaker is open (when all are open, the
one closest to recovery is still tried). Each attempt gets ``min(attempt_timeout, what is left
of the request's budget)``. ``classify`` decides what a failure means: move on (connection
errors, timeouts, 408/429/5xx, broken streams), stop (any other status: returned as is), or go
to the chain's ``on_context_overflow`` chain. A failure that moves on is first retried on the
same target while the policy allows (backoff with full jitter, or the upstream's Retry-After
when it fits). When every target failed, the last error is raised as ``ChainExhaustedError``.

What an attempt *is* differs per call kind and is passed to the loop as a function: a whole
message (``create``), a stream up to its commit point (``open_stream``), a token count.

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

Every request fills an ``Outcome`` (attempts, who answered, exhausted); errors carry its
metadata so both surfaces can report it. Backoff sleeps, the breakers' clock and the jitter are
injectable so tests run without real waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from sidecar.backends.base import Backend
from sidecar.errors import (
    ChainExhaustedError,
    DeadlineExceededError,
    FailureKind,
    InvalidRequestError,
    LocalLimitError,
    OverloadedError,
    SidecarError,
    UpstreamError,
)
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

from .breaker import Breakers
from .classify import Verdict, classify, retry_delay
from .outcome import Attempt, NullObserver, Observer, Outcome
from .policy import Chain, Policy, Routes, Target
from .slots import Slot, Slots
from .stream import (
    SHUTDOWN,
    EngineStream,
    Events,
    attempt_timeout,
    close_quietly,
    shutdown_error,
    until_commit,
)
from .validation import check_request

T = TypeVar("T")
# One attempt: (backend, target, policy, notes, attempt_end, deadline) -> result.
AttemptFn = Callable[[Backend, Target, Policy, list[str], float, float], Awaitable[T]]


class _Generation:
    """One configuration's backends, their slots and routes, and how many requests use them."""

    def __init__(
        self, backends: Mapping[str, Backend], routes: Routes, limits: Mapping[str, int]
    ) -> None:
        self.backends = backends
        self.routes = routes
        self.slots = Slots(limits)
        self.in_flight = 0
        self.retired = False
        self._closing: asyncio.Task[None] | None = None

    def close_soon(self) -> None:
        if self._closing is None:
            self._closing = asyncio.get_running_loop().create_task(self.close())

    async def close(self) -> None:
        for backend in self.backends.values():
            with contextlib.suppress(Exception):
                await backend.aclose()


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
    ) -> None:
        # limits: backend name -> its max_connections (0 or absent: unbounded); see slots.py.
        self._gen = _Generation(backends, routes, limits or {})
        self._sleep = sleep
        self._jitter = jitter
        self._observer = observer or NullObserver()
        self._max_concurrent = max_concurrent
        self._report_degradations = report_degradations
        self._in_flight = 0
        self.draining = False
        self._tasks: set[asyncio.Task[Any]] = set()  # running requests, for abort_all
        self._idle: asyncio.Event | None = None  # set while nothing is in flight (see wait_idle)
        self.breakers = Breakers(clock)

    # ------------------------------------------------------------------ routing

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

    # ------------------------------------------------------------------ request lifecycle

    def _start(
        self, kind: str, surface: str, request_id: str, model: str, requested: str | None
    ) -> tuple[Chain, Outcome, _Generation]:
        if self.draining:
            self._observer.request_rejected(surface, kind, "draining")
            raise OverloadedError(
                "the sidecar is shutting down; retry against its replacement", retry_after=1
            )
        if self._in_flight >= self._max_concurrent:
            self._observer.request_rejected(surface, kind, "concurrency")
            raise LocalLimitError(
                f"the sidecar is at its limit of {self._max_concurrent} concurrent requests "
                "(server.max_concurrent_requests); retry shortly",
                reason="concurrency",
            )
        gen = self._gen
        chain, route = self._chain_for(gen.routes, model, requested)
        self._in_flight += 1
        if self._idle is not None:
            self._idle.clear()
        gen.in_flight += 1
        outcome = Outcome(
            request_id=request_id,
            chain=chain.name,
            kind=kind,
            surface=surface,
            route=route,
            started=asyncio.get_running_loop().time(),
        )
        self._observer.request_started(outcome)
        return chain, outcome, gen

    @property
    def in_flight(self) -> int:
        return self._in_flight

    async def wait_idle(self) -> None:
        """Return once no request is in flight."""
        if self._idle is None:
            self._idle = asyncio.Event()
        if self._in_flight == 0:
            self._idle.set()
        await self._idle.wait()

    def _finish(self, outcome: Outcome, gen: _Generation, result: str) -> None:
        self._in_flight -= 1
        if self._in_flight == 0 and self._idle is not None:
            self._idle.set()
        gen.in_flight -= 1
        if gen.retired and gen.in_flight == 0:
            gen.close_soon()
        outcome.result = result
        outcome.duration = asyncio.get_running_loop().time() - outcome.started
        self._observer.request_finished(outcome)

    async def _observed(self, outcome: Outcome, gen: _Generation, work: Awaitable[T]) -> T:
        """Await ``work``, finishing ``outcome`` with its result whatever happens."""
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            result = await work
        except asyncio.CancelledError as exc:
            error = shutdown_error(exc)
            if error is None:
                self._finish(outcome, gen, "cancelled")
                raise
            error.metadata = outcome.error_metadata()
            self._finish(outcome, gen, error.error_type)
            raise error from None
        except SidecarError as exc:
            self._finish(outcome, gen, exc.error_type)
            raise
        except BaseException:
            self._finish(outcome, gen, "cancelled")
            raise
        finally:
            if task is not None:
                self._tasks.discard(task)
        return result

    def abort_all(self) -> int:
        """End every request still running with an explicit overloaded_error (the drain's grace
        is over): each caller gets an error response, an error event or an UNAVAILABLE status.
        Returns how many were running."""
        for task in list(self._tasks):
            task.cancel(SHUTDOWN)
        return len(self._tasks)

    def model_names(self) -> list[str]:
        """Names a caller can put in ``model`` to pick a chain (for ``/v1/models``)."""
        return sorted(self._gen.routes.chains)

    # ------------------------------------------------------------------ reload, close

    def reload(
        self,
        backends: Mapping[str, Backend],
        routes: Routes,
        limits: Mapping[str, int] | None = None,
    ) -> None:
        """New requests use ``backends`` and ``routes``; requests in flight finish on the old
        ones, whose connections are closed once the last of them is done. Breakers persist."""
        old, self._gen = self._gen, _Generation(backends, routes, limits or {})
        old.retired = True
        if old.in_flight == 0:
            old.close_soon()

    async def aclose(self) -> None:
        await self._gen.close()

    # ------------------------------------------------------------------ the loop

    def _pick(self, queue: list[Target], outcome: Outcome) -> Target | None:
        """The next target: the first whose breaker lets it through. When every one left is
        cooling down, the one nearest to recovery, but only if nothing was tried yet."""
        for i, target in enumerate(queue):
            if self.breakers.wait_time(target.label) == 0.0:
                outcome.skipped.extend(t.label for t in queue[:i])
                del queue[: i + 1]
                return target
        if outcome.attempts:
            outcome.skipped.extend(t.label for t in queue)
            return None
        best = min(queue, key=lambda t: self.breakers.wait_time(t.label))
        queue.remove(best)
        return best

    async def _run(
        self,
        chain: Chain,
        outcome: Outcome,
        gen: _Generation,
        deadline: float | None,
        attempt: AttemptFn[T],
    ) -> tuple[T, Slot]:
        """The first answer, and the backend slot it holds (the caller releases it)."""
        policy = chain.policy
        loop = asyncio.get_running_loop()
        own = loop.time() + policy.timeout
        deadline = own if deadline is None else min(deadline, own)
        queue = list(chain.targets)
        overflowed = False
        last: SidecarError | None = None
        failures: list[SidecarError] = []  # every failed attempt, for the exhausted error
        while queue:
            target = self._pick(queue, outcome)
            if target is None:
                break
            backend = gen.backends[target.backend]
            retries = 0
            while True:
                now = loop.time()
                if now >= deadline:
                    raise self._fail(
                        outcome, last, DeadlineExceededError("the request's time budget ran out")
                    )
                # Before the attempt's timers and its breaker: a wait here is ours, not its.
                try:
                    slot = await gen.slots.take(
                        target.backend, min(now + policy.pool_timeout, deadline), outcome.pool_waits
                    )
                except LocalLimitError as exc:
                    outcome.rejected = exc.limit
                    self._observer.request_rejected(outcome.surface, outcome.kind, exc.limit)
                    raise self._fail(outcome, None, exc) from None
                now = loop.time()
                self.breakers.acquire(target.label)
                notes: list[str] = []
                try:
                    result = await attempt(
                        backend,
                        target,
                        policy,
                        notes,
                        min(now + policy.attempt_timeout, deadline),
                        deadline,
                    )
                except SidecarError as exc:
                    slot.release()
                    self._record(outcome, target, now, exc)
                    if isinstance(exc, DeadlineExceededError):
                        self.breakers.release(target.label)
                        raise self._fail(outcome, last, exc) from None
                    verdict = classify(exc, policy)
                    if verdict is Verdict.STOP:
                        self.breakers.release(target.label)
                        raise self._fail(outcome, None, exc) from None
                    self.breakers.failure(
                        target.label,
                        threshold=policy.breaker.failures,
                        cooldown=policy.breaker.cooldown,
                    )
                    last = exc
                    failures.append(exc)
                    if verdict is Verdict.OVERFLOW and not overflowed:
                        overflowed = True
                        bigger = gen.routes.chains[policy.on_context_overflow or ""]
                        queue, policy = list(bigger.targets), bigger.policy
                        outcome.degradations.append(f"context_overflow:{bigger.name}")
                        break
                    delay = retry_delay(
                        exc, retries, policy, deadline - loop.time(), self._jitter()
                    )
                    if delay is None:
                        break
                    retries += 1
                    await self._sleep(delay)
                    continue
                except BaseException:
                    slot.release()
                    self.breakers.release(target.label)  # cancelled: no verdict on the target
                    raise
                self.breakers.success(target.label)
                self._record(outcome, target, now, None)
                outcome.answered_by = backend.name
                outcome.answered_target = target.label
                if self._report_degradations:
                    outcome.degradations.extend(notes)
                return result, slot
        raise self._fail(outcome, last, None, failures)

    def _fail(
        self,
        outcome: Outcome,
        last: SidecarError | None,
        error: SidecarError | None,
        failures: list[SidecarError] | None = None,
    ) -> SidecarError:
        """The error to raise, with the outcome's metadata attached."""
        if error is None:
            if last is None:  # every target was skipped and none could be tried
                error = DeadlineExceededError("the request's time budget ran out")
            else:
                outcome.exhausted = True
                error = ChainExhaustedError(last, len(outcome.attempts), failures or ())
        error.metadata = outcome.error_metadata()
        return error

    @staticmethod
    def _record(
        outcome: Outcome, target: Target, started: float, error: SidecarError | None
    ) -> None:
        if error is None:
            kind, status = "ok", None
        elif isinstance(error, UpstreamError):
            kind, status = error.kind.value, error.status
        else:
            kind, status = error.error_type, None
        outcome.attempts.append(
            Attempt(
                target=target.label,
                backend=target.backend,
                outcome=kind,
                status=status,
                duration=asyncio.get_running_loop().time() - started,
            )
        )

    # ------------------------------------------------------------------ call kinds

    async def create(self, call: Call) -> tuple[Answer, Outcome]:
        check_request(call.request)
        chain, outcome, gen = self._start(
            "create", call.surface, call.request_id, call.request.model, call.chain
        )

        async def attempt(
            backend: Backend,
            target: Target,
            policy: Policy,
            notes: list[str],
            end: float,
            deadline: float,
        ) -> Answer:
            model = target.model or call.request.model
            answering = backend.create(call, model, notes, connect_timeout=policy.connect_timeout)
            answer = await _bounded(answering, backend.name, end, deadline)
            if call.openai_notes and not is_relayed_chat(answer):
                notes += call.openai_notes  # this target was sent the door's translation
            return answer

        message, slot = await self._observed(
            outcome, gen, self._run(chain, outcome, gen, call.deadline, attempt)
        )
        slot.release()
        outcome.input_tokens, outcome.output_tokens = answer_usage(message)
        if type(message) is RawMessage:
            outcome.upstream_headers = message.headers
        self._finish(outcome, gen, "ok")
        return message, outcome

    async def open_stream(self, call: Call) -> EngineStream:
        """Try targets until one stream commits; raise if none does."""
        check_request(call.request)
        chain, outcome, gen = self._start(
            "stream", call.surface, call.request_id, call.request.model, call.chain
        )

        async def attempt(
            backend: Backend,
            target: Target,
            policy: Policy,
            notes: list[str],
            end: float,
            deadline: float,
        ) -> tuple[Events, list[StreamItem], float, Policy, str]:
            events = backend.stream(
                call,
                target.model or call.request.model,
                notes,
                connect_timeout=policy.connect_timeout,
            )
            ttft_end = min(asyncio.get_running_loop().time() + policy.ttft_timeout, end)
            held: list[StreamItem] = []
            try:
                await until_commit(events, held, ttft_end, deadline, backend.name)
            except BaseException:
                await close_quietly(events)
                raise
            if call.openai_notes and not is_relayed_chat(held[0]):
                notes += call.openai_notes  # this target was sent the door's translation
            return events, held, end, policy, backend.name

        (events, held, end, policy, name), slot = await self._observed(
            outcome, gen, self._run(chain, outcome, gen, call.deadline, attempt)
        )
        outcome.ttft = asyncio.get_running_loop().time() - outcome.started
        if type(held[0]) is RawEvent:
            outcome.upstream_headers = held[0].headers
        return EngineStream(
            events,
            held,
            outcome,
            idle_timeout=policy.idle_timeout,
            attempt_end=end,
            backend=name,
            finish=lambda done, result: self._finish(done, gen, result),
            tasks=self._tasks,
            on_close=slot.release,  # once the body was read to its end: the connection is free
        )

    async def count_tokens(self, call: CountCall) -> tuple[TokenCount, Outcome]:
        check_request(call.request)
        picked, outcome, gen = self._start(
            "count_tokens", call.surface, call.request_id, call.request.model, call.chain
        )

        async def attempt(
            backend: Backend,
            target: Target,
            policy: Policy,
            notes: list[str],
            end: float,
            deadline: float,
        ) -> TokenCount:
            counting = backend.count_tokens(call, target.model or call.request.model)
            count = await _bounded(counting, backend.name, end, deadline)
            if count.estimated:
                notes.append("count_tokens.estimated")
            return count

        count, slot = await self._observed(
            outcome, gen, self._run(picked, outcome, gen, None, attempt)
        )
        slot.release()
        outcome.input_tokens = count.input_tokens
        self._finish(outcome, gen, "ok")
        return count, outcome


async def _bounded(work: Awaitable[T], backend: str, end: float, deadline: float) -> T:
    """``work`` within the attempt's end; a timeout there is the attempt's (or the budget's)."""
    try:
        async with asyncio.timeout_at(end):
            return await work
    except TimeoutError:
        raise attempt_timeout(backend, end, deadline, FailureKind.READ_TIMEOUT) from None
