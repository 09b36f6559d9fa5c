"""Claude Code (the real CLI, headless) through the sidecar.

Against the scripted fake upstream (tests/upstream/server.py), so that every request Claude Code
causes can be counted and read: the fake serves Anthropic's /v1/messages too, which gives the
direct-connection baseline. Then the chain of real servers: LiteLLM failing, llama.cpp answering.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import LITELLM_KEY, Server, run_claude

# A small request: no built-in tools, a one-line system prompt (llama.cpp's tiny model reads it
# byte by byte, so Claude Code's full 100 KB prompt would not fit its context).
BARE = ["--bare", "--system-prompt", "Answer in one short sentence.", "--tools", ""]


def fake_config(upstream_url: str) -> dict[str, Any]:
    return {
        "server": {"http": "127.0.0.1:0", "grpc": "127.0.0.1:0"},
        "policy": {"ttft_timeout": 60, "idle_timeout": 60, "timeout": 300},
        "backends": {
            "fake": {"kind": "openai", "base_url": f"{upstream_url}/v1", "api_key": "sk-up"}
        },
        "chains": {"default": [{"backend": "fake", "model": "fake-model"}]},
    }


def generation_requests(upstream: Any) -> list[dict[str, Any]]:
    return [
        r
        for r in upstream.control.log()
        if r["path"] in ("/v1/messages", "/v1/chat/completions", "/v1/messages/count_tokens")
    ]


def test_answers_a_prompt_streamed_with_the_requests_of_a_direct_connection(
    upstream: Any, sidecar_factory: Callable[..., Any], tmp_path: Path
) -> None:
    answer = "Hello from the fake upstream."
    # Baseline: Claude Code straight to the fake's Anthropic endpoint.
    upstream.control.script({"text": answer})
    direct = run_claude(upstream.base_url, "say hello", tmp_path / "direct")
    assert direct.returncode == 0, direct
    assert direct.text == answer
    direct_log = generation_requests(upstream)
    assert [r["path"] for r in direct_log] == ["/v1/messages"]
    assert direct_log[0]["query"] == "beta=true"  # what Claude Code adds to the path
    assert direct_log[0]["stream"] is True

    upstream.control.reset()
    sidecar = sidecar_factory(fake_config(upstream.base_url))
    upstream.control.script({"text": answer})
    via = run_claude(sidecar.http_url, "say hello", tmp_path / "via")
    assert via.returncode == 0, via
    assert via.result["is_error"] is False
    assert via.text == answer
    log = generation_requests(upstream)
    # Exactly as many requests as directly (Claude Code retries without streaming, silently,
    # when a stream yields nothing: that would show here as a second, non-streamed request).
    assert len(log) == len(direct_log) == 1
    (seen,) = log
    assert seen["path"] == "/v1/chat/completions"
    assert seen["stream"] is True
    assert seen["body"]["stream_options"] == {"include_usage": True}
    assert seen["body"]["model"] == "fake-model"
    roles = [m["role"] for m in seen["body"]["messages"]]
    assert roles == ["system", "user"]
    names = {t["function"]["name"] for t in seen["body"]["tools"]}
    assert {"Bash", "Read", "Write", "Edit"} <= names  # Claude Code's tools, translated
    assert "sk-e2e-caller" not in json.dumps(seen["headers"])


def test_tool_round_trip(
    upstream: Any, sidecar_factory: Callable[..., Any], tmp_path: Path
) -> None:
    workdir = tmp_path / "project"
    workdir.mkdir()
    secret = workdir / "notes.txt"
    secret.write_text("the secret word is PAPAYA-42\n", encoding="utf-8")
    sidecar = sidecar_factory(fake_config(upstream.base_url))
    upstream.control.script(
        {
            "tool_calls": [
                {"id": "call_read_1", "name": "Read", "arguments": {"file_path": str(secret)}}
            ]
        },
        {"text": "The notes say PAPAYA-42."},
    )
    run = run_claude(sidecar.http_url, "What do my notes say?", workdir)
    assert run.returncode == 0, run
    assert run.text == "The notes say PAPAYA-42."
    assert run.result["num_turns"] == 2
    first, second = generation_requests(upstream)
    assert first["stream"] is True and second["stream"] is True
    messages = second["body"]["messages"]
    call = messages[-2]
    assert call["role"] == "assistant"
    assert call["tool_calls"][0]["id"] == "call_read_1"
    assert call["tool_calls"][0]["function"]["name"] == "Read"
    assert json.loads(call["tool_calls"][0]["function"]["arguments"]) == {"file_path": str(secret)}
    result = messages[-1]
    assert result["role"] == "tool"
    assert result["tool_call_id"] == "call_read_1"
    assert "PAPAYA-42" in json.dumps(result["content"])  # Claude Code really read the file


@pytest.mark.parametrize("model", ["opus", "my-chain"], ids=["default-alias", "custom-name"])
def test_newer_request_shape_is_accepted(
    upstream: Any, sidecar_factory: Callable[..., Any], tmp_path: Path, model: str
) -> None:
    """For its default model and any name it does not know, Claude Code sends a ``system``
    role inside ``messages``, ``thinking: {type: adaptive}`` and ``output_config``."""
    sidecar = sidecar_factory(fake_config(upstream.base_url))
    upstream.control.script({"text": "Hi."})
    run = run_claude(sidecar.http_url, "hi", tmp_path, model=model)
    assert run.result.get("api_error_status") is None, run.text
    assert run.returncode == 0, run
    assert run.text == "Hi."
    (seen,) = generation_requests(upstream)
    # The system-role message Claude Code put among the messages reached the upstream.
    assert "# Environment" in json.dumps(seen["body"]["messages"])


def test_chain_litellm_failing_then_llama_cpp_answering(
    litellm_proxy: Server,
    llama_server: Server,
    sidecar_factory: Callable[..., Any],
    tmp_path: Path,
) -> None:
    config = {
        "server": {"http": "127.0.0.1:0", "grpc": "127.0.0.1:0"},
        "policy": {"ttft_timeout": 120, "idle_timeout": 120, "timeout": 300},
        "backends": {
            "litellm": {
                "kind": "openai",
                "base_url": f"{litellm_proxy.base_url}/v1",
                "api_key": LITELLM_KEY,
            },
            "llamacpp": {
                "kind": "openai",
                "base_url": f"{llama_server.base_url}/v1",
                "api_key": "none",
            },
        },
        "chains": {
            "default": [
                {"backend": "litellm", "model": "mock-429"},
                {"backend": "litellm", "model": "mock-500"},
                {"backend": "llamacpp", "model": "tiny"},
            ]
        },
    }
    sidecar = sidecar_factory(config)
    litellm_before = litellm_proxy.log_text().count('"POST /v1/chat/completions')
    llama_before = llama_server.log_text().count('"POST /v1/chat/completions')
    run = run_claude(
        sidecar.http_url,
        "hi",
        tmp_path,
        args=BARE,
        # No thinking: Claude Code then sends temperature 1, which the tiny model is tuned for;
        # its answers end after 1 to 45 characters, far below this max_tokens.
        env={"CLAUDE_CODE_MAX_OUTPUT_TOKENS": "256", "MAX_THINKING_TOKENS": "0"},
    )
    assert run.returncode == 0, (run.result, run.stderr[-2000:])
    assert run.result["is_error"] is False
    assert run.text.strip()  # nonsense from random weights, but an answer
    litellm_log = litellm_proxy.log_text()
    assert litellm_log.count('"POST /v1/chat/completions') - litellm_before == 2
    assert re.search(r'"POST /v1/chat/completions HTTP/1.1" 429', litellm_log)
    assert re.search(r'"POST /v1/chat/completions HTTP/1.1" 500', litellm_log)
    llama_log = llama_server.log_text()
    assert llama_log.count('"POST /v1/chat/completions') - llama_before == 1
