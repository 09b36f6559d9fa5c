"""The gRPC surface loses nothing, both ways, through the real sidecar process.

Answers: an Anthropic-protocol upstream's answer in today's shapes (anthropic 2.15, with
server-tool blocks, new usage fields, a stop reason from the future, a block and an event type
nobody models) reaches a gRPC caller whole: typed where the proto models it, in the escape
hatch otherwise, so that the proto read back as JSON is the upstream's answer. Requests: the
escape hatch (``extra_json``, ``raw`` blocks, typed server-tool blocks) reaches an Anthropic
upstream as JSON, and is named in ``x-anyllm-degradation`` by a translating one.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import httpx
import orjson
import pytest

from sidecar.grpc_api.convert import dict_to_struct
from sidecar.grpc_api.gen.anyllm.sidecar.v1 import messages_pb2 as pb
from sidecar.grpc_api.gen.anyllm.sidecar.v1 import messages_service_pb2 as spb
from sidecar.grpc_api.gen.anyllm.sidecar.v1 import messages_service_pb2_grpc as spb_grpc
from sidecar.grpc_api.json_proto import event_to_json, message_to_json
from tests.fixtures.current_api import shapes
from tests.grpc_api.test_json_proto import without_nulls
from tests.integration.helpers import sidecar_config

pytestmark = pytest.mark.integration

UNKNOWN_BLOCK = {
    "type": "tool_search_tool_result",
    "tool_use_id": "srvtoolu_9",
    "content": {"n": 1},
}
CHAINS = ["native", "native-then-primary"]


@pytest.fixture(scope="module")
def sidecar(module_upstream: Any, module_sidecar_factory: Callable[..., Any]) -> Any:
    return module_sidecar_factory(sidecar_config(module_upstream.base_url))


@pytest.fixture
def stub(sidecar: Any, upstream: Any) -> Iterator[spb_grpc.MessagesServiceStub]:
    with grpc.insecure_channel(sidecar.grpc_target) as channel:
        yield spb_grpc.MessagesServiceStub(channel)


def no_failures(sidecar: Any) -> None:
    for state in httpx.get(f"{sidecar.http_url}/debug/breakers").json().values():
        assert state.get("failures", 0) == 0, state


def hello(**fields: Any) -> spb.CreateMessageRequest:
    text = pb.ContentBlock(text=pb.TextBlock(text="hi"))
    return spb.CreateMessageRequest(
        model="claude-x",
        max_tokens=10,
        messages=[pb.InputMessage(role=pb.ROLE_USER, content=[text])],
        **fields,
    )


@pytest.mark.parametrize("chain", CHAINS)
@pytest.mark.parametrize("stop_reason", ["model_context_window_exceeded", "from_the_future"])
def test_answer_loses_nothing(
    stub: spb_grpc.MessagesServiceStub, sidecar: Any, upstream: Any, chain: str, stop_reason: str
) -> None:
    body = shapes.message(
        stop_reason,
        [
            shapes.SERVER_TOOL_USE,
            shapes.WEB_SEARCH_RESULT,
            shapes.CONTAINER_UPLOAD,
            UNKNOWN_BLOCK,
            {**shapes.TEXT, "a_new_field": [1]},
        ],
    )
    body["a_new_top_level_field"] = {"x": 1}
    upstream.control.script({"body": body})
    reply, call = stub.CreateMessage.with_call(hello(), metadata=[("x-anyllm-chain", chain)])
    assert dict(call.trailing_metadata())["x-anyllm-attempts"] == "1"
    assert message_to_json(reply) == without_nulls(body)
    assert [b.WhichOneof("block") for b in reply.content] == [
        "server_tool_use",
        "web_search_tool_result",
        "container_upload",
        "raw",
        "text",
    ]
    assert reply.raw_stop_reason == stop_reason
    assert orjson.loads(reply.content[3].raw.json) == UNKNOWN_BLOCK
    assert len(upstream.control.log()) == 1
    no_failures(sidecar)


def test_stream_loses_nothing(
    stub: spb_grpc.MessagesServiceStub, sidecar: Any, upstream: Any
) -> None:
    events = shapes.events("from_the_future")
    upstream.control.script({"events": events})
    call = stub.StreamMessage(hello(), metadata=[("x-anyllm-chain", "native-then-primary")])
    received = [event_to_json(event) for event in call]
    assert received == [without_nulls(e) for e in events]
    assert dict(call.initial_metadata())["x-anyllm-attempts"] == "1"
    no_failures(sidecar)


def _hatch_request() -> spb.CreateMessageRequest:
    history = pb.InputMessage(
        role=pb.ROLE_ASSISTANT,
        content=[
            pb.ContentBlock(
                server_tool_use=pb.ServerToolUseBlock(
                    id="srvtoolu_01", name="web_search", input=dict_to_struct({"query": "q"})
                )
            ),
            pb.ContentBlock(
                web_search_tool_result=pb.ServerToolResultBlock(tool_use_id="srvtoolu_01")
            ),
        ],
    )
    history.content[1].web_search_tool_result.content.list_value.SetInParent()
    question = pb.InputMessage(
        role=pb.ROLE_USER,
        content=[
            pb.ContentBlock(
                raw=pb.RawJson(
                    type="tool_reference", json='{"type":"tool_reference","tool_name":"t"}'
                )
            ),
            pb.ContentBlock(text=pb.TextBlock(text="and?")),
        ],
    )
    return spb.CreateMessageRequest(
        model="claude-x",
        max_tokens=10,
        messages=[
            pb.InputMessage(
                role=pb.ROLE_USER, content=[pb.ContentBlock(text=pb.TextBlock(text="hi"))]
            ),
            history,
            question,
        ],
        tools=[
            pb.Tool(type="web_search_20250305", name="web_search", extra_json='{"max_uses": 2}')
        ],
        extra_json='{"speed": "fast", "context_management": {"edits": []}}',
    )


EXPECTED_BODY = {
    "model": "claude-upstream",
    "max_tokens": 10,
    "messages": [
        {"role": "user", "content": [{"type": "text", "text": "hi"}]},
        {
            "role": "assistant",
            "content": [
                {
                    "type": "server_tool_use",
                    "id": "srvtoolu_01",
                    "name": "web_search",
                    "input": {"query": "q"},
                },
                {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_01", "content": []},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_reference", "tool_name": "t"},
                {"type": "text", "text": "and?"},
            ],
        },
    ],
    "tools": [{"type": "web_search_20250305", "name": "web_search", "max_uses": 2}],
    "speed": "fast",
    "context_management": {"edits": []},
}


@pytest.mark.parametrize("rpc", ["CreateMessage", "StreamMessage"])
def test_escape_hatch_reaches_an_anthropic_upstream(
    stub: spb_grpc.MessagesServiceStub, upstream: Any, rpc: str
) -> None:
    upstream.control.script(
        {"body": shapes.message()} if rpc == "CreateMessage" else {"events": shapes.events()}
    )
    metadata = [("x-anyllm-chain", "native"), ("anthropic-beta", "context-management-2025-06-27")]
    result = getattr(stub, rpc)(_hatch_request(), metadata=metadata)
    if rpc == "StreamMessage":
        list(result)
    seen = upstream.control.log()[-1]
    expected = copy.deepcopy(EXPECTED_BODY)
    if rpc == "StreamMessage":
        expected["stream"] = True
    assert seen["body"] == expected
    assert seen["headers"]["anthropic-beta"] == "context-management-2025-06-27"


def test_escape_hatch_is_named_by_a_translating_upstream(
    stub: spb_grpc.MessagesServiceStub, upstream: Any
) -> None:
    _, call = stub.CreateMessage.with_call(
        _hatch_request(), metadata=[("x-anyllm-chain", "default")]
    )
    names = dict(call.trailing_metadata())["x-anyllm-degradation"].split(",")
    for name in (
        "block:server_tool_use",
        "block:web_search_tool_result",
        "block:tool_reference",
        "field:speed",
        "field:context_management",
        "field:tools[].max_uses",
    ):
        assert name in names, (name, names)


def test_count_tokens_carries_the_escape_hatch(
    stub: spb_grpc.MessagesServiceStub, upstream: Any
) -> None:
    request = spb.CountTokensRequest.FromString(_hatch_request().SerializeToString())
    request.DiscardUnknownFields()
    count = stub.CountTokens(request, metadata=[("x-anyllm-chain", "native")])
    assert not count.estimated
    seen = upstream.control.log()[-1]
    assert seen["path"] == "/v1/messages/count_tokens"
    expected = {k: v for k, v in EXPECTED_BODY.items() if k != "max_tokens"}
    assert seen["body"] == expected
