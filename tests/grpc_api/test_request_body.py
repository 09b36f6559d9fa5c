"""Tables for sidecar.grpc_api.request_body: a gRPC request as typed request + JSON body."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from sidecar import model as m
from sidecar.errors import InvalidRequestError
from sidecar.grpc_api.convert import dict_to_struct, messages_request_from_proto
from sidecar.grpc_api.gen.anyllm.sidecar.v1 import messages_pb2 as pb
from sidecar.grpc_api.gen.anyllm.sidecar.v1 import messages_service_pb2 as spb
from sidecar.grpc_api.request_body import count_request, messages_request
from tests.grpc_api.test_convert import INVALID


def _text(text: str) -> pb.ContentBlock:
    return pb.ContentBlock(text=pb.TextBlock(text=text))


def _request(*history: pb.InputMessage, **fields: Any) -> spb.CreateMessageRequest:
    messages = [*history, pb.InputMessage(role=pb.ROLE_USER, content=[_text("hi")])]
    return spb.CreateMessageRequest(model="m", max_tokens=8, messages=messages, **fields)


SERVER_TOOL_TURN = pb.InputMessage(
    role=pb.ROLE_ASSISTANT,
    content=[
        pb.ContentBlock(
            server_tool_use=pb.ServerToolUseBlock(
                id="srvtoolu_1", name="web_search", input=dict_to_struct({"query": "q"})
            )
        ),
        _text("found it"),
    ],
)
RAW_BLOCK = pb.ContentBlock(
    raw=pb.RawJson(type="tool_reference", json='{"type":"tool_reference","tool_name":"t"}')
)

# request -> (what the typed request leaves out, a key of the JSON body to check)
CASES = {
    "plain": (_request(), ()),
    "server_tool_block_in_history": (_request(SERVER_TOOL_TURN), ("block:server_tool_use",)),
    "raw_block": (
        _request(pb.InputMessage(role=pb.ROLE_USER, content=[RAW_BLOCK, _text("x")])),
        ("block:tool_reference",),
    ),
    "extra_top_level_field": (_request(extra_json='{"speed": "fast"}'), ()),
    "toolset_without_name": (
        _request(tools=[pb.Tool(type="browser_toolset_20260801")]),
        ("tool:browser_toolset_20260801",),
    ),
}


@pytest.mark.parametrize(("proto", "unmodelled"), CASES.values(), ids=CASES.keys())
def test_typed_request_and_body(
    proto: spb.CreateMessageRequest, unmodelled: tuple[str, ...]
) -> None:
    typed, body, left_out = messages_request(proto, stream=False)
    assert left_out == unmodelled
    doc = orjson.loads(body)
    assert doc["model"] == "m" and doc["max_tokens"] == 8
    # The typed request is the body as the model knows it (what the HTTP door would decode).
    assert typed.messages[-1] == m.InputMessage(role="user", content=[m.TextBlock(text="hi")])
    if not unmodelled and "extra_json" not in str(proto):
        assert typed == messages_request_from_proto(proto)


def test_the_escape_hatch_is_in_the_body() -> None:
    proto = _request(
        pb.InputMessage(role=pb.ROLE_USER, content=[RAW_BLOCK]),
        extra_json='{"speed": "fast", "context_management": {"edits": []}}',
    )
    typed, body, _ = messages_request(proto, stream=True)
    doc = orjson.loads(body)
    assert doc["speed"] == "fast"
    assert doc["context_management"] == {"edits": []}
    assert doc["messages"][0]["content"] == [{"type": "tool_reference", "tool_name": "t"}]
    assert doc["stream"] is True and typed.stream is True


def test_a_wrong_known_field_is_still_named_by_its_proto_path() -> None:
    bad = pb.ContentBlock(tool_use=pb.ToolUseBlock(name="f"))
    with pytest.raises(InvalidRequestError) as info:
        messages_request(
            _request(pb.InputMessage(role=pb.ROLE_ASSISTANT, content=[bad])), stream=False
        )
    assert info.value.field == "messages[0].content[0].tool_use.id"


def test_count_tokens_carries_the_escape_hatch() -> None:
    proto = spb.CountTokensRequest(
        model="m",
        messages=[pb.InputMessage(role=pb.ROLE_USER, content=[_text("hi"), RAW_BLOCK])],
        extra_json='{"output_config": {"effort": "low"}}',
    )
    typed, body, unmodelled = count_request(proto)
    assert orjson.loads(body)["output_config"] == {"effort": "low"}
    assert unmodelled == ("block:tool_reference",)
    assert typed.model == "m"


# The proto conversion's checks, through the request path: the same field named (or, for what
# today's API allows, accepted: a toolset has no name; max_tokens is the engine's range check).
ACCEPTED_NOW = {"tool_no_name", "no_max_tokens"}


@pytest.mark.parametrize(("proto", "field"), INVALID.values(), ids=INVALID.keys())
def test_invalid_request_names_the_field(proto: spb.CreateMessageRequest, field: str) -> None:
    name = next(k for k, v in INVALID.items() if v[0] is proto)
    if name in ACCEPTED_NOW:
        messages_request(proto, stream=False)
        return
    with pytest.raises(InvalidRequestError) as info:
        messages_request(proto, stream=False)
    assert info.value.field == field
