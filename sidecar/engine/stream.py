"""Streams after the commit point, and the pieces of an attempt both modules share.

``until_commit`` reads an attempt's batches, holding them back, until the first real content
(or a complete empty answer) arrives; ``EngineStream`` then hands the held batches and the rest
to a surface, each read within the idle timeout, and ends with the failure, explicitly, when
the upstream breaks after the commit point. The committed stream's idle and attempt limits are
checked on one timer per stream (``_Stall``), not a timer armed around every read.
``shutdown_error`` turns the engine's own cancellation at the end of a drain into an explicit
error for the caller. ``bounded`` is ``asyncio.timeout_at`` around one await (an attempt, a read
before the commit point) on one plain loop timer, with the same cancellation rules.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from typing import Any, TypeVar

from sidecar.errors import (
    DeadlineExceededError,
    FailureKind,
    OverloadedError,
    SidecarError,
    UpstreamError,
)
from sidecar.model import (
    EventView,
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
T = TypeVar("T")

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


class _Expiry:
    """The timer of one ``bounded`` await: cancels the task when it fires, and remembers."""

    __slots__ = ("fired", "task")

    def __init__(self, task: asyncio.Task[Any]) -> None:
        self.task = task
        self.fired = False

    def fire(self) -> None:
        self.fired = True
        self.task.cancel()


async def bounded(
    work: Awaitable[T], end: float, backend: str, deadline: float, kind: FailureKind
) -> T:
    """``work`` by the loop time ``end``, else ``attempt_timeout(... kind)``.

    ``asyncio.timeout_at(end)`` around one await, with its semantics (the task is cancelled
    when the timer fires; that cancellation, and only if no one else cancelled too, becomes the
    timeout) on one plain loop timer: no context manager and its two coroutines per attempt,
    which cost more than the timer itself."""
    task = asyncio.current_task()
    assert task is not None
    cancelling = task.cancelling()
    expiry = _Expiry(task)
    handle = asyncio.get_running_loop().call_at(end, expiry.fire)
    try:
        result = await work
    except asyncio.CancelledError:
        handle.cancel()
        if expiry.fired and task.uncancel() <= cancelling:
            raise attempt_timeout(backend, end, deadline, kind) from None
        raise
    except BaseException:
        handle.cancel()
        if expiry.fired:
            task.uncancel()
        raise
    handle.cancel()
    if expiry.fired:  # fired after the answer was in: its cancellation is taken back
        task.uncancel()
    return result


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
            batch = await bounded(
                anext(events), ttft_end, backend, deadline, FailureKind.TTFT_TIMEOUT
            )
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
    upstream read), each read within the idle timeout and all before the attempt's end."""

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

    def _take(self, batch: list[StreamItem]) -> tuple[list[StreamItem], bool]:
        """The batch up to and including ``message_stop`` (and whether it was there), its
        usage counted into the outcome, in one pass."""
        outcome = self.outcome
        for i, event in enumerate(batch):
            _count(outcome, event)
            if is_stop(event):
                return (batch if i + 1 == len(batch) else batch[: i + 1]), True
        return batch, False

    async def _run(self) -> AsyncGenerator[list[StreamItem], None]:
        # One generator between the upstream's batches and the surface (no inner one to hop
        # through per batch), and one stall timer per stream (``_Stall``) instead of a timer
        # armed and cancelled around every read.
        task = asyncio.current_task()  # the one iterating: what abort_all cancels
        if task is not None:
            self._tasks.add(task)
        stall: _Stall | None = None
        try:
            async with aclosing(self._events):
                batch, self._held = self._held, []
                batch, stopped = self._take(batch)  # cut at the stop already (until_commit)
                if stopped:
                    self._done("ok")
                yield batch
                if stopped:
                    await self._finish(self._deadline())
                    return
                assert task is not None
                stall = _Stall(task, self._idle_timeout, self._attempt_end)
                read = self._events.__anext__
                while True:
                    stall.reading()
                    try:
                        batch = await read()
                    except StopAsyncIteration:
                        raise self._fail(
                            UpstreamError(
                                f"{self._backend} ended the stream early",
                                kind=FailureKind.INCOMPLETE,
                                backend=self._backend,
                            )
                        ) from None
                    except asyncio.CancelledError as exc:
                        if not stall.timed_out(exc):
                            raise
                        raise self._fail(self._stalled(bool(stall.by_attempt))) from None
                    except SidecarError as exc:
                        raise self._fail(exc) from None
                    stall.since = None
                    batch, stopped = self._take(batch)
                    if stopped:
                        self._done("ok")
                    yield batch
                    if stopped:
                        await self._finish(self._deadline())
                        return
        except asyncio.CancelledError as exc:
            error = shutdown_error(exc)
            if error is None:
                raise
            raise self._fail(error) from None
        finally:
            if stall is not None:
                stall.close()
            if task is not None:
                self._tasks.discard(task)

    def _deadline(self) -> float:
        return min(asyncio.get_running_loop().time() + self._idle_timeout, self._attempt_end)

    def _stalled(self, by_attempt: bool) -> UpstreamError:
        return UpstreamError(
            f"{self._backend} did not finish within the attempt timeout"
            if by_attempt
            else f"{self._backend} stalled: no event within {self._idle_timeout:g} s",
            kind=FailureKind.READ_TIMEOUT if by_attempt else FailureKind.IDLE_TIMEOUT,
            backend=self._backend,
        )

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


