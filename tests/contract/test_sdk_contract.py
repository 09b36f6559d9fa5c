"""The contract with the installed anthropic SDK: every shape its ``types`` package defines
round-trips through the real sidecar, both surfaces, to a scripted Anthropic upstream and back.

Walked from the SDK itself (so a new SDK version brings its new shapes here): the response
content blocks (``ContentBlock``), the stop reasons (``StopReason``), the stream events
(``RawMessageStreamEvent``) and deltas (``RawContentBlockDelta``), the request content blocks
(``ContentBlockParam``) and the top-level request params (``MessageCreateParams``). Each is
built by ``sdk_shapes.build`` and checked:

- HTTP, with the SDK as the client: the answer is the upstream's JSON (and the SDK parses it);
  a request reaches the upstream as the SDK sent it.
- gRPC, with the generated stubs: the proto read back as JSON is the upstream's answer (typed,
  or through the escape hatch); a request built from the JSON (``json_proto.request_from_json``)
  reaches the upstream as that JSON.

Relay never depends on the sidecar's typed model (``sidecar.model``): a block type deleted
from it changes nothing here, only what a translating upstream can make of it.
``test_what_the_proto_types`` lists what the proto carries untyped: when the SDK gains a shape,
that test says so, and the proto gets a typed message for it (or the list a line).
"""

from __future__ import annotations

import copy
import json
import typing
from collections.abc import Callable, Iterator
from typing import Any, get_args

import anthropic
import anthropic.types as sdk
import grpc
import pytest
from anthropic.types import message_create_params

from sidecar.grpc_api.gen.anyllm.sidecar.v1 import messages_pb2 as pb
from sidecar.grpc_api.gen.anyllm.sidecar.v1 import messages_service_pb2 as spb
from sidecar.grpc_api.gen.anyllm.sidecar.v1 import messages_service_pb2_grpc as spb_grpc
from sidecar.grpc_api.json_proto import (
    event_from_json,
    event_to_json,
    message_from_json,
    message_to_json,
    request_from_json,
)
from tests.contract.sdk_shapes import build, members, tag
from tests.grpc_api.test_json_proto import without_nulls
from tests.integration.helpers import sidecar_config

pytestmark = pytest.mark.integration

RESPONSE_BLOCKS = {tag(cls): build(cls) for cls in members(sdk.ContentBlock)}
STOP_REASONS = list(get_args(sdk.StopReason))
EVENTS = {tag(cls): build(cls) for cls in members(sdk.RawMessageStreamEvent)}
DELTAS = {tag(cls): build(cls) for cls in members(sdk.RawContentBlockDelta)}
REQUEST_BLOCKS = {tag(cls): build(cls) for cls in members(sdk.ContentBlockParam)}
# Sent as headers by the SDK (anthropic-user-profile-id...), or the choice of rpc: not the body.
_NOT_BODY = {"model", "messages", "max_tokens", "stream", "user_profile_id", "workspace_id"}
PARAMS = {
    name: build(hint)
    for name, hint in typing.get_type_hints(
        message_create_params.MessageCreateParamsNonStreaming, include_extras=True
    ).items()
    if name not in _NOT_BODY
}
# What the proto carries through its escape hatch (a `raw` case), by design or not yet typed.
UNTYPED_BLOCKS = {"tool_search_tool_result"}
UNTYPED_REQUEST_BLOCKS = {"tool_search_tool_result"}

BASE: dict[str, Any] = {
    "model": "claude-x",
    "max_tokens": 16,
    "messages": [{"role": "user", "content": "hi"}],
}
NATIVE = [("x-anyllm-chain", "native")]


def message(content: list[Any], stop_reason: str = "end_turn") -> dict[str, Any]:
    answer = build(sdk.Message)
    answer.update(content=content, stop_reason=stop_reason, model="claude-upstream")
    return answer


def stream_events() -> list[dict[str, Any]]:
    """A stream holding every event type, every block type as a block start, every delta."""
    start = copy.deepcopy(EVENTS["message_start"])
    start["message"].update(content=[], stop_reason=None)
    out = [start]
    for index, block in enumerate(RESPONSE_BLOCKS.values()):
        out.append({"type": "content_block_start", "index": index, "content_block": block})
        out.append({"type": "content_block_stop", "index": index})
    for delta in DELTAS.values():
        out.append({"type": "content_block_delta", "index": 0, "delta": delta})
    out += [EVENTS["content_block_start"], EVENTS["content_block_delta"]]
    out += [EVENTS["content_block_stop"], EVENTS["message_delta"], EVENTS["message_stop"]]
    return out


@pytest.fixture(scope="module")
def sidecar(module_upstream: Any, module_sidecar_factory: Callable[..., Any]) -> Any:
    return module_sidecar_factory(sidecar_config(module_upstream.base_url))


@pytest.fixture
def client(sidecar: Any, upstream: Any) -> Iterator[anthropic.Anthropic]:
    headers = {"x-anyllm-chain": "native"}
    with anthropic.Anthropic(
        base_url=sidecar.http_url, api_key="k", max_retries=0, default_headers=headers
    ) as c:
        yield c


@pytest.fixture
def stub(sidecar: Any, upstream: Any) -> Iterator[spb_grpc.MessagesServiceStub]:
    with grpc.insecure_channel(sidecar.grpc_target) as channel:
        yield spb_grpc.MessagesServiceStub(channel)


