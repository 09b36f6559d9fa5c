"""Reading Claude's own Messages wire format, whoever carries it (Anthropic, Bedrock, Vertex).

Every backend whose upstream answers in Anthropic's shapes reads them here, so that they all
relay the same way: ``read_message`` for a whole answer, ``AnthropicEventReader`` for a stream
(fed one event at a time, whatever the framing around it: SSE for Anthropic and Vertex, AWS
event-stream chunks for Bedrock). Nothing is decoded beyond what the engine reads (``EventView``,
``MessageView``: types, the commit point, usage, the stop reason), leniently: a stop reason,
block, delta or event type this sidecar has never heard of is an opaque string, and the bytes
go to the caller as the upstream sent them. An ``error`` event is raised as a ``STREAM_ERROR``;
after ``message_stop`` the reader is ``stopped``. ``sse_events`` is the whole stream loop of the
backends whose upstream sends these events as SSE (Anthropic, Vertex).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from typing import TypeVar

import msgspec
import orjson

from sidecar.errors import FailureKind, UpstreamError
from sidecar.model import (
    ErrorView,
    RawEvent,
    RawMessage,
    StreamItem,
    TokenCount,
    event_view_decoder,
    message_view_decoder,
)
from sidecar.translate.sse import SSEFrame

F = TypeVar("F")  # a frame of the body's framing (SSE, AWS event-stream)


def read_message(
    backend: str, content: bytes, headers: tuple[tuple[str, str], ...] = ()
) -> RawMessage:
    """The whole answer in ``content``, to relay as it is. Only what is not an Anthropic
    message at all (not JSON, not an object of ``type: message``) is the upstream's failure."""
    try:
        view = message_view_decoder.decode(content)
    except msgspec.DecodeError as exc:
        raise _unreadable(backend, f"unreadable message: {exc}") from None
    if view.type != "message":
        raise _unreadable(backend, f"expected a message, got type {view.type[:40]!r}")
    return RawMessage(body=content, view=view, headers=headers)


class AnthropicEventReader:
    """Sans-IO: one Anthropic stream event in (its name when the framing carries one, and its
    JSON), the event to relay out. ``headers`` go out with the first event."""

    __slots__ = ("_backend", "_headers", "stopped")

    def __init__(self, backend: str, headers: tuple[tuple[str, str], ...] = ()) -> None:
        self._backend = backend
        self._headers = headers
        self.stopped = False

    def feed(self, name: str | None, data: str | bytes) -> RawEvent:
        raw = data.encode() if isinstance(data, str) else data
        try:
            view = event_view_decoder.decode(raw)
        except msgspec.DecodeError as exc:
            raise _unreadable(self._backend, f"unreadable stream event: {exc}") from None
        if view.type == "error":
            error = view.error or ErrorView()
            raise UpstreamError(
                f"{self._backend}: {error.message}",
                kind=FailureKind.STREAM_ERROR,
                backend=self._backend,
                error_type=error.type,
            )
        if view.type == "message_stop":
            self.stopped = True
        event = RawEvent(type=name or view.type, data=raw, view=view, headers=self._headers)
        self._headers = ()
        return event

    def incomplete(self) -> UpstreamError:
        """The error for a body that ended before ``message_stop``."""
        return UpstreamError(
            f"{self._backend}: the stream ended without message_stop",
            kind=FailureKind.INCOMPLETE,
            backend=self._backend,
        )


def _sse_frame(frame: SSEFrame) -> tuple[str | None, str]:
    return frame.event, frame.data


def sse_events(
    backend: str,
    frames: AsyncGenerator[list[SSEFrame] | None, None],
    headers: list[tuple[str, str]],
) -> AsyncGenerator[list[StreamItem], None]:
    """The events of an SSE body (``UpstreamSession.post_sse``'s batches), in batches."""
    return relay_events(backend, frames, headers, _sse_frame)


async def relay_events(
    backend: str,
    frames: AsyncGenerator[list[F] | None, None],
    headers: list[tuple[str, str]],
    unpack: Callable[[F], tuple[str | None, str | bytes] | None],
) -> AsyncGenerator[list[StreamItem], None]:
    """The events of a stream body in any framing, in batches: ``unpack`` gives each frame's
    event name (if the framing has one) and JSON, or None for a frame that carries no event.

    ``headers`` is the ``headers_out`` list given to the session's post: filled once the
    response began, it goes out with the first event. The body is read to its end after
    ``message_stop`` so the connection can be reused; a body that ends before it raises
    ``INCOMPLETE``. Closing this generator closes ``frames``.
    """
    reader: AnthropicEventReader | None = None
    try:
        async for batch in frames:
            if reader is None:
                reader = AnthropicEventReader(backend, tuple(headers))
            if batch is None:
                if reader.stopped:
                    return
                raise reader.incomplete()
            if reader.stopped:
                continue  # read to the end of the body so the connection can be reused
            events: list[StreamItem] = []
            for frame in batch:
                unpacked = unpack(frame)
                if unpacked is None:
                    continue
                events.append(reader.feed(*unpacked))
                if reader.stopped:
                    break
            if events:
                yield events
    finally:
        await frames.aclose()


def _unreadable(backend: str, what: str) -> UpstreamError:
    return UpstreamError(f"{backend}: {what}", kind=FailureKind.INVALID_RESPONSE, backend=backend)


def read_token_count(backend: str, content: bytes, key: str = "input_tokens") -> TokenCount:
    """An exact token count from a counting endpoint's answer (``{"input_tokens": N}``;
    Bedrock's CountTokens says ``inputTokens``)."""
    try:
        return TokenCount(input_tokens=int(orjson.loads(content)[key]))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        raise _unreadable(backend, "unreadable token count") from None
