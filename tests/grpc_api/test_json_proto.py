"""Tables for sidecar.grpc_api.json_proto: Anthropic JSON ⇄ protobuf, nothing lost."""

from __future__ import annotations

import copy
from typing import Any

import msgspec
import orjson
import pytest

from sidecar import model as m
from sidecar.errors import InvalidRequestError
from sidecar.grpc_api.convert import dict_to_struct, messages_request_from_proto
from sidecar.grpc_api.gen.anyllm.sidecar.v1 import messages_pb2 as pb
from sidecar.grpc_api.gen.anyllm.sidecar.v1 import messages_service_pb2 as spb
from sidecar.grpc_api.json_proto import (
    event_from_json,
    event_to_json,
    message_from_json,
    message_to_json,
    request_to_json,
)
from tests.fixtures.current_api import shapes
from tests.grpc_api.test_convert import REQUESTS


def without_nulls(value: Any) -> Any:
    """JSON ``null`` means "not set" in proto3: compare without them."""
    if isinstance(value, dict):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_nulls(v) for v in value]
    return value


# ----------------------------------------------------------------------------- requests


@pytest.mark.parametrize("proto", REQUESTS.values(), ids=REQUESTS.keys())
def test_request_json_is_the_typed_request(proto: spb.CreateMessageRequest) -> None:
    body, hatch = request_to_json(proto)
    assert not hatch
    assert m.request_decoder.decode(orjson.dumps(body)) == messages_request_from_proto(proto)


def test_stream_request_says_so() -> None:
    body, _ = request_to_json(REQUESTS["minimal"], stream=True)
    assert body["stream"] is True


def _hatch_request() -> spb.CreateMessageRequest:
    unknown = {"type": "tool_reference", "tool_name": "lookup"}
    return spb.CreateMessageRequest(
        model="m",
        max_tokens=8,
        messages=[
            pb.InputMessage(
                role=pb.ROLE_USER,
                content=[
                    pb.ContentBlock(text=pb.TextBlock(text="hi"), extra_json='{"new": 1}'),
                    pb.ContentBlock(
                        raw=pb.RawJson(type="tool_reference", json=orjson.dumps(unknown).decode())
                    ),
                ],
            )
        ],
        tools=[
            pb.Tool(type="web_search_20250305", name="web_search", extra_json='{"max_uses": 2}'),
            pb.Tool(type="browser_toolset_20260801"),
        ],
        output_config=pb.OutputConfig(effort="high"),
        extra_json='{"speed": "fast", "output_config": {"format": {"type": "json_schema"}},'
        ' "thinking": {"type": "between_tools"}}',
    )


def test_escape_hatch_reaches_the_json() -> None:
    body, hatch = request_to_json(_hatch_request())
    assert hatch
    assert body == {
        "model": "m",
        "max_tokens": 8,
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "hi", "new": 1},
                    {"type": "tool_reference", "tool_name": "lookup"},
                ],
            }
        ],
        "tools": [
            {"type": "web_search_20250305", "name": "web_search", "max_uses": 2},
            {"type": "browser_toolset_20260801"},
        ],
        # deep-merged: the typed effort stays beside the extra format
        "output_config": {"effort": "high", "format": {"type": "json_schema"}},
        "speed": "fast",
        "thinking": {"type": "between_tools"},
    }


def test_typed_server_tool_blocks_in_a_request() -> None:
    history = pb.InputMessage(
        role=pb.ROLE_ASSISTANT,
        content=[
            pb.ContentBlock(
                server_tool_use=pb.ServerToolUseBlock(
                    id="srvtoolu_01", name="web_search", input=dict_to_struct({"query": "q"})
                )
            ),
            pb.ContentBlock(container_upload=pb.ContainerUploadBlock(file_id="file_01")),
        ],
    )
    body, hatch = request_to_json(spb.CreateMessageRequest(model="m", messages=[history]))
    assert not hatch
    assert body["messages"][0]["content"] == [
        {
            "type": "server_tool_use",
            "id": "srvtoolu_01",
            "name": "web_search",
            "input": {"q"[0] + "uery": "q"},
        },
        {"type": "container_upload", "file_id": "file_01"},
    ]


