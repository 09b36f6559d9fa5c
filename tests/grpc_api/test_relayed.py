"""sidecar.grpc_api.relayed: relayed answers and events as protobuf, plain deltas kept mergeable."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from sidecar import model as m
from sidecar.grpc_api.gen.anyllm.sidecar.v1 import messages_pb2 as pb
from sidecar.grpc_api.json_proto import event_to_json, message_to_json
from sidecar.grpc_api.relay import coalesce
from sidecar.grpc_api.relayed import grpc_events, message_reply
from tests.fixtures.current_api import shapes
from tests.grpc_api.test_json_proto import without_nulls


def raw_event(doc: dict[str, Any]) -> m.RawEvent:
    data = orjson.dumps(doc)
    return m.RawEvent(type=doc["type"], data=data, view=m.event_view_decoder.decode(data))


def delta(index: int, kind: str, field: str, value: str, **more: Any) -> dict[str, Any]:
    return {
        "type": "content_block_delta",
        "index": index,
        "delta": {"type": kind, field: value, **more},
    }


# a relayed event -> the model delta it becomes, or None: a proto event
PLAIN = {
    "text": (delta(0, "text_delta", "text", "a"), m.TextDelta(text="a")),
    "json": (
        delta(1, "input_json_delta", "partial_json", "{"),
        m.InputJsonDelta(partial_json="{"),
    ),
    "thinking": (delta(0, "thinking_delta", "thinking", "t"), m.ThinkingDelta(thinking="t")),
    "signature": (delta(0, "signature_delta", "signature", "s"), None),
    "text_with_more": (delta(0, "text_delta", "text", "a", new=1), None),
    "unknown_delta": (delta(0, "compaction_delta", "content", "c"), None),
    "event_with_more": ({**delta(0, "text_delta", "text", "a"), "new": 1}, None),
}


@pytest.mark.parametrize(("doc", "expected"), PLAIN.values(), ids=PLAIN.keys())
def test_plain_deltas_stay_mergeable(doc: dict[str, Any], expected: m.BlockDelta | None) -> None:
    (out,) = grpc_events([raw_event(doc)])
    if expected is None:
        assert isinstance(out, pb.StreamEvent)
        assert event_to_json(out) == doc
    else:
        assert out == m.ContentBlockDelta(index=doc["index"], delta=expected)


def test_a_relayed_stream_loses_nothing() -> None:
    docs = shapes.events()
    out = coalesce(grpc_events([raw_event(d) for d in docs]))
    assert len(out) == len(docs)
    for event, doc in zip(out, docs, strict=True):
        proto = event if isinstance(event, pb.StreamEvent) else _render(event)
        assert event_to_json(proto) == without_nulls(doc)


def test_relayed_deltas_merge() -> None:
    docs = [delta(3, "text_delta", "text", x) for x in ("a", "b", "c")]
    assert coalesce(grpc_events([raw_event(d) for d in docs])) == [
        m.ContentBlockDelta(index=3, delta=m.TextDelta(text="abc"))
    ]


def test_relayed_message_loses_nothing() -> None:
    body = orjson.dumps(shapes.message())
    reply = message_reply(m.RawMessage(body=body, view=m.message_view_decoder.decode(body)))
    assert message_to_json(reply) == without_nulls(shapes.message())


def test_translated_message_is_rendered() -> None:
    message = m.Message(id="x", model="y", content=[m.TextBlock(text="hi")], stop_reason="end_turn")
    reply = message_reply(message)
    assert reply.content[0].text.text == "hi" and reply.stop_reason == pb.STOP_REASON_END_TURN


def _render(event: m.StreamEvent) -> pb.StreamEvent:
    from sidecar.grpc_api.render import event_to_proto

    return event_to_proto(event)
