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

__all__ = ["relay"]


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
