"""The official TypeScript SDK (@anthropic-ai/sdk, run by node) as a second HTTP client."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from tests.e2e.conftest import run_sdk
from tests.e2e.test_claude_code import fake_config


def test_create(upstream: Any, sidecar_factory: Callable[..., Any]) -> None:
    sidecar = sidecar_factory(fake_config(upstream.base_url))
    out = run_sdk(sidecar.http_url, "create", "claude-sonnet-4-5")
    message = out["message"]
    assert message["content"] == [{"type": "text", "text": "echo: hello there"}]
    assert message["stop_reason"] == "end_turn"
    assert message["usage"]["output_tokens"] > 0
    assert out["backend"] == "fake"
    (seen,) = upstream.control.log()
    assert seen["stream"] is False


def test_stream(upstream: Any, sidecar_factory: Callable[..., Any]) -> None:
    sidecar = sidecar_factory(fake_config(upstream.base_url))
    out = run_sdk(sidecar.http_url, "stream", "claude-sonnet-4-5")
    assert out["text"] == "echo: one two three"
    assert out["message"]["content"][0]["text"] == "echo: one two three"
    assert out["types"][0] == "message_start"
    assert out["types"][-1] == "message_stop"
    assert "content_block_delta" in out["types"]
    (seen,) = upstream.control.log()
    assert seen["stream"] is True


def test_tools(upstream: Any, sidecar_factory: Callable[..., Any]) -> None:
    sidecar = sidecar_factory(fake_config(upstream.base_url))
    upstream.control.script(
        {"tool_calls": [{"id": "call_w1", "name": "get_weather", "arguments": {"city": "Paris"}}]},
        {"text": "It is sunny in Paris."},
    )
    out = run_sdk(sidecar.http_url, "tools", "claude-sonnet-4-5")
    (use,) = out["first"]["content"]
    assert use == {
        "type": "tool_use",
        "id": "call_w1",
        "name": "get_weather",
        "input": {"city": "Paris"},
    }
    assert out["first"]["stop_reason"] == "tool_use"
    assert out["second"]["content"][0]["text"] == "It is sunny in Paris."
    first, second = upstream.control.log()
    assert first["body"]["tools"][0]["function"]["name"] == "get_weather"
    result = second["body"]["messages"][-1]
    assert result == {"role": "tool", "tool_call_id": "call_w1", "content": "sunny, 21 C"}
    assert second["stream"] is True
    assert json.loads(second["body"]["messages"][-2]["tool_calls"][0]["function"]["arguments"]) == {
        "city": "Paris"
    }