BAD_JSON = {
    "request_extra": (spb.CreateMessageRequest(model="m", extra_json="{"), "extra_json"),
    "request_extra_not_object": (
        spb.CreateMessageRequest(model="m", extra_json="[1]"),
        "extra_json",
    ),
    "raw_block": (
        spb.CreateMessageRequest(
            model="m",
            messages=[pb.InputMessage(content=[pb.ContentBlock(raw=pb.RawJson(json="nope"))])],
        ),
        "messages[0].content[0].raw.json",
    ),
    "tool_extra": (
        spb.CreateMessageRequest(model="m", tools=[pb.Tool(name="t", extra_json="1")]),
        "tools[0].extra_json",
    ),
}


@pytest.mark.parametrize(("proto", "field"), BAD_JSON.values(), ids=BAD_JSON.keys())
def test_bad_escape_hatch_json_names_the_field(proto: spb.CreateMessageRequest, field: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        request_to_json(proto)
    assert info.value.field == field
    assert str(info.value.message).startswith(f"{field}: ")


# ----------------------------------------------------------------------------- answers

MESSAGES = {
    "current_api": shapes.message(),
    "unknown_stop_reason": shapes.message("a_stop_reason_from_the_future"),
    "container_upload": shapes.message(content=[shapes.CONTAINER_UPLOAD]),
    "unknown_block": shapes.message(
        content=[{"type": "tool_search_tool_result", "tool_use_id": "x", "content": {"a": [1]}}]
    ),
    "unknown_fields_everywhere": {
        **shapes.message(content=[{**shapes.TEXT, "new_block_field": {"deep": True}}]),
        "new_top_level": [1, "two"],
        "usage": {
            **shapes.USAGE,
            "new_counter": 3,
            "cache_creation": {
                "ephemeral_5m_input_tokens": 1,
                "ephemeral_1h_input_tokens": 0,
                "ephemeral_1d_input_tokens": 9,
            },
        },
        "role": "a_new_role",
    },
    "refusal_details": {
        **shapes.message("refusal", content=[]),
        "stop_details": {"type": "refusal", "category": "cyber", "explanation": "no"},
    },
    "code_execution": shapes.message(
        "end_turn",
        content=[
            {
                "type": "bash_code_execution_tool_result",
                "tool_use_id": "srvtoolu_02",
                "content": {
                    "type": "bash_code_execution_result",
                    "stdout": "4\n",
                    "stderr": "",
                    "return_code": 0,
                    "content": [{"type": "bash_code_execution_output", "file_id": "f"}],
                },
            },
            {
                "type": "tool_use",
                "id": "toolu_1",
                "name": "f",
                "input": {},
                "caller": {"type": "code_execution_20250825", "tool_id": "srvtoolu_02"},
                "toolset_name": "ts",
            },
        ],
    ),
    "int_too_big_for_int32": {
        **shapes.message(),
        "usage": {"input_tokens": 2**40, "output_tokens": 1},
    },
}


@pytest.mark.parametrize("doc", MESSAGES.values(), ids=MESSAGES.keys())
def test_message_loses_nothing(doc: dict[str, Any]) -> None:
    original = copy.deepcopy(doc)
    proto = message_from_json(doc)
    again = pb.Message.FromString(proto.SerializeToString())  # what a client receives
    assert message_to_json(again) == without_nulls(original)


def test_known_parts_are_typed() -> None:
    proto = message_from_json(shapes.message())
    assert proto.stop_reason == pb.STOP_REASON_MODEL_CONTEXT_WINDOW_EXCEEDED
    assert proto.raw_stop_reason == "model_context_window_exceeded"
    assert [b.WhichOneof("block") for b in proto.content] == [
        "server_tool_use",
        "web_search_tool_result",
        "text",
    ]
    assert proto.content[1].web_search_tool_result.content.list_value.values[0].struct_value[
        "url"
    ] == ("https://example.com/paris")
    assert proto.usage.server_tool_use.web_search_requests == 1
    assert proto.usage.output_tokens_details.thinking_tokens == 2
    assert proto.usage.service_tier == "standard"
    assert proto.usage.inference_geo == "us"
    assert proto.container.expires_at == "2026-12-01T12:00:00Z"
    assert not proto.extra_json


def test_unknown_parts_use_the_escape_hatch() -> None:
    proto = message_from_json(MESSAGES["unknown_fields_everywhere"])
    assert proto.role == pb.ROLE_UNSPECIFIED
    assert orjson.loads(proto.extra_json) == {
        "new_top_level": [1, "two"],
        "usage": {"new_counter": 3, "cache_creation": {"ephemeral_1d_input_tokens": 9}},
        "role": "a_new_role",
    }
    assert proto.content[0].text.text == "It is sunny in Paris."
    assert orjson.loads(proto.content[0].extra_json) == {"new_block_field": {"deep": True}}
    unknown = message_from_json(MESSAGES["unknown_block"]).content[0]
    assert unknown.WhichOneof("block") == "raw"
    assert unknown.raw.type == "tool_search_tool_result"
    future = message_from_json(MESSAGES["unknown_stop_reason"])
    assert future.stop_reason == pb.STOP_REASON_UNSPECIFIED
    assert future.raw_stop_reason == "a_stop_reason_from_the_future"


EVENTS = {f"{i}_{e['type']}": e for i, e in enumerate(shapes.events())} | {
    "unknown_delta": {
        "type": "content_block_delta",
        "index": 2,
        "delta": {"type": "compaction_delta", "x": 1},
    },
    "delta_with_new_field": {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "text_delta", "text": "a", "new": True},
    },
    "citations_delta": {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "citations_delta", "citation": {"type": "char_location", "start": 1}},
    },
    "unknown_stop_reason": {
        "type": "message_delta",
        "delta": {"stop_reason": "new_reason", "container": {"id": "c", "expires_at": "t"}},
        "usage": {"output_tokens": 0, "output_tokens_details": {"thinking_tokens": 0}},
    },
    "error": {"type": "error", "error": {"type": "overloaded_error", "message": "busy"}},
    "ping": {"type": "ping"},
}


