"""The gRPC surface end to end: generated Python stubs → the sidecar process → the fake
upstream process. Status codes, rich error details and metadata are checked as a client sees
them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
from google.protobuf import json_format, struct_pb2
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status

from sidecar.grpc_api.gen.anyllm.sidecar.v1 import (
    messages_pb2 as pb,
)
from sidecar.grpc_api.gen.anyllm.sidecar.v1 import (
    messages_service_pb2 as spb,
)
from sidecar.grpc_api.gen.anyllm.sidecar.v1 import (
    messages_service_pb2_grpc as spb_grpc,
)
from tests.integration.helpers import PRIMARY_KEY, SECONDARY_KEY, WEATHER_TOOL, sidecar_config

pytestmark = pytest.mark.integration


@pytest.fixture
def sidecar(upstream: Any, sidecar_factory: Callable[..., Any]) -> Any:
    return sidecar_factory(sidecar_config(upstream.base_url))


@pytest.fixture
def channel(sidecar: Any) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(sidecar.grpc_target) as ch:
        yield ch


@pytest.fixture
def stub(channel: grpc.Channel) -> spb_grpc.MessagesServiceStub:
    return spb_grpc.MessagesServiceStub(channel)


def request(text: str = "hello there", **fields: Any) -> spb.CreateMessageRequest:
    message = pb.InputMessage(
        role=pb.ROLE_USER, content=[pb.ContentBlock(text=pb.TextBlock(text=text))]
    )
    base: dict[str, Any] = {"model": "claude-x", "max_tokens": 64, "messages": [message]}
    base.update(fields)
    return spb.CreateMessageRequest(**base)


def details(error: grpc.RpcError) -> tuple[error_details_pb2.ErrorInfo, Any]:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None, "no rich status details"
    info = error_details_pb2.ErrorInfo()
    retry = None
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            detail.Unpack(info)
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            detail.Unpack(retry)
    return info, retry


def test_unary_create_with_metadata(stub: spb_grpc.MessagesServiceStub, upstream: Any) -> None:
    message, call = stub.CreateMessage.with_call(
        request(system="be brief"), metadata=[("x-request-id", "req-grpc-1")]
    )
    assert message.content[0].text.text == "echo: hello there"
    assert message.stop_reason == pb.STOP_REASON_END_TURN
    assert message.role == pb.ROLE_ASSISTANT
    assert message.usage.output_tokens > 0
    trailing = dict(call.trailing_metadata())
    assert trailing["x-anyllm-backend"] == "primary"
    assert trailing["x-anyllm-attempts"] == "1"
    assert trailing["x-request-id"] == "req-grpc-1"
    (seen,) = upstream.control.log()
    assert seen["body"]["messages"][0] == {"role": "system", "content": "be brief"}
    assert seen["headers"]["x-request-id"] == "req-grpc-1"


def test_stream_events_in_order_with_initial_metadata(stub: spb_grpc.MessagesServiceStub) -> None:
    responses = stub.StreamMessage(request("one two three"))
    events = list(responses)
    kinds = [e.WhichOneof("event") for e in events]
    assert kinds[0] == "message_start"
    assert kinds[1] == "content_block_start"
    assert kinds[-2:] == ["message_delta", "message_stop"]
    text = "".join(
        e.content_block_delta.text_delta
        for e in events
        if e.WhichOneof("event") == "content_block_delta"
    )
    assert text == "echo: one two three"
    initial = dict(responses.initial_metadata())
    assert initial["x-anyllm-backend"] == "primary"
    assert responses.code() == grpc.StatusCode.OK
    delta = events[-2].message_delta
    assert delta.stop_reason == pb.STOP_REASON_END_TURN
    assert delta.usage.output_tokens > 0


def tool_request() -> spb.CreateMessageRequest:
    schema = struct_pb2.Struct()
    schema.update(WEATHER_TOOL["input_schema"])
    tool = pb.Tool(name="get_weather", description="Weather", input_schema=schema)
    return request("weather in Paris?", tools=[tool])


def test_tool_use_unary_and_stream(stub: spb_grpc.MessagesServiceStub, upstream: Any) -> None:
    call = {"tool_calls": [{"id": "call_9", "name": "get_weather", "arguments": {"city": "Paris"}}]}
    upstream.control.script(call, call)
    message = stub.CreateMessage(tool_request())
    assert message.stop_reason == pb.STOP_REASON_TOOL_USE
    (block,) = [b.tool_use for b in message.content if b.WhichOneof("block") == "tool_use"]
    assert block.name == "get_weather"
    assert json_format.MessageToDict(block.input) == {"city": "Paris"}

    events = list(stub.StreamMessage(tool_request()))
    fragments = "".join(
        e.content_block_delta.input_json_delta
        for e in events
        if e.WhichOneof("event") == "content_block_delta"
    )
    assert fragments.replace(" ", "") == '{"city":"Paris"}'
    starts = [
        e.content_block_start for e in events if e.WhichOneof("event") == "content_block_start"
    ]
    assert starts[0].content_block.tool_use.name == "get_weather"


@pytest.mark.parametrize("stream", [False, True], ids=["unary", "stream"])
def test_fallback(stub: spb_grpc.MessagesServiceStub, upstream: Any, stream: bool) -> None:
    upstream.control.script({"status": 502})
    if stream:
        responses = stub.StreamMessage(request())
        events = list(responses)
        assert events[-1].WhichOneof("event") == "message_stop"
        metadata = dict(responses.initial_metadata())
    else:
        _, call = stub.CreateMessage.with_call(request())
        metadata = dict(call.trailing_metadata())
    assert metadata["x-anyllm-backend"] == "secondary"
    assert metadata["x-anyllm-attempts"] == "2"
    keys = [e["headers"]["authorization"] for e in upstream.control.log()]
    assert keys == [f"Bearer {PRIMARY_KEY}", f"Bearer {SECONDARY_KEY}"]


@pytest.mark.parametrize("stream", [False, True], ids=["unary", "stream"])
def test_upstream_400_is_invalid_argument_with_details(
    stub: spb_grpc.MessagesServiceStub, upstream: Any, stream: bool
) -> None:
    upstream.control.script({"status": 400, "body": {"error": {"message": "no such parameter"}}})
    with pytest.raises(grpc.RpcError) as info:
        if stream:
            list(stub.StreamMessage(request()))
        else:
            stub.CreateMessage(request())
    error = info.value
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
    assert "no such parameter" in error.details()  # type: ignore[attr-defined]
    error_info, _ = details(error)
    assert error_info.domain == "anyllm.dev"
    assert error_info.metadata["error_type"] == "invalid_request_error"
    assert len(upstream.control.log()) == 1


def test_exhausted_chain_status_and_retry_info(
    stub: spb_grpc.MessagesServiceStub, upstream: Any
) -> None:
    upstream.control.script(
        {"status": 429, "headers": {"retry-after": "7"}},
        {"status": 429, "headers": {"retry-after": "7"}},
    )
    with pytest.raises(grpc.RpcError) as info:
        stub.CreateMessage(request())
    error = info.value
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED  # type: ignore[attr-defined]
    trailing = dict(error.trailing_metadata())  # type: ignore[attr-defined]
    assert trailing["x-anyllm-fallback-exhausted"] == "true"
    assert trailing["x-anyllm-attempts"] == "2"
    error_info, retry = details(error)
    assert error_info.reason == "FALLBACK_EXHAUSTED"
    assert retry is not None and retry.retry_delay.seconds == 7


def test_cut_after_commit_ends_with_an_error_status(
    stub: spb_grpc.MessagesServiceStub, upstream: Any
) -> None:
    upstream.control.script({"stream_cut_after": 3, "text": "a b c d e f g h"})
    responses = stub.StreamMessage(request())
    received = []
    with pytest.raises(grpc.RpcError) as info:
        for event in responses:
            received.append(event.WhichOneof("event"))
    assert "content_block_delta" in received
    assert "message_stop" not in received
    assert info.value.code() != grpc.StatusCode.OK  # type: ignore[attr-defined]
    assert len(upstream.control.log()) == 1


def test_deadline_cancels_the_upstream(stub: spb_grpc.MessagesServiceStub, upstream: Any) -> None:
    upstream.control.script({"hang": True})
    with pytest.raises(grpc.RpcError) as info:
        stub.CreateMessage(request(), timeout=0.5)
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED  # type: ignore[attr-defined]
    # The sidecar gave up on the upstream too: it saw the connection go away.
    upstream.control.wait_for(lambda log: log and log[0]["disconnected"])


def test_stream_cancel_reaches_the_upstream(
    stub: spb_grpc.MessagesServiceStub, upstream: Any
) -> None:
    upstream.control.script({"stall_after": 3, "text": "a b c d e f"})
    responses = stub.StreamMessage(request())
    first = next(responses)
    assert first.WhichOneof("event") == "message_start"
    responses.cancel()
    upstream.control.wait_for(lambda log: log and log[0]["disconnected"])


BAD = [
    pytest.param(dict(max_tokens=0), "max_tokens", id="missing-max-tokens"),
    pytest.param(dict(messages=[]), "messages", id="empty-messages"),
    pytest.param(
        dict(messages=[pb.InputMessage(content=[pb.ContentBlock(text=pb.TextBlock(text="x"))])]),
        "messages[0].role",
        id="unspecified-role",
    ),
    pytest.param(
        dict(messages=[pb.InputMessage(role=pb.ROLE_USER, content=[pb.ContentBlock()])]),
        "messages[0].content[0]",
        id="empty-content-block",
    ),
    pytest.param(dict(model=""), "model", id="no-model"),
]


@pytest.mark.parametrize(("fields", "expected"), BAD)
def test_bad_input_is_invalid_argument(
    stub: spb_grpc.MessagesServiceStub, upstream: Any, fields: dict[str, Any], expected: str
) -> None:
    with pytest.raises(grpc.RpcError) as info:
        stub.CreateMessage(request(**fields))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
    assert expected in info.value.details()  # type: ignore[attr-defined]
    assert upstream.control.log() == []
    assert stub.CreateMessage(request("still fine")).content[0].text.text == "echo: still fine"


def test_count_tokens(stub: spb_grpc.MessagesServiceStub) -> None:
    counted = stub.CountTokens(spb.CountTokensRequest(model="x", messages=request().messages))
    assert counted.input_tokens > 0
    assert counted.estimated
    native = stub.CountTokens(
        spb.CountTokensRequest(model="x", messages=request().messages),
        metadata=[("x-anyllm-chain", "native")],
    )
    assert not native.estimated


def test_health_and_reflection(channel: grpc.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    assert (
        health.Check(health_pb2.HealthCheckRequest()).status
        == health_pb2.HealthCheckResponse.SERVING
    )
    reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
    (answer,) = reflection.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")])
    )
    names = {s.name for s in answer.list_services_response.service}
    assert "anyllm.sidecar.v1.MessagesService" in names
    assert "grpc.health.v1.Health" in names
