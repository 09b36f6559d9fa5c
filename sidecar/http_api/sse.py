"""Server-sent events in the Anthropic framing: ``event: <type>`` then ``data: <json>``.

The ``event:`` line of each event class is built once from its msgspec tag, so encoding an
event is one msgspec encode and a concatenation; an event relayed from an Anthropic-protocol
upstream is its own bytes again, with nothing decoded or encoded.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import get_args

from sidecar.errors import SidecarError
from sidecar.model import ErrorBody, ErrorEvent, RawEvent, StreamEvent, StreamItem, json_encoder

_PREFIX: dict[type, bytes] = {
    cls: b"event: " + str(cls.__struct_config__.tag).encode() + b"\ndata: "
    for cls in get_args(StreamEvent)
}


def encode_events(events: Iterable[StreamItem]) -> bytes:
    """The SSE bytes of ``events``, in order; a relayed event's JSON as the upstream sent it."""
    return b"".join(
        _raw(e) if type(e) is RawEvent else _PREFIX[type(e)] + json_encoder.encode(e) + b"\n\n"
        for e in events
    )


def _raw(event: RawEvent) -> bytes:
    data = event.data
    if b"\n" in data:  # JSON sent over several data: lines stays several lines
        data = data.replace(b"\r\n", b"\n").replace(b"\n", b"\ndata: ")
    return b"event: " + event.type.encode() + b"\ndata: " + data + b"\n\n"


def encode_error_event(error: SidecarError) -> bytes:
    """An Anthropic ``error`` event: how a stream that already started reports a failure."""
    event = ErrorEvent(error=ErrorBody(type=error.error_type, message=error.message))
    return encode_events((event,))
