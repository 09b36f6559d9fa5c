"""Streams after the commit point, and the pieces of an attempt both modules share.

``until_commit`` reads an attempt's batches, holding them back, until the first real content
(or a complete empty answer) arrives; ``EngineStream`` then hands the held batches and the rest
to a surface, each batch within the idle timer, and ends with the failure, explicitly, when the
upstream breaks after the commit point. ``shutdown_error`` turns the engine's own cancellation
at the end of a drain into an explicit error for the caller.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import aclosing
from typing import Any

from sidecar.errors import (
    DeadlineExceededError,
    FailureKind,
    OverloadedError,
    SidecarError,
    UpstreamError,
)
from sidecar.model import (
    MessageDelta,
    MessageStart,
    RawChatChunk,
    RawEvent,
    StreamItem,
    is_content_event,
    is_stop,
)

from .outcome import Outcome

Events = AsyncGenerator[list[StreamItem], None]

SHUTDOWN = "anyllm-sidecar-shutdown"


def shutdown_error(exc: asyncio.CancelledError) -> SidecarError | None:
    """The error for a cancellation by ``abort_all``; None for any other cancellation."""
    if SHUTDOWN not in exc.args:
        return None
    task = asyncio.current_task()
    if task is not None:
        task.uncancel()
    return OverloadedError(
        "the sidecar shut down before the answer was complete; retry", retry_after=1
    )


def attempt_timeout(backend: str, end: float, deadline: float, kind: FailureKind) -> SidecarError:
    if end >= deadline:
        return DeadlineExceededError(
            f"the request's time budget ran out while waiting for {backend}"
        )
    what = (
        "sent no content in time (time to first token)"
        if kind is FailureKind.TTFT_TIMEOUT
        else ("did not answer within the attempt timeout")
    )
    return UpstreamError(f"{backend} {what}", kind=kind, backend=backend)


def _through_stop(batch: list[StreamItem]) -> tuple[list[StreamItem], bool]:
    """The batch up to and including ``message_stop``, and whether it was there."""
    for i, event in enumerate(batch):
        if is_stop(event):
            return batch[: i + 1], True
    return batch, False


async def until_commit(
    events: Events, held: list[StreamItem], ttft_end: float, deadline: float, backend: str
) -> None:
    while True:
        try:
            async with asyncio.timeout_at(ttft_end):
                batch = await anext(events)
        except TimeoutError:
            raise attempt_timeout(backend, ttft_end, deadline, FailureKind.TTFT_TIMEOUT) from None
        except StopAsyncIteration:
            raise UpstreamError(
                f"{backend} ended the stream before any content",
                kind=FailureKind.INCOMPLETE,
                backend=backend,
            ) from None
        batch, stopped = _through_stop(batch)
        held += batch
        if stopped or any(is_content_event(event) for event in batch):
            return


class EngineStream:
    """A committed stream: the held-back events, then the rest, in batches (the events of one
    upstream read), each batch within the idle timer."""

    def __init__(
        self,
        events: Events,
        held: list[StreamItem],
        outcome: Outcome,
        *,
        idle_timeout: float,
        attempt_end: float,
        backend: str,
        finish: Callable[[Outcome, str], None],
        tasks: set[asyncio.Task[Any]] | None = None,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self.outcome = outcome
        self._on_close = on_close
        self._tasks = tasks if tasks is not None else set()
        self._finish_outcome = finish
        self._finished = False
        self._events = events
        self._held = held
        self._idle_timeout = idle_timeout
        self._attempt_end = attempt_end
        self._backend = backend
        self._iterator = self._run()

    def __aiter__(self) -> AsyncIterator[list[StreamItem]]:
        return self._iterator

    def _fail(self, error: SidecarError) -> SidecarError:
        error.metadata = self.outcome.error_metadata()
        self._done(error.error_type)
        return error

    def _done(self, result: str) -> None:
        if not self._finished:
            self._finished = True
            self._finish_outcome(self.outcome, result)

    def _count(self, batch: list[StreamItem]) -> None:
        for event in batch:
            if type(event) is RawEvent:
                self._count_raw(event)
            elif type(event) is RawChatChunk:
                if event.input_tokens is not None:
                    self.outcome.input_tokens = event.input_tokens
                if event.output_tokens is not None:
                    self.outcome.output_tokens = event.output_tokens
            elif type(event) is MessageDelta:
                self.outcome.output_tokens = event.usage.output_tokens
                if event.usage.input_tokens is not None:
                    self.outcome.input_tokens = event.usage.input_tokens
            elif type(event) is MessageStart:
                self.outcome.input_tokens = event.message.usage.input_tokens

    def _count_raw(self, event: RawEvent) -> None:
        view = event.view
        usage = view.usage if view.type == "message_delta" else None
        if view.type == "message_start" and view.message is not None:
            usage = view.message.usage
        if usage is not None:
            if usage.output_tokens is not None and view.type == "message_delta":
                self.outcome.output_tokens = usage.output_tokens
            if usage.input_tokens is not None:
                self.outcome.input_tokens = usage.input_tokens

    async def _run(self) -> AsyncGenerator[list[StreamItem], None]:
        task = asyncio.current_task()  # the one iterating: what abort_all cancels
        if task is not None:
            self._tasks.add(task)
        try:
            async with aclosing(self._relay()) as batches:
                async for batch in batches:
                    yield batch
        except asyncio.CancelledError as exc:
            error = shutdown_error(exc)
            if error is None:
                raise
            raise self._fail(error) from None
        finally:
            if task is not None:
                self._tasks.discard(task)

    async def _relay(self) -> AsyncGenerator[list[StreamItem], None]:
        loop = asyncio.get_running_loop()
        async with aclosing(self._events):
            batch, self._held = self._held, []
            self._count(batch)
            if is_stop(batch[-1]):
                self._done("ok")
            yield batch
            if is_stop(batch[-1]):
                await self._finish(loop.time() + self._idle_timeout)
                return
            while True:
                when = min(loop.time() + self._idle_timeout, self._attempt_end)
                try:
                    async with asyncio.timeout_at(when):
                        batch = await anext(self._events)
                except StopAsyncIteration:
                    raise self._fail(
                        UpstreamError(
                            f"{self._backend} ended the stream early",
                            kind=FailureKind.INCOMPLETE,
                            backend=self._backend,
                        )
                    ) from None
                except TimeoutError:
                    stalled = when < self._attempt_end
                    raise self._fail(
                        UpstreamError(
                            f"{self._backend} stalled: no event within {self._idle_timeout:g} s"
                            if stalled
                            else f"{self._backend} did not finish within the attempt timeout",
                            kind=FailureKind.IDLE_TIMEOUT if stalled else FailureKind.READ_TIMEOUT,
                            backend=self._backend,
                        )
                    ) from None
                except SidecarError as exc:
                    raise self._fail(exc) from None
                batch, stopped = _through_stop(batch)
                self._count(batch)
                if stopped:
                    self._done("ok")
                yield batch
                if stopped:
                    await self._finish(when)
                    return

    async def _finish(self, when: float) -> None:
        """Let the upstream read to the end of its body (usually one more read, of the
        terminating chunk) so its connection goes back to the pool instead of being dropped."""
        with contextlib.suppress(Exception):
            async with asyncio.timeout_at(when):
                async for _ in self._events:
                    pass

    async def aclose(self) -> None:
        try:
            await self._iterator.aclose()
            await close_quietly(self._events)
        finally:
            if self._on_close is not None:
                self._on_close()
        self._done("cancelled")  # closed before its end: the caller went away


async def close_quietly(events: Events) -> None:
    # Closing a failed upstream must not mask the error that made us close it.
    with contextlib.suppress(Exception):
        await events.aclose()
