"""Server-sent events in the Anthropic framing: ``event: <type>`` then ``data: <json>``.

The ``event:`` line of each event class is built once from its msgspec tag, so encoding an
event is one msgspec encode and a join; an event relayed from an Anthropic-protocol upstream
is its own bytes again, with nothing decoded or encoded, behind the ``event:`` line of its
type. A batch of one event (a paced stream's usual read) is encoded without building a
list first.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import get_args

from sidecar.errors import SidecarError
from sidecar.model import ErrorBody, ErrorEvent, RawEvent, StreamEvent, StreamItem, json_encoder

_PREFIX: dict[type, bytes] = {
    cls: b"event: " + str(cls.__struct_config__.tag).encode() + b"\ndata: "
    for cls in get_args(StreamEvent)
}
_END = b"\n\n"
# The ``event:`` lines of relayed events of the types we know (another is encoded each time).
_RAW_PREFIX: dict[str, bytes] = {
    str(cls.__struct_config__.tag): _PREFIX[cls] for cls in get_args(StreamEvent)
}


def encode_events(events: Sequence[StreamItem]) -> bytes:
    """The SSE bytes of ``events``, in order; a relayed event's JSON as the upstream sent it."""
    if len(events) == 1:
        return _encode(events[0])
    return b"".join([_encode(e) for e in events])


def _encode(event: StreamItem) -> bytes:
    if type(event) is RawEvent:
        return _raw(event)
    return b"".join((_PREFIX[type(event)], json_encoder.encode(event), _END))


def _raw(event: RawEvent) -> bytes:
    data = event.data
    if b"\n" in data:  # JSON sent over several data: lines stays several lines
        data = data.replace(b"\r\n", b"\n").replace(b"\n", b"\ndata: ")
    prefix = _RAW_PREFIX.get(event.type)
    if prefix is None:
        prefix = b"event: " + event.type.encode() + b"\ndata: "
    return b"".join((prefix, data, _END))


def encode_error_event(error: SidecarError) -> bytes:
    """An Anthropic ``error`` event: how a stream that already started reports a failure."""
    event = ErrorEvent(error=ErrorBody(type=error.error_type, message=error.message))
    return encode_events((event,))
