"""The official OpenAI Node SDK (npm ``openai``, run by node) as a client of the OpenAI door,
to an OpenAI-compatible target (relayed) and to an Anthropic one (translated)."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from typing import Any

import pytest

from tests.e2e.conftest import E2E_HOME, HERE, require

OPENAI_NODE_MODULES = E2E_HOME / "openai-node" / "node_modules"
RELAYED, TRANSLATED = "default", "translated"  # chains: an OpenAI target, an Anthropic one
TARGETS = [RELAYED, TRANSLATED]


def config(upstream_url: str) -> dict[str, Any]:
    return {
        "server": {"http": "127.0.0.1:0", "grpc": "127.0.0.1:0"},
        "policy": {"ttft_timeout": 60, "idle_timeout": 60, "timeout": 300},
        "backends": {
            "fake": {"kind": "openai", "base_url": f"{upstream_url}/v1", "api_key": "sk-up"},
            "claude": {"kind": "anthropic", "base_url": upstream_url, "api_key": "sk-ant-up"},
        },
        "chains": {
            "default": [{"backend": "fake", "model": "fake-model"}],
            "translated": [{"backend": "claude", "model": "claude-up"}],
        },
    }


def run_node(base_url: str, scenario: str, chain: str) -> dict[str, Any]:
    require(OPENAI_NODE_MODULES / "openai")
    env = {**os.environ, "NODE_PATH": str(OPENAI_NODE_MODULES)}
    proc = subprocess.run(
        ["node", str(HERE / "openai_sdk_client.mjs"), base_url, scenario, chain],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.stdout.strip(), f"no output (exit {proc.returncode}): {proc.stderr[-2000:]}"
    value: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    assert proc.returncode == 0, value
    return value


@pytest.fixture
def sidecar(upstream: Any, sidecar_factory: Callable[..., Any]) -> Any:
    return sidecar_factory(config(upstream.base_url))


@pytest.mark.parametrize("chain", TARGETS)
def test_create(sidecar: Any, upstream: Any, chain: str) -> None:
    out = run_node(sidecar.http_url, "create", chain)
    completion = out["completion"]
    assert completion["choices"][0]["message"]["content"] == "echo: hello there"
    assert completion["choices"][0]["finish_reason"] == "stop"
    assert completion["usage"]["completion_tokens"] == 3
    (seen,) = upstream.control.log()
    if chain == RELAYED:
        assert out["backend"] == "fake"
        assert out["degradation"] is None
        assert seen["body"]["seed"] == 1  # the caller's body, as sent
    else:
        assert out["backend"] == "claude"
        assert "seed" in out["degradation"].split(",")
        assert seen["path"] == "/v1/messages"


@pytest.mark.parametrize("chain", TARGETS)
def test_stream_with_usage(sidecar: Any, upstream: Any, chain: str) -> None:
    out = run_node(sidecar.http_url, "stream", chain)
    assert out["text"] == "echo: hello there"
    assert out["finish"] == "stop"
    assert [(u["prompt_tokens"], u["completion_tokens"]) for u in out["usage"]] == [(2, 3)]


@pytest.mark.parametrize("chain", TARGETS)
def test_parallel_tool_calls_and_results(sidecar: Any, upstream: Any, chain: str) -> None:
    upstream.control.script(
        {"tool_calls": [
            {"id": "call_p", "name": "get_weather", "arguments": {"city": "Paris"}},
            {"id": "call_r", "name": "get_weather", "arguments": {"city": "Rome"}},
        ]},
        {"text": "Sunny in both."},
    )  # fmt: skip
    out = run_node(sidecar.http_url, "tools", chain)
    first = out["first"]
    assert first["finish"] == "tool_calls"
    assert [(c["id"], json.loads(c["arguments"])) for c in first["calls"]] == [
        ("call_p", {"city": "Paris"}),
        ("call_r", {"city": "Rome"}),
    ]
    assert out["second"]["choices"][0]["message"]["content"] == "Sunny in both."
    second = upstream.control.log()[1]["body"]
    if chain == RELAYED:
        assert [m["role"] for m in second["messages"]] == ["user", "assistant", "tool", "tool"]
    else:
        results = second["messages"][-1]["content"]
        assert [b["tool_use_id"] for b in results] == ["call_p", "call_r"]


@pytest.mark.parametrize(("chain", "events"), [(RELAYED, 3), (TRANSLATED, 4)])
def test_a_cut_stream_raises(sidecar: Any, upstream: Any, chain: str, events: int) -> None:
    upstream.control.script({"stream_cut_after": events, "chunk_delay": 0.05})
    out = run_node(sidecar.http_url, "cut", chain)
    assert out["raised"] is not None, out  # never taken as a complete answer
    assert out["isAPIError"], out
    assert out["text"] and out["text"] != "echo: hello there"
