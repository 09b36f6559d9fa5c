"""The SSE encoding of stream events: our own events by their tag, relayed ones byte for byte."""

from __future__ import annotations

import pytest

from sidecar.errors import OverloadedError
from sidecar.http_api.sse import encode_error_event, encode_events
from sidecar.model import (
    ContentBlockDelta,
    ContentBlockStop,
    MessageStop,
    Ping,
    RawEvent,
    StreamItem,
    TextDelta,
    event_view_decoder,
)


def raw(kind: str, data: bytes) -> RawEvent:
    return RawEvent(kind, data, event_view_decoder.decode(data.replace(b"\r", b"")))


DELTA = b'{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"hi"}}'
ODD = b'{"type":"future_event","x":1}'

CASES = [
    pytest.param(
        [raw("content_block_delta", DELTA)],
        b"event: content_block_delta\ndata: " + DELTA + b"\n\n",
        id="relayed-one",
    ),
    pytest.param(
        [raw("future_event", ODD)],
        b"event: future_event\ndata: " + ODD + b"\n\n",
        id="relayed-unknown-type",
    ),
    pytest.param(
        [raw("ping", b'{"type":\r\n"ping"}')],
        b'event: ping\ndata: {"type":\ndata: "ping"}\n\n',
        id="relayed-over-two-data-lines",
    ),
    pytest.param(
        [ContentBlockDelta(index=0, delta=TextDelta(text="hi"))],
        b"event: content_block_delta\ndata: " + DELTA + b"\n\n",
        id="ours-one",
    ),
    pytest.param(
        [ContentBlockStop(index=0), raw("message_stop", b'{"type":"message_stop"}'), MessageStop()],
        b'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n'
        b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
        b'event: message_stop\ndata: {"type":"message_stop"}\n\n',
        id="mixed-batch-in-order",
    ),
    pytest.param([Ping()], b'event: ping\ndata: {"type":"ping"}\n\n', id="ping"),
    pytest.param([], b"", id="empty"),
]


@pytest.mark.parametrize(("events", "expected"), CASES)
def test_encode_events(events: list[StreamItem], expected: bytes) -> None:
    assert encode_events(events) == expected


def test_an_error_event() -> None:
    assert encode_error_event(OverloadedError("busy")) == (
        b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error",'
        b'"message":"busy"}}\n\n'
    )