@pytest.mark.parametrize("doc", EVENTS.values(), ids=EVENTS.keys())
def test_event_loses_nothing(doc: dict[str, Any]) -> None:
    original = copy.deepcopy(doc)
    proto = pb.StreamEvent.FromString(event_from_json(doc).SerializeToString())
    assert event_to_json(proto) == without_nulls(original)


CASES = {
    "text_delta": (EVENTS["9_content_block_delta"], "content_block_delta", "text_delta"),
    "unknown_delta": (EVENTS["unknown_delta"], "content_block_delta", "raw_delta"),
    "future_event": (EVENTS["10_future_event_type"], "raw", None),
    "message_delta": (EVENTS["unknown_stop_reason"], "message_delta", None),
}


@pytest.mark.parametrize(("doc", "case", "delta"), CASES.values(), ids=CASES.keys())
def test_event_case(doc: dict[str, Any], case: str, delta: str | None) -> None:
    proto = event_from_json(doc)
    assert proto.WhichOneof("event") == case
    if delta is not None:
        assert proto.content_block_delta.WhichOneof("delta") == delta


def test_message_delta_unknown_stop_reason_is_unspecified_and_raw() -> None:
    proto = event_from_json(EVENTS["unknown_stop_reason"]).message_delta
    assert proto.stop_reason == pb.STOP_REASON_UNSPECIFIED
    assert proto.raw_stop_reason == "new_reason"
    assert proto.container.id == "c"


def test_same_as_the_typed_render_for_what_the_model_knows() -> None:
    """A relayed answer and the same answer translated give the same proto."""
    from sidecar.grpc_api.render import message_to_proto

    doc = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "x",
        "content": [{"type": "text", "text": "hi"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 1, "output_tokens": 2},
    }
    typed = message_to_proto(msgspec.convert(doc, m.Message))
    relayed = message_from_json(doc)
    relayed.ClearField("raw_stop_reason")
    assert relayed == typed
