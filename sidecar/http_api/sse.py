"""Server-sent events in the Anthropic framing: ``event: <type>`` then ``data: <json>``.

The ``event:`` line of each event class is built once from its msgspec tag, so encoding an
event is one msgspec encode and a concatenation.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import get_args

from sidecar.errors import SidecarError
from sidecar.model import ErrorBody, ErrorEvent, StreamEvent, json_encoder

_PREFIX: dict[type, bytes] = {
    cls: b"event: " + str(cls.__struct_config__.tag).encode() + b"\ndata: "
    for cls in get_args(StreamEvent)
}


def encode_events(events: Iterable[StreamEvent]) -> bytes:
    """The SSE bytes of ``events``, in order."""
    return b"".join(_PREFIX[type(e)] + json_encoder.encode(e) + b"\n\n" for e in events)


def encode_error_event(error: SidecarError) -> bytes:
    """An Anthropic ``error`` event: how a stream that already started reports a failure."""
    event = ErrorEvent(error=ErrorBody(type=error.error_type, message=error.message))
    return encode_events((event,))
