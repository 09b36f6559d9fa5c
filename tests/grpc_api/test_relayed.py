"""sidecar.grpc_api.relayed: answers and stream batches as protobuf; each fast path is the
general conversion (tables over every event shape, and properties over batches)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar import model as m
from sidecar.errors import UpstreamError
from sidecar.grpc_api.gen.anyllm.sidecar.v1 import messages_pb2 as pb
from sidecar.grpc_api.json_proto import event_from_json, event_to_json, message_to_json
from sidecar.grpc_api.relayed import grpc_events, message_reply
from sidecar.grpc_api.render import event_to_proto
from tests.fixtures.current_api import shapes
from tests.grpc_api.merge import coalesce
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


# a relayed event, and whether it is a plain delta (built straight into its proto, mergeable)
PLAIN = {
    "text": (delta(0, "text_delta", "text", "a"), True),
    "json": (delta(1, "input_json_delta", "partial_json", "{"), True),
    "thinking": (delta(0, "thinking_delta", "thinking", "t"), True),
    "empty_text": (delta(2, "text_delta", "text", ""), True),
    "signature": (delta(0, "signature_delta", "signature", "s"), False),
    "text_with_more": (delta(0, "text_delta", "text", "a", new=1), False),
    "unknown_delta": (delta(0, "compaction_delta", "content", "c"), False),
    "event_with_more": ({**delta(0, "text_delta", "text", "a"), "new": 1}, False),
    "null_index": ({**delta(0, "text_delta", "text", "a"), "index": None}, False),
    "index_past_int32": (delta(2**31, "text_delta", "text", "a"), False),
    "text_not_a_string": (delta(0, "text_delta", "text", 5), False),  # type: ignore[arg-type]
}


@pytest.mark.parametrize(("doc", "plain"), PLAIN.values(), ids=PLAIN.keys())
def test_an_event_is_the_general_conversion(doc: dict[str, Any], plain: bool) -> None:
    (out,) = grpc_events([raw_event(doc)])
    assert out == event_from_json(doc)
    assert event_to_json(out) == without_nulls(doc) or not plain
    assert _mergeable(doc, out) is plain
    # a plain delta merges with the next one of its block; any other event stays apart
    assert len(grpc_events([raw_event(doc), raw_event(doc)])) == (1 if plain else 2)


@pytest.mark.parametrize("doc", shapes.events(), ids=lambda d: str(d["type"]))
def test_every_event_of_a_relayed_stream_is_the_general_conversion(doc: dict[str, Any]) -> None:
    assert grpc_events([raw_event(doc)]) == [event_from_json(doc)]


def test_a_relayed_stream_loses_nothing() -> None:
    docs = shapes.events()
    out = grpc_events([raw_event(d) for d in docs])
    assert len(out) == len(docs)
    for event, doc in zip(out, docs, strict=True):
        assert event_to_json(event) == without_nulls(doc)


def test_relayed_deltas_merge() -> None:
    docs = [delta(3, "text_delta", "text", x) for x in ("a", "b", "c")]
    assert grpc_events([raw_event(d) for d in docs]) == [
        event_from_json(delta(3, "text_delta", "text", "abc"))
    ]


def test_an_error_event_raises_before_its_batch_is_written() -> None:
    error = {"type": "error", "error": {"type": "overloaded_error", "message": "busy"}}
    with pytest.raises(UpstreamError) as caught:
        grpc_events([raw_event(delta(0, "text_delta", "text", "a")), raw_event(error)])
    assert (caught.value.error_type, caught.value.message) == ("overloaded_error", "busy")
    with pytest.raises(UpstreamError) as caught:
        grpc_events([raw_event({"type": "error"})])
    assert caught.value.error_type == "api_error"


# ----------------------------------------------------------------- batches: fast path = general


def _mergeable(doc: dict[str, Any], proto: pb.StreamEvent) -> bool:
    """A typed text / partial JSON / thinking delta that stands for its JSON exactly."""
    if proto.WhichOneof("event") != "content_block_delta" or proto.extra_json:
        return False
    case = proto.content_block_delta.WhichOneof("delta")
    return case in _CASES and event_to_json(proto) == doc


_CASES = ("text_delta", "input_json_delta", "thinking_delta")


def _reference(docs: list[dict[str, Any]]) -> list[pb.StreamEvent]:
    """Each event by the general conversion, then runs of mergeable deltas of one block and
    case joined: what ``grpc_events`` must give, by another road."""
    out: list[pb.StreamEvent] = []
    last_mergeable = False
    for doc in docs:
        proto = event_from_json(doc)
        mergeable = _mergeable(doc, proto)
        if mergeable and last_mergeable:
            prev, cur = out[-1].content_block_delta, proto.content_block_delta
            case = cur.WhichOneof("delta")
            if prev.index == cur.index and prev.WhichOneof("delta") == case:
                setattr(prev, str(case), getattr(prev, str(case)) + getattr(cur, str(case)))
                continue
        out.append(proto)
        last_mergeable = mergeable
    return out


_kinds = st.sampled_from(
    [("text_delta", "text"), ("input_json_delta", "partial_json"), ("thinking_delta", "thinking")]
)
_plain_docs = st.builds(
    lambda i, k, v: delta(i, k[0], k[1], v), st.integers(0, 2), _kinds, st.text(max_size=3)
)
_other_docs = st.one_of(
    st.builds(lambda i: delta(i, "signature_delta", "signature", "s"), st.integers(0, 2)),
    st.builds(lambda i: delta(i, "text_delta", "text", "x", citations=None), st.integers(0, 2)),
    st.builds(lambda i: {**delta(i, "text_delta", "text", "y"), "n": 1}, st.integers(0, 2)),
    st.builds(lambda i: {"type": "content_block_stop", "index": i}, st.integers(0, 2)),
    st.just({**delta(0, "text_delta", "text", "z"), "index": None}),
    st.just({"type": "ping"}),
    st.just({"type": "future_event", "x": [1]}),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(_plain_docs, _plain_docs, _other_docs), max_size=10))
def test_a_batch_is_the_general_conversion_merged(docs: list[dict[str, Any]]) -> None:
    assert grpc_events([raw_event(d) for d in docs]) == _reference(docs)


_model_events = st.one_of(
    st.builds(
        lambda i, v: m.ContentBlockDelta(index=i, delta=m.TextDelta(text=v)),
        st.integers(0, 2),
        st.text(max_size=3),
    ),
    st.builds(
        lambda i, v: m.ContentBlockDelta(index=i, delta=m.InputJsonDelta(partial_json=v)),
        st.integers(0, 2),
        st.text(max_size=3),
    ),
    st.builds(
        lambda i, v: m.ContentBlockDelta(index=i, delta=m.ThinkingDelta(thinking=v)),
        st.integers(0, 2),
        st.text(max_size=3),
    ),
    st.builds(
        lambda i: m.ContentBlockDelta(index=i, delta=m.SignatureDelta(signature="s")),
        st.integers(0, 2),
    ),
    st.builds(lambda i: m.ContentBlockStop(index=i), st.integers(0, 2)),
    st.just(m.Ping()),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_model_events, max_size=10))
def test_a_translated_batch_is_coalesce_rendered(events: list[m.StreamEvent]) -> None:
    assert grpc_events(list(events)) == [event_to_proto(e) for e in coalesce(events)]


def test_relayed_message_loses_nothing() -> None:
    body = orjson.dumps(shapes.message())
    reply = message_reply(m.RawMessage(body=body, view=m.message_view_decoder.decode(body)))
    assert message_to_json(reply) == without_nulls(shapes.message())


def test_translated_message_is_rendered() -> None:
    message = m.Message(id="x", model="y", content=[m.TextBlock(text="hi")], stop_reason="end_turn")
    reply = message_reply(message)
    assert reply.content[0].text.text == "hi" and reply.stop_reason == pb.STOP_REASON_END_TURN
