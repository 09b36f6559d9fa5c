"""Reading Claude's own Messages wire format, whoever carries it (Anthropic, Bedrock, Vertex).

Every backend whose upstream answers in Anthropic's shapes reads them here, so that they all
relay the same way: ``read_message`` for a whole answer, ``AnthropicEventReader`` for a stream
(fed one event at a time, whatever the framing around it: SSE for Anthropic and Vertex, AWS
event-stream chunks for Bedrock). An ``error`` event is raised as a ``STREAM_ERROR``; event
types this sidecar does not know are skipped; after ``message_stop`` the reader is ``stopped``.
"""

from __future__ import annotations

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
