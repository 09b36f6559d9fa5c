"""Today's Messages API through the sidecar, both surfaces: a valid answer is never a failure,
and what the sidecar does not model reaches the caller (or the upstream) unchanged.

The upstream is the scripted fake answering literal bodies and streams in anthropic 2.15's
shapes (tests/fixtures/current_api); the client is the official SDK (HTTP) or the generated
stubs (gRPC). Each case checks: one attempt, the upstream's answer intact, no breaker movement.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from typing import Any

import anthropic
import grpc
import httpx
import pytest

from sidecar.grpc_api.gen.anyllm.sidecar.v1 import messages_pb2 as pb
from sidecar.grpc_api.gen.anyllm.sidecar.v1 import messages_service_pb2 as spb
from sidecar.grpc_api.gen.anyllm.sidecar.v1 import messages_service_pb2_grpc as spb_grpc
from tests.fixtures.current_api import shapes
from tests.integration.helpers import sidecar_config

pytestmark = pytest.mark.integration

STOP_REASONS = ["model_context_window_exceeded", "a_stop_reason_from_the_future"]


@pytest.fixture(scope="module")
def sidecar(module_upstream: Any, module_sidecar_factory: Callable[..., Any]) -> Any:
    return module_sidecar_factory(sidecar_config(module_upstream.base_url))


@pytest.fixture
def client(sidecar: Any, upstream: Any) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=sidecar.http_url, api_key="k", max_retries=0) as c:
        yield c


@pytest.fixture
def stub(sidecar: Any) -> Iterator[spb_grpc.MessagesServiceStub]:
    with grpc.insecure_channel(sidecar.grpc_target) as channel:
        yield spb_grpc.MessagesServiceStub(channel)


def breakers(sidecar: Any) -> Any:
    return httpx.get(f"{sidecar.http_url}/debug/breakers").json()


def no_failures(sidecar: Any) -> None:
    for state in breakers(sidecar).values():
        assert state.get("failures", 0) == 0, state


# ------------------------------------------------------------------ HTTP: answers relayed


@pytest.mark.parametrize("chain", ["native", "native-then-primary"])
@pytest.mark.parametrize("stop_reason", STOP_REASONS)
def test_new_answer_is_relayed_byte_for_byte(
    client: anthropic.Anthropic, sidecar: Any, upstream: Any, chain: str, stop_reason: str
) -> None:
    body = shapes.message(
        stop_reason,
        [shapes.SERVER_TOOL_USE, shapes.WEB_SEARCH_RESULT, shapes.CONTAINER_UPLOAD, shapes.TEXT],
    )
    upstream.control.script(
        {
            "body": body,
            "headers": {
                "request-id": "req_up_1",
                "anthropic-ratelimit-requests-remaining": "9",
            },
        }
    )
    raw = client.messages.with_raw_response.create(
        model="claude-x",
        max_tokens=10,
        messages=[{"role": "user", "content": "hi"}],
        extra_headers={"x-anyllm-chain": chain},
    )
    assert raw.status_code == 200
    assert json.loads(raw.http_response.content) == body  # nothing dropped, nothing added
    assert raw.headers["x-anyllm-attempts"] == "1"
    assert raw.headers["x-anyllm-backend"] == "native"
    assert raw.headers["request-id"] == "req_up_1"
    assert raw.headers["anthropic-ratelimit-requests-remaining"] == "9"
    message = raw.parse()  # the SDK reads it
    assert [b.type for b in message.content] == [
        "server_tool_use",
        "web_search_tool_result",
        "container_upload",
        "text",
    ]
    assert len(upstream.control.log()) == 1  # paid for once
    no_failures(sidecar)


@pytest.mark.parametrize("stop_reason", STOP_REASONS)
def test_new_stream_is_relayed_event_for_event(
    client: anthropic.Anthropic, sidecar: Any, upstream: Any, stop_reason: str
) -> None:
    events = shapes.events(stop_reason)
    upstream.control.script({"events": events})
    with client.messages.with_streaming_response.create(
        model="claude-x",
        max_tokens=10,
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        extra_headers={"x-anyllm-chain": "native-then-primary"},
    ) as response:
        assert response.headers["x-anyllm-attempts"] == "1"
        text = response.http_response.read().decode()
    sent = [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ")]
    assert sent == events
    names = [line[7:] for line in text.splitlines() if line.startswith("event: ")]
    assert names == [e["type"] for e in events]
    # and the SDK's own accumulator takes it
    upstream.control.script({"events": events})
    with client.messages.stream(
        model="claude-x",
        max_tokens=10,
        messages=[{"role": "user", "content": "hi"}],
        extra_headers={"x-anyllm-chain": "native"},
    ) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == stop_reason or stop_reason not in STOP_REASONS[:1]
    assert [b.type for b in final.content][:2] == ["server_tool_use", "web_search_tool_result"]
    assert final.usage.server_tool_use is not None
    no_failures(sidecar)


def test_six_new_answers_never_open_the_breaker(
    client: anthropic.Anthropic, sidecar: Any, upstream: Any
) -> None:
    upstream.control.script({"body": shapes.message(), "times": 6})
    for _ in range(6):
        raw = client.messages.with_raw_response.create(
            model="claude-x",
            max_tokens=5,
            messages=[{"role": "user", "content": "hi"}],
            extra_headers={"x-anyllm-chain": "native-then-primary"},
        )
        assert raw.headers["x-anyllm-backend"] == "native"
    assert all(e["path"] == "/v1/messages" for e in upstream.control.log())
    no_failures(sidecar)


def test_not_the_protocol_is_still_a_failure_that_moves_on(
    client: anthropic.Anthropic, upstream: Any
) -> None:
    upstream.control.script({"body": {"hello": "world"}})
    raw = client.messages.with_raw_response.create(
        model="claude-x",
        max_tokens=5,
        messages=[{"role": "user", "content": "hi"}],
        extra_headers={"x-anyllm-chain": "native-then-primary"},
    )
    assert raw.headers["x-anyllm-backend"] == "primary"
    assert raw.headers["x-anyllm-attempts"] == "2"


# ------------------------------------------------------------------ HTTP: requests relayed


def test_new_request_reaches_an_anthropic_upstream_intact(
    client: anthropic.Anthropic, upstream: Any
) -> None:
    request = copy.deepcopy(shapes.REQUEST)
    raw = client.messages.with_raw_response.create(
        **{
            k: v for k, v in request.items() if k not in ("thinking", "context_management", "speed")
        },
        extra_body={k: request[k] for k in ("thinking", "context_management", "speed")},
        extra_headers={
            "x-anyllm-chain": "native",
            "anthropic-beta": "web-search-2025-03-05,context-management-2025-06-27",
            "anthropic-user-profile-id": "up_1",
            "anthropic-workspace-id": "wrkspc_1",
        },
    )
    assert raw.status_code == 200
    seen = upstream.control.log()[-1]
    sent = {**request, "model": "claude-upstream"}
    assert seen["body"] == sent
    for name in ("anthropic-beta", "anthropic-user-profile-id", "anthropic-workspace-id"):
        assert name in seen["headers"]
    assert seen["headers"]["anthropic-user-profile-id"] == "up_1"
    assert seen["headers"]["x-api-key"] != "k"  # the configured key, never the caller's


def test_new_request_to_a_translating_upstream_is_named(sidecar: Any, upstream: Any) -> None:
    request = copy.deepcopy(shapes.REQUEST)
    request["output_config"] = {
        "effort": "xhigh",
        "format": {"type": "json_schema", "schema": {"type": "object"}},
    }
    request["thinking"] = {"type": "adaptive"}
    response = httpx.post(
        f"{sidecar.http_url}/v1/messages",
        json=request,
        headers={"x-anyllm-chain": "default"},
    )
    assert response.status_code == 200, response.text
    names = response.headers["x-anyllm-degradation"].split(",")
    for name in (
        "tool:browser_toolset_20260801",
        "block:server_tool_use",
        "block:web_search_tool_result",
        "block:tool_reference",
        "block:search_result(as_text)",
        "field:context_management",
        "field:speed",
        "field:tools[].max_uses",
        "output_config.effort",
    ):
        assert name in names, (name, names)
    body = upstream.control.log()[-1]["body"]
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "output", "schema": {"type": "object"}, "strict": True},
    }
    lookup = next(t for t in body["tools"] if t["function"]["name"] == "lookup")
    assert lookup["function"]["strict"] is True
    tool_message = next(m for m in body["messages"] if m["role"] == "tool")
    assert "x is a letter" in json.dumps(tool_message)


def test_count_tokens_sends_the_callers_body_and_headers(sidecar: Any, upstream: Any) -> None:
    request = copy.deepcopy(shapes.REQUEST)
    del request["max_tokens"]
    request["output_config"] = {"effort": "low"}
    response = httpx.post(
        f"{sidecar.http_url}/v1/messages/count_tokens",
        json=request,
        headers={"x-anyllm-chain": "native", "anthropic-beta": "token-counting-2024-11-01"},
    )
    assert response.status_code == 200, response.text
    assert response.headers["x-anyllm-token-count"] == "exact"
    seen = upstream.control.log()[-1]
    assert seen["path"] == "/v1/messages/count_tokens"
    assert seen["body"] == {**request, "model": "claude-upstream"}
    assert seen["headers"]["anthropic-beta"] == "token-counting-2024-11-01"


# ------------------------------------------------------------------ gRPC


def grpc_request(stream: bool = False) -> spb.CreateMessageRequest:
    return spb.CreateMessageRequest(
        model="claude-x",
        max_tokens=10,
        messages=[
            pb.InputMessage(
                role=pb.ROLE_USER, content=[pb.ContentBlock(text=pb.TextBlock(text="hi"))]
            )
        ],
    )


@pytest.mark.parametrize("stop_reason", STOP_REASONS)
def test_grpc_new_answer_is_not_a_failure(
    stub: spb_grpc.MessagesServiceStub, sidecar: Any, upstream: Any, stop_reason: str
) -> None:
    upstream.control.script({"body": shapes.message(stop_reason)})
    reply, call = stub.CreateMessage.with_call(
        grpc_request(), metadata=[("x-anyllm-chain", "native-then-primary")]
    )
    trailing = dict(call.trailing_metadata())
    assert trailing["x-anyllm-attempts"] == "1"
    assert trailing["x-anyllm-backend"] == "native"
    assert any(block.HasField("text") for block in reply.content)
    no_failures(sidecar)


@pytest.mark.parametrize("stop_reason", STOP_REASONS)
def test_grpc_new_stream_is_not_a_failure(
    stub: spb_grpc.MessagesServiceStub, sidecar: Any, upstream: Any, stop_reason: str
) -> None:
    upstream.control.script({"events": shapes.events(stop_reason)})
    call = stub.StreamMessage(grpc_request(), metadata=[("x-anyllm-chain", "native-then-primary")])
    kinds = [event.WhichOneof("event") for event in call]
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert dict(call.initial_metadata())["x-anyllm-attempts"] == "1"
    no_failures(sidecar)