def _count(outcome: Outcome, event: StreamItem) -> None:
    """The usage ``event`` reports, into ``outcome``."""
    if type(event) is RawEvent:
        view = event.view
        if view.type == "message_delta" or view.type == "message_start":
            _count_raw(outcome, view)
    elif type(event) is RawChatChunk:
        if event.input_tokens is not None:
            outcome.input_tokens = event.input_tokens
        if event.output_tokens is not None:
            outcome.output_tokens = event.output_tokens
    elif type(event) is MessageDelta:
        outcome.output_tokens = event.usage.output_tokens
        if event.usage.input_tokens is not None:
            outcome.input_tokens = event.usage.input_tokens
    elif type(event) is MessageStart:
        outcome.input_tokens = event.message.usage.input_tokens


def _count_raw(outcome: Outcome, view: EventView) -> None:
    usage = view.usage if view.type == "message_delta" else None
    if view.type == "message_start" and view.message is not None:
        usage = view.message.usage
    if usage is not None:
        if usage.output_tokens is not None and view.type == "message_delta":
            outcome.output_tokens = usage.output_tokens
        if usage.input_tokens is not None:
            outcome.input_tokens = usage.input_tokens


class _Stall:
    """The idle and attempt limits of a committed stream, on one timer per stream.

    The stream sets ``since`` (the loop time its read began) before each read and clears it
    after; the timer, armed once for the first read's limit, checks when it fires: no read in
    progress, it lapses (the next read arms it again); a read younger than the idle timeout,
    it re-arms for that read's limit; else it cancels the reading task, as ``asyncio.timeout``
    would, and ``timed_out`` turns that cancellation into the stall. Time the caller takes to
    accept a batch is not upstream idleness and is not counted.
    """

    __slots__ = ("_cancelling", "_end", "_handle", "_idle", "_loop", "_task", "by_attempt", "since")

    def __init__(self, task: asyncio.Task[Any], idle: float, end: float) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = task
        self._idle = idle
        self._end = end
        self._cancelling = task.cancelling()
        self._handle: asyncio.TimerHandle | None = None
        self.since: float | None = None
        self.by_attempt: bool | None = None  # set once the timer cancelled the read

    def reading(self) -> None:
        self.since = now = self._loop.time()
        if self._handle is None and self.by_attempt is None:
            self._handle = self._loop.call_at(min(now + self._idle, self._end), self._fire)

    def _fire(self) -> None:
        self._handle = None
        since = self.since
        if since is None:
            return
        due = min(since + self._idle, self._end)
        if self._loop.time() < due:
            self._handle = self._loop.call_at(due, self._fire)
            return
        self.by_attempt = due >= self._end
        self._task.cancel()

    def timed_out(self, exc: asyncio.CancelledError) -> bool:
        """Whether this cancellation is the timer's (and no one else's: then it is kept)."""
        if self.by_attempt is None or SHUTDOWN in exc.args:
            return False
        return self._task.uncancel() <= self._cancelling

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


async def close_quietly(events: Events) -> None:
    # Closing a failed upstream must not mask the error that made us close it.
    with contextlib.suppress(Exception):
        await events.aclose()
