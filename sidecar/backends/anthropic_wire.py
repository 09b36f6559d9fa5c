"""Reading Claude's own Messages wire format, whoever carries it (Anthropic, Bedrock, Vertex).

Every backend whose upstream answers in Anthropic's shapes reads them here, so that they all
relay the same way: ``read_message`` for a whole answer, ``AnthropicEventReader`` for a stream
(fed one event at a time, whatever the framing around it: SSE for Anthropic and Vertex, AWS
event-stream chunks for Bedrock). An ``error`` event is raised as a ``STREAM_ERROR``; event
types this sidecar does not know are skipped; after ``message_stop`` the reader is ``stopped``.
``sse_events`` is the whole stream loop of the backends whose upstream sends these events as
SSE (Anthropic, Vertex): the session's frame batches in, event batches out.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator

import msgspec

from sidecar.errors import FailureKind, UpstreamError
from sidecar.model import (
    ErrorEvent,
    Message,
    MessageStop,
    StreamEvent,
    event_decoder,
    message_decoder,
)
from sidecar.translate.sse import SSEFrame

KNOWN_EVENTS = frozenset(
    {
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
        "ping",
        "error",
    }
)


def read_message(backend: str, content: bytes) -> Message:
    """The whole answer in ``content``; an unreadable body is the upstream's failure."""
    try:
        return message_decoder.decode(content)
    except msgspec.DecodeError as exc:
        raise UpstreamError(
            f"{backend}: unreadable message: {exc}",
            kind=FailureKind.INVALID_RESPONSE,
            backend=backend,
        ) from None


class AnthropicEventReader:
    """Sans-IO: one Anthropic stream event in (its name when the framing carries one, and its
    JSON), the event to pass on out (None when it is skipped)."""

    __slots__ = ("_backend", "stopped")

    def __init__(self, backend: str) -> None:
        self._backend = backend
        self.stopped = False

    def feed(self, name: str | None, data: str | bytes) -> StreamEvent | None:
        if name is not None and name not in KNOWN_EVENTS:
            return None
        try:
            event = event_decoder.decode(data)
        except msgspec.DecodeError as exc:
            raise UpstreamError(
                f"{self._backend}: unreadable stream event: {exc}",
                kind=FailureKind.INVALID_RESPONSE,
                backend=self._backend,
            ) from None
        if isinstance(event, ErrorEvent):
            raise UpstreamError(
                f"{self._backend}: {event.error.message}",
                kind=FailureKind.STREAM_ERROR,
                backend=self._backend,
                error_type=event.error.type,
            )
        if isinstance(event, MessageStop):
            self.stopped = True
        return event

    def incomplete(self) -> UpstreamError:
        """The error for a body that ended before ``message_stop``."""
        return UpstreamError(
            f"{self._backend}: the stream ended without message_stop",
            kind=FailureKind.INCOMPLETE,
            backend=self._backend,
        )


async def sse_events(
    backend: str, frames: AsyncGenerator[list[SSEFrame] | None, None]
) -> AsyncGenerator[list[StreamEvent], None]:
    """The events of an SSE body (``UpstreamSession.post_sse``'s batches), in batches.

    The body is read to its end after ``message_stop`` so the connection can be reused; a body
    that ends before it raises ``INCOMPLETE``. Closing this generator closes ``frames``.
    """
    reader = AnthropicEventReader(backend)
    try:
        async for batch in frames:
            if batch is None:
                if reader.stopped:
                    return
                raise reader.incomplete()
            if reader.stopped:
                continue  # read to the end of the body so the connection can be reused
            events: list[StreamEvent] = []
            for frame in batch:
                event = reader.feed(frame.event, frame.data)
                if event is not None:
                    events.append(event)
                    if reader.stopped:
                        break
            if events:
                yield events
    finally:
        await frames.aclose()
