"""Relay engine stream events to a gRPC stream, merging deltas when the caller falls behind.

A grpc.aio server spends tens of µs of CPU per streamed message whatever its size (DESIGN.md,
"Performance notes"), far more than our conversion (~1 µs), and a paced stream (one token per
upstream read) pays it per token. So the handler reads the engine stream and writes, in one
task: each batch the engine yields (the events of one upstream read) becomes its messages
(``relayed.grpc_events``), adjacent deltas of the same content block and kind (text, partial
JSON, thinking) joined into one, and they are written in order. While a write is pending
(the caller, or the server, is behind), the upstream's next events wait in its connection's
buffer, so the next read returns them together and they go out merged: a caller that keeps
up gets each delta as it comes (a batch of one), a slow one fewer, larger messages, and the
connection's buffer limit keeps backpressure on the upstream. No reader task, no queue and
no hand-off per event: the task that awaited the upstream read converts and writes.

``coalesce`` is the merge on model events (the definition ``grpc_events`` implements on the
way to protobuf; tests compare streams with it).

An ``error`` event, should the engine yield one, ends the stream as an ``UpstreamError`` of its
type, after the batches before it were written. Cancelling the handler (the client cancelled,
or its deadline passed) cancels the read or the write in progress; the events iterator is
closed on the way out, so the upstream read stops at once (the caller then closes the engine
stream, which is a no-op for what is already closed).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterable, Awaitable, Callable

from sidecar import model as m
from sidecar.grpc_api.gen.anyllm.sidecar.v1 import messages_pb2 as pb
from sidecar.grpc_api.relayed import grpc_events

__all__ = ["coalesce", "relay"]

_MERGEABLE = (m.TextDelta, m.InputJsonDelta, m.ThinkingDelta)


def _join(deltas: list[m.BlockDelta]) -> m.BlockDelta:
    first = deltas[0]
    if len(deltas) == 1:
        return first
    if isinstance(first, m.TextDelta):
        return m.TextDelta(text="".join(d.text for d in deltas))  # type: ignore[union-attr]
    if isinstance(first, m.InputJsonDelta):
        return m.InputJsonDelta(partial_json="".join(d.partial_json for d in deltas))  # type: ignore[union-attr]
    return m.ThinkingDelta(thinking="".join(d.thinking for d in deltas))  # type: ignore[union-attr]


def coalesce(events: list[m.StreamEvent]) -> list[m.StreamEvent]:
    """Join runs of adjacent text / input_json / thinking deltas of the same block."""
    if len(events) < 2:
        return events
    out: list[m.StreamEvent] = []
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


async def relay(
    events: AsyncIterable[list[m.StreamItem]],
    write: Callable[[pb.StreamEvent], Awaitable[None]],
) -> None:
    """Write every event of ``events``; re-raise the exception that ended it, if any."""
    iterator = aiter(events)
    try:
        async for batch in iterator:
            for message in grpc_events(batch):
                await write(message)
    finally:
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:  # a no-op once it ended; closing must not mask an error
            with contextlib.suppress(Exception):
                await aclose()