def hello() -> spb.CreateMessageRequest:
    return request_from_json(BASE)


def sent_body(upstream: Any) -> dict[str, Any]:
    body: dict[str, Any] = upstream.control.log()[-1]["body"]
    assert body.pop("model") == "claude-upstream"
    return body


# ------------------------------------------------------------------ answers


@pytest.mark.parametrize("block", RESPONSE_BLOCKS.values(), ids=RESPONSE_BLOCKS.keys())
def test_response_block_http(client: anthropic.Anthropic, upstream: Any, block: Any) -> None:
    body = message([block])
    upstream.control.script({"body": body})
    raw = client.messages.with_raw_response.create(**BASE)
    assert json.loads(raw.http_response.content) == body
    assert raw.headers["x-anyllm-attempts"] == "1"
    assert raw.parse().content[0].type == block["type"]


@pytest.mark.parametrize("block", RESPONSE_BLOCKS.values(), ids=RESPONSE_BLOCKS.keys())
def test_response_block_grpc(stub: spb_grpc.MessagesServiceStub, upstream: Any, block: Any) -> None:
    body = message([block])
    upstream.control.script({"body": body})
    reply = stub.CreateMessage(hello(), metadata=NATIVE)
    assert message_to_json(reply) == without_nulls(body)


@pytest.mark.parametrize("stop_reason", STOP_REASONS)
def test_stop_reason(
    client: anthropic.Anthropic, stub: spb_grpc.MessagesServiceStub, upstream: Any, stop_reason: str
) -> None:
    body = message([RESPONSE_BLOCKS["text"]], stop_reason)
    upstream.control.script({"body": body, "times": 2})
    assert client.messages.create(**BASE).stop_reason == stop_reason
    reply = stub.CreateMessage(hello(), metadata=NATIVE)
    assert reply.raw_stop_reason == stop_reason
    assert reply.stop_reason != pb.STOP_REASON_UNSPECIFIED  # the proto knows every SDK value


def test_stream_http(client: anthropic.Anthropic, upstream: Any) -> None:
    events = stream_events()
    upstream.control.script({"events": events, "times": 2})
    with client.messages.with_streaming_response.create(**BASE, stream=True) as response:
        text = response.http_response.read().decode()
    sent = [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ")]
    assert sent == events
    parsed = list(client.messages.create(**BASE, stream=True))  # the SDK reads every event
    assert [event.type for event in parsed] == [event["type"] for event in events]


def test_stream_grpc(stub: spb_grpc.MessagesServiceStub, upstream: Any) -> None:
    events = stream_events()
    upstream.control.script({"events": events})
    received = [event_to_json(e) for e in stub.StreamMessage(hello(), metadata=NATIVE)]
    assert received == [without_nulls(e) for e in events]


# ------------------------------------------------------------------ requests


def with_block(block: Any) -> dict[str, Any]:
    return {**BASE, "messages": [{"role": "user", "content": [block]}]}


@pytest.mark.parametrize("block", REQUEST_BLOCKS.values(), ids=REQUEST_BLOCKS.keys())
def test_request_block_http(client: anthropic.Anthropic, upstream: Any, block: Any) -> None:
    client.messages.create(**with_block(block))
    assert sent_body(upstream)["messages"] == [{"role": "user", "content": [block]}]


@pytest.mark.parametrize("block", REQUEST_BLOCKS.values(), ids=REQUEST_BLOCKS.keys())
def test_request_block_grpc(stub: spb_grpc.MessagesServiceStub, upstream: Any, block: Any) -> None:
    stub.CreateMessage(request_from_json(with_block(block)), metadata=NATIVE)
    assert sent_body(upstream)["messages"] == [{"role": "user", "content": [block]}]


@pytest.mark.parametrize(("name", "value"), PARAMS.items(), ids=PARAMS.keys())
def test_request_param_http(
    client: anthropic.Anthropic, upstream: Any, name: str, value: Any
) -> None:
    client.messages.create(**BASE, **{name: value})
    assert sent_body(upstream)[name] == value


@pytest.mark.parametrize(("name", "value"), PARAMS.items(), ids=PARAMS.keys())
def test_request_param_grpc(
    stub: spb_grpc.MessagesServiceStub, upstream: Any, name: str, value: Any
) -> None:
    stub.CreateMessage(request_from_json({**BASE, name: value}), metadata=NATIVE)
    assert sent_body(upstream)[name] == value


# ------------------------------------------------------------------ what the proto types


def test_what_the_proto_types() -> None:
    untyped = {
        kind
        for kind, block in RESPONSE_BLOCKS.items()
        if message_from_json(message([block])).content[0].WhichOneof("block") == "raw"
    }
    assert untyped == UNTYPED_BLOCKS, "a new SDK block type: type it in the proto, or list it"
    untyped_params = {
        kind
        for kind, block in REQUEST_BLOCKS.items()
        if request_from_json(with_block(block)).messages[0].content[0].WhichOneof("block") == "raw"
    }
    assert untyped_params == UNTYPED_REQUEST_BLOCKS
    for event in stream_events():
        proto = event_from_json(copy.deepcopy(event))
        assert proto.WhichOneof("event") == event["type"]
        if event["type"] == "content_block_delta":
            assert proto.content_block_delta.WhichOneof("delta") == event["delta"]["type"]
