"""Translation end to end: Anthropic requests through both surfaces reach an OpenAI-compatible
upstream as the Chat Completions body docs/translation.md describes, what was lost comes back
in x-anyllm-degradation, and the upstream's answer comes back in Anthropic shapes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import anthropic
import grpc
import httpx
import pytest
from google.protobuf import struct_pb2

from sidecar.grpc_api.gen.anyllm.sidecar.v1 import messages_pb2 as pb
from sidecar.grpc_api.gen.anyllm.sidecar.v1 import messages_service_pb2 as spb
from sidecar.grpc_api.gen.anyllm.sidecar.v1 import messages_service_pb2_grpc as spb_grpc
from tests.integration.helpers import WEATHER_TOOL, sidecar_config

pytestmark = pytest.mark.integration

PNG = "iVBORw0KGgo="


@pytest.fixture(scope="module")
def sidecar(module_upstream: Any, module_sidecar_factory: Callable[..., Any]) -> Any:
    return module_sidecar_factory(sidecar_config(module_upstream.base_url))


@pytest.fixture
def client(sidecar: Any, upstream: Any) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=sidecar.http_url, api_key="k", max_retries=0) as c:
        yield c


def test_rich_request_over_http(client: anthropic.Anthropic, upstream: Any) -> None:
    raw = client.messages.with_raw_response.create(
        model="claude-x",
        max_tokens=100,
        # This SDK version no longer offers top_k / temperature; the API still takes them.
        extra_body={"top_k": 5, "temperature": 0.3},
        stop_sequences=["END"],
        metadata={"user_id": "user-42"},
        system=[{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
        tool_choice={"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True},
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is in this picture?"},
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": PNG},
                    },
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {
                        "type": "tool_use",
                        "id": "functions.get_weather:0",
                        "name": "get_weather",
                        "input": {"city": "Paris"},
                    }
                ],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "functions.get_weather:0",
                        "content": "timeout",
                        "is_error": True,
                    },
                    {"type": "text", "text": "try again"},
                ],
            },
        ],
    )
    degraded = set(raw.headers["x-anyllm-degradation"].split(","))
    assert {"cache_control", "top_k"} <= degraded
    body = upstream.control.log()[-1]["body"]
    assert body["messages"][0] == {"role": "system", "content": "Be brief."}
    user = body["messages"][1]
    assert user["content"][1] == {
        "type": "image_url",
        "image_url": {"url": f"data:image/png;base64,{PNG}"},
    }
    call = body["messages"][2]["tool_calls"][0]
    assert call["function"] == {"name": "get_weather", "arguments": '{"city":"Paris"}'}
    assert call["id"].startswith("toolu_")  # an id upstreams reject, rewritten consistently
    tool = body["messages"][3]
    assert tool["role"] == "tool" and tool["tool_call_id"] == call["id"]
    assert "error" in tool["content"].lower() and "timeout" in tool["content"]
    assert body["messages"][4] == {"role": "user", "content": "try again"}
    assert body["tools"][0]["function"]["parameters"] == WEATHER_TOOL["input_schema"]
    assert body["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert body["parallel_tool_calls"] is False
    assert (body["stop"], body["user"], body["temperature"]) == (["END"], "user-42", 0.3)
    assert "top_k" not in body


def test_response_shapes_from_the_upstream(client: anthropic.Anthropic, upstream: Any) -> None:
    upstream.control.script(
        {
            "text": "cut short",
            "finish_reason": "length",
            "usage": {"prompt_tokens": 30, "prompt_tokens_details": {"cached_tokens": 10}},
        }
    )
    message = client.messages.create(
        model="m", max_tokens=2, messages=[{"role": "user", "content": "long story"}]
    )
    assert message.stop_reason == "max_tokens"
    assert message.usage.input_tokens == 20  # OpenAI counts cached tokens in prompt_tokens
    assert message.usage.cache_read_input_tokens == 10


def test_parallel_tool_calls_stream_over_http(client: anthropic.Anthropic, upstream: Any) -> None:
    upstream.control.script(
        {
            "tool_calls": [
                {"id": "call_a", "name": "get_weather", "arguments": {"city": "Paris"}},
                {"id": "call_b", "name": "get_weather", "arguments": {"city": "Oslo"}},
            ]
        }
    )
    with client.messages.stream(
        model="m",
        max_tokens=100,
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
        messages=[{"role": "user", "content": "weather in Paris and Oslo"}],
    ) as stream:
        message = stream.get_final_message()
    calls = [(b.name, b.input) for b in message.content if b.type == "tool_use"]
    assert calls == [("get_weather", {"city": "Paris"}), ("get_weather", {"city": "Oslo"})]
    assert message.stop_reason == "tool_use"


def test_server_tools_are_left_out_and_named(client: anthropic.Anthropic, upstream: Any) -> None:
    # A server tool runs at Anthropic; an OpenAI-compatible upstream answers without it.
    raw = client.messages.with_raw_response.create(
        model="m",
        max_tokens=10,
        tools=[{"type": "web_search_20250305", "name": "web_search"}],  # type: ignore[list-item]
        messages=[{"role": "user", "content": "search"}],
    )
    assert "tool:web_search_20250305" in raw.headers["x-anyllm-degradation"].split(",")
    assert "tools" not in upstream.control.log()[-1]["body"]


def test_degradations_over_grpc(sidecar: Any, upstream: Any) -> None:
    schema = struct_pb2.Struct()
    schema.update(WEATHER_TOOL["input_schema"])
    request = spb.CreateMessageRequest(
        model="m",
        max_tokens=20,
        top_k=3,
        system_blocks=[pb.TextBlock(text="sys", cache_control=pb.CacheControl(type="ephemeral"))],
        tools=[pb.Tool(name="get_weather", input_schema=schema)],
        messages=[
            pb.InputMessage(
                role=pb.ROLE_USER, content=[pb.ContentBlock(text=pb.TextBlock(text="hi"))]
            )
        ],
    )
    with grpc.insecure_channel(sidecar.grpc_target) as channel:
        _, call = spb_grpc.MessagesServiceStub(channel).CreateMessage.with_call(request)
    degraded = set(dict(call.trailing_metadata())["x-anyllm-degradation"].split(","))
    assert {"cache_control", "top_k"} <= degraded
    assert upstream.control.log()[-1]["body"]["messages"][0] == {"role": "system", "content": "sys"}


def test_degradation_reporting_can_be_switched_off(
    upstream: Any, sidecar_factory: Callable[..., Any]
) -> None:
    config = sidecar_config(upstream.base_url)
    config["server"]["report_degradations"] = False
    quiet = sidecar_factory(config)
    body = {
        "model": "m",
        "max_tokens": 5,
        "top_k": 3,
        "messages": [{"role": "user", "content": "x"}],
    }
    response = httpx.post(f"{quiet.http_url}/v1/messages", json=body)
    assert response.status_code == 200
    assert "x-anyllm-degradation" not in response.headers


CLAUDE_CODE_SHAPE: dict[str, Any] = {
    "model": "opus",
    "max_tokens": 64000,
    "stream": True,
    "system": [{"type": "text", "text": "You are Claude Code."}],
    "messages": [
        {"role": "user", "content": [{"type": "text", "text": "hi"}]},
        {"role": "system", "content": [{"type": "text", "text": "Mid-conversation reminder."}]},
    ],
    "tools": [
        {**WEATHER_TOOL, "eager_input_streaming": True},
        {"name": "Later", "input_schema": {"type": "object"}, "defer_loading": True},
    ],
    "thinking": {"type": "adaptive", "display": "omitted"},
    "output_config": {"effort": "high"},
    "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
    "metadata": {"user_id": '{"device_id":"abc"}'},
}


@pytest.mark.parametrize("chain", ["default", "native"])
def test_newer_request_shape_is_accepted(sidecar: Any, upstream: Any, chain: str) -> None:
    with httpx.Client(base_url=sidecar.http_url, timeout=30) as http:
        response = http.post(
            "/v1/messages?beta=true", json=CLAUDE_CODE_SHAPE, headers={"x-anyllm-chain": chain}
        )
    assert response.status_code == 200, response.text
    assert "event: message_stop" in response.text
    sent = upstream.control.log()[-1]["body"]
    if chain == "native":  # relayed as is: every field reaches Anthropic
        assert sent["context_management"] == CLAUDE_CODE_SHAPE["context_management"]
        assert sent["messages"][1]["role"] == "system"
        assert sent["tools"][1]["defer_loading"] is True
        return
    degraded = set(response.headers["x-anyllm-degradation"].split(","))
    assert {
        "field:context_management",
        "field:tools[].eager_input_streaming",
        "thinking",
        "tools.defer_loading",
    } <= degraded
    assert sent["messages"][2] == {"role": "system", "content": "Mid-conversation reminder."}
    assert [t["function"]["name"] for t in sent["tools"]] == ["get_weather"]
    assert "reasoning_effort" not in sent  # not asked for on this backend


WEB_SEARCH_HISTORY: dict[str, Any] = {
    "model": "m",
    "max_tokens": 50,
    "messages": [
        {"role": "user", "content": "search for the weather"},
        {
            "role": "assistant",
            "content": [
                {
                    "type": "server_tool_use",
                    "id": "srvtoolu_1",
                    "name": "web_search",
                    "input": {"query": "weather"},
                },
                {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": []},
                {"type": "text", "text": "It is sunny."},
            ],
        },
        {"role": "user", "content": "thanks"},
    ],
}


@pytest.mark.parametrize("chain", ["default", "native"])
def test_unknown_block_types_are_relayed_or_dropped_and_named(
    sidecar: Any, upstream: Any, chain: str
) -> None:
    with httpx.Client(base_url=sidecar.http_url, timeout=30) as http:
        response = http.post(
            "/v1/messages", json=WEB_SEARCH_HISTORY, headers={"x-anyllm-chain": chain}
        )
    assert response.status_code == 200, response.text
    sent = upstream.control.log()[-1]["body"]
    if chain == "native":
        assert sent["messages"] == WEB_SEARCH_HISTORY["messages"]  # as the caller sent them
        return
    degraded = set(response.headers["x-anyllm-degradation"].split(","))
    assert {"block:server_tool_use", "block:web_search_tool_result"} <= degraded
    assert sent["messages"][1] == {"role": "assistant", "content": "It is sunny."}
