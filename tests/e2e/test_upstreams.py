"""Real OpenAI-compatible upstreams behind the sidecar: llama.cpp's server (llama-cpp-python, a
tiny random-weight model) and LiteLLM's proxy (mock_response models, incl. mock 429 / 500).

llama.cpp's quirks, as seen with llama-cpp-python 0.3.36: no usage chunk in streams even with
``stream_options.include_usage``; a role-only first chunk; each tool-call delta repeats the id and
the name and also carries a legacy ``function_call``; completion token counts past ``max_tokens``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from tests.e2e.conftest import (
    LITELLM_KEY,
    LITELLM_MODELS,
    Server,
    http_json,
    run_sdk,
    sse_events,
    stream_text,
)

WEATHER = {
    "name": "get_weather",
    "description": "Current weather for a city.",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 12}},
        "required": ["city"],
    },
}


def config(litellm: Server | None, llama: Server | None) -> dict[str, Any]:
    backends: dict[str, Any] = {}
    if litellm is not None:
        backends["litellm"] = {
            "kind": "openai",
            "base_url": f"{litellm.base_url}/v1",
            "api_key": LITELLM_KEY,
        }
    if llama is not None:
        backends["llamacpp"] = {
            "kind": "openai",
            "base_url": f"{llama.base_url}/v1",
            "api_key": "none",
        }
    chains: dict[str, Any] = {}
    if llama is not None:
        chains["default"] = [{"backend": "llamacpp", "model": "tiny"}]
    if litellm is not None:
        chains["ok"] = [{"backend": "litellm", "model": "mock-ok"}]
        for status in ("429", "500"):
            targets = [{"backend": "litellm", "model": f"mock-{status}"}]
            if llama is not None:
                targets.append({"backend": "llamacpp", "model": "tiny"})
            chains[f"fail{status}"] = targets
    chains.setdefault("default", chains.get("ok", []))
    return {
        "server": {"http": "127.0.0.1:0", "grpc": "127.0.0.1:0"},
        "policy": {"ttft_timeout": 120, "idle_timeout": 120, "timeout": 300},
        "backends": backends,
        "chains": chains,
    }


def ask(max_tokens: int = 48, **extra: Any) -> dict[str, Any]:
    return {
        "model": "claude-sonnet-4-5",
        "max_tokens": max_tokens,
        "temperature": 1.0,  # what the tiny model is tuned for (make_tiny_gguf.py)
        "messages": [{"role": "user", "content": "hello"}],
        **extra,
    }


def check_stream(text: str) -> tuple[list[str], dict[str, Any]]:
    """The Anthropic event grammar; returns the event names and the message_delta."""
    events = sse_events(text)
    names = [name for name, _ in events]
    assert names[0] == "message_start", names
    assert names[-1] == "message_stop", names
    assert "error" not in names, events
    for name, data in events:
        assert data["type"] == name
    (delta,) = [data for name, data in events if name == "message_delta"]
    return names, delta


# --------------------------------------------------------------------------- llama.cpp


@pytest.fixture
def via_llama(llama_server: Server, sidecar_factory: Callable[..., Any]) -> Any:
    return sidecar_factory(config(None, llama_server))


def test_llama_create(via_llama: Any) -> None:
    status, headers, body = http_json("POST", f"{via_llama.http_url}/v1/messages", ask())
    assert status == 200, body
    assert headers["x-anyllm-backend"] == "llamacpp"
    assert body["content"][0]["type"] == "text"
    assert body["stop_reason"] in ("end_turn", "max_tokens")
    assert body["usage"]["input_tokens"] > 0
    assert body["usage"]["output_tokens"] > 0


def test_llama_stream_has_usage_although_llama_sends_none(via_llama: Any) -> None:
    names, delta = check_stream(stream_text(f"{via_llama.http_url}/v1/messages", ask()))
    assert "content_block_delta" in names
    assert delta["delta"]["stop_reason"] in ("end_turn", "max_tokens")
    assert delta["usage"]["output_tokens"] > 0  # estimated by the sidecar


def test_llama_max_tokens_is_respected(via_llama: Any) -> None:
    status, _, body = http_json("POST", f"{via_llama.http_url}/v1/messages", ask(max_tokens=5))
    assert status == 200, body
    assert body["stop_reason"] in ("end_turn", "max_tokens")
    # llama.cpp may report more completion tokens than max_tokens; the caller should not see it.
    assert body["usage"]["output_tokens"] <= 5


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_llama_grammar_constrained_tool_call(via_llama: Any, stream: bool) -> None:
    request = ask(
        max_tokens=64,
        tools=[WEATHER],
        tool_choice={"type": "tool", "name": "get_weather"},
    )
    url = f"{via_llama.http_url}/v1/messages"
    if stream:
        text = stream_text(url, request)
        names, delta = check_stream(text)
        assert delta["delta"]["stop_reason"] == "tool_use"
        events = sse_events(text)
        starts = [d for n, d in events if n == "content_block_start"]
        tool_starts = [s for s in starts if s["content_block"]["type"] == "tool_use"]
        assert len(tool_starts) == 1, starts  # repeated id/name deltas make no second block
        assert tool_starts[0]["content_block"]["name"] == "get_weather"
        return
    status, _, body = http_json("POST", url, request)
    assert status == 200, body
    assert body["stop_reason"] == "tool_use"
    (use,) = [b for b in body["content"] if b["type"] == "tool_use"]
    assert use["name"] == "get_weather"
    assert isinstance(use["input"].get("city"), str)


def test_llama_streamed_tool_input_is_valid_json(via_llama: Any) -> None:
    request = ask(
        max_tokens=64,
        tools=[WEATHER],
        tool_choice={"type": "tool", "name": "get_weather"},
    )
    events = sse_events(stream_text(f"{via_llama.http_url}/v1/messages", request))
    (start,) = [
        d
        for n, d in events
        if n == "content_block_start" and d["content_block"]["type"] == "tool_use"
    ]
    partial = "".join(
        d["delta"]["partial_json"]
        for n, d in events
        if n == "content_block_delta" and d["index"] == start["index"]
    )
    # Seen: '{{  ""cciittyy""  ::""==NNggss...""}}  ' (each fragment twice).
    assert isinstance(json.loads(partial).get("city"), str), partial


def test_llama_tool_round_trip_with_the_typescript_sdk(via_llama: Any) -> None:
    out = run_sdk(via_llama.http_url, "tool_choice", "claude-sonnet-4-5", max_tokens=64)
    (use,) = [b for b in out["first"]["content"] if b["type"] == "tool_use"]
    assert use["name"] == "get_weather"
    assert out["second"]["role"] == "assistant"
    assert out["second"]["stop_reason"] in ("end_turn", "max_tokens", "tool_use")


def test_llama_count_tokens(via_llama: Any) -> None:
    request = {k: v for k, v in ask().items() if k != "max_tokens"}
    status, _, body = http_json("POST", f"{via_llama.http_url}/v1/messages/count_tokens", request)
    assert status == 200, body
    assert body["input_tokens"] > 0


# --------------------------------------------------------------------------- LiteLLM


@pytest.fixture
def via_litellm(
    litellm_proxy: Server, llama_server: Server, sidecar_factory: Callable[..., Any]
) -> Any:
    return sidecar_factory(config(litellm_proxy, llama_server))


def test_litellm_create_and_stream(via_litellm: Any) -> None:
    url = f"{via_litellm.http_url}/v1/messages"
    headers = {"x-anyllm-chain": "ok"}
    status, head, body = http_json("POST", url, ask(), headers)
    assert status == 200, body
    assert head["x-anyllm-backend"] == "litellm"
    assert body["content"] == [{"type": "text", "text": LITELLM_MODELS["mock-ok"]}]
    events = sse_events(stream_text(url, ask(), headers))
    text = "".join(
        d["delta"]["text"]
        for n, d in events
        if n == "content_block_delta" and d["delta"]["type"] == "text_delta"
    )
    assert text == LITELLM_MODELS["mock-ok"]


@pytest.mark.parametrize("status", ["429", "500"])
@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_litellm_mock_error_falls_back_to_llama(
    via_litellm: Any, litellm_proxy: Server, status: str, stream: bool
) -> None:
    url = f"{via_litellm.http_url}/v1/messages"
    before = litellm_proxy.log_text().count(f'HTTP/1.1" {status}')
    code, head, body = http_json(
        "POST", url, ask(stream=stream), {"x-anyllm-chain": f"fail{status}"}
    )
    assert code == 200, body
    assert head["x-anyllm-backend"] == "llamacpp"
    assert head["x-anyllm-attempts"] == "2"
    assert "x-anyllm-fallback-exhausted" not in head
    if stream:
        check_stream(body)
    else:
        assert body["content"][0]["type"] == "text"
    assert litellm_proxy.log_text().count(f'HTTP/1.1" {status}') == before + 1


def test_litellm_errors_alone_exhaust_the_chain(
    litellm_proxy: Server, sidecar_factory: Callable[..., Any]
) -> None:
    sidecar = sidecar_factory(config(litellm_proxy, None))
    code, head, body = http_json(
        "POST", f"{sidecar.http_url}/v1/messages", ask(), {"x-anyllm-chain": "fail429"}
    )
    assert code == 429, body
    assert body["type"] == "error"
    assert body["error"]["type"] == "rate_limit_error"
    assert "x-anyllm-fallback-exhausted" in head
