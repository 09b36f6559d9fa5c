"""Relay engine stream events to a gRPC stream, merging deltas when the caller falls behind.

A grpc.aio server spends about 0.11 ms of CPU per streamed message whatever its size (DESIGN.md,
"Performance notes"), far more than our conversion (~2 µs). So: a reader task pulls events from
the engine into a small bounded queue while the handler writes. When a write returns, everything
that queued up meanwhile is taken at once and adjacent deltas of the same content block and kind
(text, partial JSON, thinking) are joined into one message. A caller that keeps up gets each delta
as it comes (a batch of one); a slow caller, or a busy server, gets fewer, larger messages. The
queue bound keeps backpressure on the upstream.

An ``error`` event, should the engine yield one, ends the stream as an ``UpstreamError`` of its
type: on gRPC a failure is always a status, never an OK end. The reader never raises: the end of
the stream, or the exception that ended it, comes through the queue after the events before it,
so those are delivered first and the error is then raised in the handler. Cancelling the handler
cancels the reader (``finally``), which stops the engine stream's iteration at its current
``await``; the caller then closes the engine stream.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterable, Awaitable, Callable

from sidecar import model as m
from sidecar.errors import FailureKind, UpstreamError
from sidecar.grpc_api.gen.anyllm.sidecar.v1 import messages_pb2 as pb
from sidecar.grpc_api.relayed import GrpcEvent, grpc_events
from sidecar.grpc_api.render import event_to_proto

__all__ = ["coalesce", "relay"]

_MERGEABLE = (m.TextDelta, m.InputJsonDelta, m.ThinkingDelta)


class _End:
    """The last queue item: the stream ended, normally (``error`` None) or with ``error``."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException | None) -> None:
        self.error = error


def _join(deltas: list[m.BlockDelta]) -> m.BlockDelta:
    first = deltas[0]
    if len(deltas) == 1:
        return first
    if isinstance(first, m.TextDelta):
        return m.TextDelta(text="".join(d.text for d in deltas))  # type: ignore[union-attr]
    if isinstance(first, m.InputJsonDelta):
        return m.InputJsonDelta(partial_json="".join(d.partial_json for d in deltas))  # type: ignore[union-attr]
    return m.ThinkingDelta(thinking="".join(d.thinking for d in deltas))  # type: ignore[union-attr]


def coalesce(events: list[GrpcEvent]) -> list[GrpcEvent]:
    """Join runs of adjacent text / input_json / thinking deltas of the same block."""
    if len(events) < 2:
        return events
    out: list[GrpcEvent] = []
    run: list[m.BlockDelta] = []
    run_index = -1

    def flush() -> None:
        if run:
            out.append(m.ContentBlockDelta(index=run_index, delta=_join(run)))
            run.clear()

    for event in events:
        if isinstance(event, m.ContentBlockDelta) and isinstance(event.delta, _MERGEABLE):
            if run and (event.index != run_index or type(event.delta) is not type(run[0])):
                flush()
            run_index = event.index
            run.append(event.delta)
        else:
            flush()
            out.append(event)
    flush()
    return out


def _raise_error_event(item: m.StreamItem) -> None:
    if type(item) is m.RawEvent:
        error = item.view.error if item.type == "error" else None
        if item.type == "error":
            kind = error.type if error is not None else "api_error"
            message = error.message if error is not None else "stream error"
            raise UpstreamError(message, kind=FailureKind.STREAM_ERROR, error_type=kind)
    elif isinstance(item, m.ErrorEvent):
        raise UpstreamError(
            item.error.message, kind=FailureKind.STREAM_ERROR, error_type=item.error.type
        )


async def relay(
    events: AsyncIterable[list[m.StreamItem]],
    write: Callable[[pb.StreamEvent], Awaitable[None]],
    *,
    max_pending: int = 64,
) -> None:
    """Write every event of ``events``; re-raise the exception that ended it, if any."""
    queue: asyncio.Queue[list[GrpcEvent] | _End] = asyncio.Queue(max_pending)

    async def read() -> None:
        end = _End(None)
        try:
            async for items in events:
                for item in items:  # the engine raises on an error event; just in case
                    _raise_error_event(item)
                await queue.put(grpc_events(items))
        except Exception as exc:
            end = _End(exc)
        await queue.put(end)

    reader = asyncio.create_task(read())
    try:
        while True:
            batch: list[GrpcEvent] = []
            item = await queue.get()
            while not isinstance(item, _End):
                batch += item
                if queue.empty():
                    break
                item = queue.get_nowait()
            for event in coalesce(batch):
                await write(event if type(event) is pb.StreamEvent else event_to_proto(event))
            if isinstance(item, _End):
                if item.error is not None:
                    raise item.error
                return
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
