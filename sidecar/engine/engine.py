"""The fallback engine: one generic loop over the ordered targets of a chain.

For each request the engine picks a chain (``x-anyllm-chain``, else routing by model), then
tries its targets in order. Each attempt gets ``min(attempt_timeout, what is left of the
request's budget)``; a failure that ``Policy`` says moves on (connection errors, timeouts, 408,
429, 5xx, a broken stream) goes to the next target, any other failure stops the chain and is
returned as is. When every target failed the last error is raised as ``ChainExhaustedError``.

Streams have a commit point: the engine reads an attempt's events, holding back
``message_start``, pings and empty block starts, until the first real content event (or a
complete empty answer). Until then any failure, including the time-to-first-token timer, falls
back invisibly. ``open_stream`` returns only after that, so a surface can still answer a
pre-commit failure with a proper status. After it nothing is retried: ``EngineStream`` raises
the failure (idle timeout, cut, in-band error) for the surface to end the stream explicitly.

Every request fills an ``Outcome`` (attempts, who answered, exhausted); errors carry its
metadata so both surfaces can report it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from contextlib import aclosing

from sidecar.backends.base import Backend
from sidecar.errors import (
    ChainExhaustedError,
    DeadlineExceededError,
    FailureKind,
    InvalidRequestError,
    SidecarError,
    UpstreamError,
)
from sidecar.model import (
    Call,
    CountTokensRequest,
    Message,
    MessageStop,
    StreamEvent,
    TokenCount,
    is_content_event,
)

from .outcome import Attempt, Outcome
from .policy import Chain, Routes, Target
from .validation import check_request


def moves_on(error: SidecarError, move_on: tuple[int, ...]) -> bool:
    """Whether the engine may try the next target after ``error`` (the classification)."""
    if not isinstance(error, UpstreamError):
        return False
    if error.kind is FailureKind.STATUS:
        return error.status is not None and error.status in move_on
    return error.kind is not FailureKind.CANCELLED


class Engine:
    def __init__(
        self,
        *,
        backends: Mapping[str, Backend],
        routes: Routes,
    ) -> None:
        self._backends = backends
        self._routes = routes

    # ------------------------------------------------------------------ routing

    def _chain_for(self, model: str, requested: str | None) -> Chain:
        if requested is not None:
            chain = self._routes.chains.get(requested)
            if chain is None:
                known = ", ".join(sorted(self._routes.chains))
                raise InvalidRequestError(
                    f"x-anyllm-chain: unknown chain {requested!r} (configured: {known})",
                    field="x-anyllm-chain",
                )
            return chain
        return self._routes.chain_for(model)

    def model_names(self) -> list[str]:
        """Names a caller can put in ``model`` to pick a chain (for ``/v1/models``)."""
        return sorted(self._routes.chains)

    # ------------------------------------------------------------------ attempts

    @staticmethod
    def _deadline(call: Call, timeout: float) -> float:
        own = asyncio.get_running_loop().time() + timeout
        return own if call.deadline is None else min(call.deadline, own)

    def _fail(self, outcome: Outcome, error: SidecarError) -> SidecarError:
        error.metadata = outcome.metadata()
        return error

    def _record(
        self, outcome: Outcome, target: Target, started: float, error: SidecarError | None
    ) -> None:
        elapsed = asyncio.get_running_loop().time() - started
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
                duration=elapsed,
            )
        )

    async def create(self, call: Call) -> tuple[Message, Outcome]:
        check_request(call.request)
        chain = self._chain_for(call.request.model, call.chain)
        policy = chain.policy
        outcome = Outcome(request_id=call.request_id, chain=chain.name)
        loop = asyncio.get_running_loop()
        deadline = self._deadline(call, policy.timeout)
        last: SidecarError | None = None
        for target in chain.targets:
            left = deadline - loop.time()
            if left <= 0:
                break
            backend = self._backends[target.backend]
            notes: list[str] = []
            started = loop.time()
            budget = min(policy.attempt_timeout, left)
            try:
                async with asyncio.timeout(budget):
                    message = await backend.create(call, target.model or call.request.model, notes)
            except TimeoutError:
                if budget >= left:
                    last = DeadlineExceededError(
                        f"the request's time budget ran out while waiting for {backend.name}"
                    )
                    self._record(outcome, target, started, last)
                    break
                last = UpstreamError(
                    f"{backend.name} did not answer within {budget:g} s",
                    kind=FailureKind.READ_TIMEOUT,
                    backend=backend.name,
                )
                self._record(outcome, target, started, last)
                continue
            except SidecarError as exc:
                self._record(outcome, target, started, exc)
                if not moves_on(exc, policy.move_on):
                    raise self._fail(outcome, exc) from None
                last = exc
                continue
            self._record(outcome, target, started, None)
            outcome.answered_by = backend.name
            outcome.degradations.extend(notes)
            return message, outcome
        raise self._exhausted(outcome, last)

    def _exhausted(self, outcome: Outcome, last: SidecarError | None) -> SidecarError:
        if last is None or isinstance(last, DeadlineExceededError):
            error: SidecarError = last or DeadlineExceededError(
                "the request's time budget ran out before an upstream could be tried"
            )
            return self._fail(outcome, error)
        outcome.exhausted = True
        return self._fail(outcome, ChainExhaustedError(last, len(outcome.attempts)))

    # ------------------------------------------------------------------ streams

    async def open_stream(self, call: Call) -> EngineStream:
        """Try targets until one stream commits; raise if none does."""
        check_request(call.request)
        chain = self._chain_for(call.request.model, call.chain)
        policy = chain.policy
        outcome = Outcome(request_id=call.request_id, chain=chain.name)
        loop = asyncio.get_running_loop()
        deadline = self._deadline(call, policy.timeout)
        last: SidecarError | None = None
        for target in chain.targets:
            left = deadline - loop.time()
            if left <= 0:
                break
            backend = self._backends[target.backend]
            notes: list[str] = []
            started = loop.time()
            events = backend.stream(call, target.model or call.request.model, notes)
            attempt_end = started + min(policy.attempt_timeout, left)
            ttft_end = min(started + policy.ttft_timeout, attempt_end)
            held: list[StreamEvent] = []
            try:
                await self._until_commit(events, held, ttft_end, deadline, backend.name)
            except BaseException as exc:
                await _close_quietly(events)
                if not isinstance(exc, SidecarError):
                    raise
                self._record(outcome, target, started, exc)
                if isinstance(exc, DeadlineExceededError):
                    last = exc
                    break
                if not moves_on(exc, policy.move_on):
                    raise self._fail(outcome, exc) from None
                last = exc
                continue
            self._record(outcome, target, started, None)
            outcome.answered_by = backend.name
            outcome.degradations.extend(notes)
            return EngineStream(
                events,
                held,
                outcome,
                idle_timeout=policy.idle_timeout,
                attempt_end=attempt_end,
                backend=backend.name,
                fail=self._fail,
            )
        raise self._exhausted(outcome, last)

    @staticmethod
    async def _until_commit(
        events: AsyncGenerator[StreamEvent, None],
        held: list[StreamEvent],
        ttft_end: float,
        deadline: float,
        backend: str,
    ) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                async with asyncio.timeout_at(ttft_end):
                    event = await anext(events)
            except TimeoutError:
                if loop.time() >= deadline:
                    raise DeadlineExceededError(
                        f"the request's time budget ran out while waiting for {backend}"
                    ) from None
                raise UpstreamError(
                    f"{backend} sent no content in time (time to first token)",
                    kind=FailureKind.TTFT_TIMEOUT,
                    backend=backend,
                ) from None
            except StopAsyncIteration:
                raise UpstreamError(
                    f"{backend} ended the stream before any content",
                    kind=FailureKind.INCOMPLETE,
                    backend=backend,
                ) from None
            held.append(event)
            if is_content_event(event) or isinstance(event, MessageStop):
                return

    # ------------------------------------------------------------------ tokens

    async def count_tokens(
        self, request: CountTokensRequest, *, chain: str | None, request_id: str
    ) -> tuple[TokenCount, Outcome]:
        check_request(request)
        picked = self._chain_for(request.model, chain)
        policy = picked.policy
        outcome = Outcome(request_id=request_id, chain=picked.name)
        loop = asyncio.get_running_loop()
        last: SidecarError | None = None
        for target in picked.targets:
            backend = self._backends[target.backend]
            started = loop.time()
            try:
                async with asyncio.timeout(policy.attempt_timeout):
                    count = await backend.count_tokens(request, target.model or request.model)
            except TimeoutError:
                last = UpstreamError(
                    f"{backend.name} did not count in time",
                    kind=FailureKind.READ_TIMEOUT,
                    backend=backend.name,
                )
                self._record(outcome, target, started, last)
                continue
            except SidecarError as exc:
                self._record(outcome, target, started, exc)
                if not moves_on(exc, policy.move_on):
                    raise self._fail(outcome, exc) from None
                last = exc
                continue
            self._record(outcome, target, started, None)
            outcome.answered_by = backend.name
            if count.estimated:
                outcome.degradations.append("count_tokens.estimated")
            return count, outcome
        raise self._exhausted(outcome, last)


class EngineStream:
    """A committed stream: the held-back events, then the rest, each within the idle timer."""

    def __init__(
        self,
        events: AsyncGenerator[StreamEvent, None],
        held: list[StreamEvent],
        outcome: Outcome,
        *,
        idle_timeout: float,
        attempt_end: float,
        backend: str,
        fail: Callable[[Outcome, SidecarError], SidecarError],
    ) -> None:
        self.outcome = outcome
        self._events = events
        self._held = held
        self._idle_timeout = idle_timeout
        self._attempt_end = attempt_end
        self._backend = backend
        self._fail = fail
        self._iterator = self._run()

    def __aiter__(self) -> AsyncIterator[StreamEvent]:
        return self._iterator

    async def _run(self) -> AsyncGenerator[StreamEvent, None]:
        loop = asyncio.get_running_loop()
        async with aclosing(self._events):
            for event in self._held:
                yield event
            if isinstance(self._held[-1], MessageStop):
                return
            self._held = []
            while True:
                when = min(loop.time() + self._idle_timeout, self._attempt_end)
                try:
                    async with asyncio.timeout_at(when):
                        event = await anext(self._events)
                except StopAsyncIteration:
                    raise self._fail(
                        self.outcome,
                        UpstreamError(
                            f"{self._backend} ended the stream early",
                            kind=FailureKind.INCOMPLETE,
                            backend=self._backend,
                        ),
                    ) from None
                except TimeoutError:
                    raise self._fail(
                        self.outcome,
                        UpstreamError(
                            f"{self._backend} stalled: no event within {self._idle_timeout:g} s"
                            if when < self._attempt_end
                            else f"{self._backend} did not finish within the attempt timeout",
                            kind=FailureKind.IDLE_TIMEOUT,
                            backend=self._backend,
                        ),
                    ) from None
                except SidecarError as exc:
                    raise self._fail(self.outcome, exc) from None
                yield event
                if isinstance(event, MessageStop):
                    return

    async def aclose(self) -> None:
        await self._iterator.aclose()
        await _close_quietly(self._events)


async def _close_quietly(events: AsyncGenerator[StreamEvent, None]) -> None:
    # Closing a failed upstream must not mask the error that made us close it.
    with contextlib.suppress(Exception):
        await events.aclose()
