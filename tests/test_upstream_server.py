"""Tests of the test harness itself: the fake upstream process and the process fixtures.

Every behaviour of ``tests.upstream.server`` is exercised over real HTTP with httpx (and the
official anthropic SDK, which checks that the Anthropic formats are the real ones). The
``sidecar_factory`` fixture is tested with stand-in scripts, not the sidecar.
"""

from __future__ import annotations

import json
import signal
import socket
import sys
import time
from collections.abc import Callable
from typing import Any

import anthropic
import httpx
import pytest

from tests.upstream.processes import ProcessStartError, SidecarProcess, UpstreamProcess

pytestmark = pytest.mark.integration

CHAT = "/v1/chat/completions"
MESSAGES = "/v1/messages"


def chat_body(text: str = "hello there", stream: bool = False, **extra: Any) -> dict[str, Any]:
    return {
        "model": "gpt-test",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": text},
        ],
        "stream": stream,
        **extra,
    }


def messages_body(text: str = "hello there", stream: bool = False) -> dict[str, Any]:
    return {
        "model": "claude-test",
        "max_tokens": 64,
        "messages": [{"role": "user", "content": [{"type": "text", "text": text}]}],
        "stream": stream,
    }


def sse_events(lines: list[str]) -> list[tuple[str | None, str]]:
    """(event name, data) per SSE frame; a frame without ``event:`` has name None."""
    events: list[tuple[str | None, str]] = []
    name: str | None = None
    data: list[str] = []
    for line in lines:
        if line == "":
            if data:
                events.append((name, "\n".join(data)))
            name, data = None, []
        elif line.startswith("event:"):
            name = line.removeprefix("event:").strip()
        elif line.startswith("data:"):
            data.append(line.removeprefix("data:").strip())
    if data:
        events.append((name, "\n".join(data)))
    return events


def stream_lines(client: httpx.Client, path: str, body: dict[str, Any]) -> list[str]:
    with client.stream("POST", path, json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        return list(response.iter_lines())


def openai_chunks(client: httpx.Client, body: dict[str, Any]) -> tuple[list[Any], bool]:
    """The decoded chunks of an OpenAI stream, and whether it ended with ``[DONE]``."""
    datas = [data for _, data in sse_events(stream_lines(client, CHAT, body))]
    done = bool(datas) and datas[-1] == "[DONE]"
    return [json.loads(d) for d in datas if d != "[DONE]"], done


@pytest.fixture
def client(upstream: UpstreamProcess) -> Any:
    with httpx.Client(base_url=upstream.base_url, timeout=10.0) as c:
        yield c


# --------------------------------------------------------------------------- default answers


def test_chat_completion_default_echoes_last_user_text(
    client: httpx.Client, upstream: UpstreamProcess
) -> None:
    response = client.post(CHAT, json=chat_body("hello there"))
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "chat.completion"
    assert body["id"] == "chatcmpl-fake-1"
    assert body["model"] == "gpt-test"
    assert isinstance(body["created"], int)
    (choice,) = body["choices"]
    assert choice["index"] == 0
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["content"] == "echo: hello there"
    assert choice["finish_reason"] == "stop"
    usage = body["usage"]
    assert usage == {"prompt_tokens": 4, "completion_tokens": 3, "total_tokens": 7}


def test_chat_stream_default_order_role_content_finish_usage_done(client: httpx.Client) -> None:
    chunks, done = openai_chunks(client, chat_body("a b c", stream=True))
    assert done
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    first, *middle, finish, usage = chunks
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert len(middle) >= 3
    assert "".join(c["choices"][0]["delta"]["content"] for c in middle) == "echo: a b c"
    assert all(c["choices"][0]["finish_reason"] is None for c in [first, *middle])
    assert finish["choices"][0]["finish_reason"] == "stop"
    assert finish["choices"][0]["delta"] == {}
    assert usage["choices"] == []
    assert usage["usage"]["total_tokens"] == (
        usage["usage"]["prompt_tokens"] + usage["usage"]["completion_tokens"]
    )


def test_chat_stream_include_usage_adds_null_usage_to_other_chunks(client: httpx.Client) -> None:
    body = chat_body(stream=True, stream_options={"include_usage": True})
    chunks, _ = openai_chunks(client, body)
    assert all(c["usage"] is None for c in chunks[:-1])
    assert chunks[-1]["usage"]["completion_tokens"] == 3


def test_messages_default_is_valid_for_the_anthropic_sdk(upstream: UpstreamProcess) -> None:
    with anthropic.Anthropic(base_url=upstream.base_url, api_key="test-key") as sdk:
        message = sdk.messages.create(
            model="claude-test",
            max_tokens=64,
            messages=[{"role": "user", "content": "hello there"}],
        )
    assert message.id == "msg_fake_1"
    assert message.model == "claude-test"
    assert message.stop_reason == "end_turn"
    assert [b.type for b in message.content] == ["text"]
    assert message.content[0].text == "echo: hello there"  # type: ignore[union-attr]
    assert message.usage.input_tokens == 2
    (entry,) = upstream.control.log()
    headers = entry["headers"]  # the SDK sends the key as x-api-key or (2.x) a bearer token
    assert "test-key" in (headers.get("x-api-key"), headers.get("authorization", "")[7:])
    assert "anthropic-version" in entry["headers"]


def test_messages_stream_event_order_and_sdk_reassembly(
    client: httpx.Client, upstream: UpstreamProcess
) -> None:
    events = sse_events(stream_lines(client, MESSAGES, messages_body("x y", stream=True)))
    names = [name for name, _ in events]
    assert names == [
        "message_start",
        "content_block_start",
        "ping",
        *["content_block_delta"] * 3,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert all(json.loads(data)["type"] == name for name, data in events)
    with (
        anthropic.Anthropic(base_url=upstream.base_url, api_key="k") as sdk,
        sdk.messages.stream(
            model="claude-test", max_tokens=64, messages=[{"role": "user", "content": "x y"}]
        ) as stream,
    ):
        final = stream.get_final_message()
    assert final.content[0].text == "echo: x y"  # type: ignore[union-attr]
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 3


def test_count_tokens_and_models(client: httpx.Client) -> None:
    response = client.post("/v1/messages/count_tokens", json=messages_body("one two three"))
    assert response.json() == {"input_tokens": 3}
    openai_models = client.get("/v1/models").json()
    assert openai_models["object"] == "list"
    assert openai_models["data"][0]["object"] == "model"
    anthropic_models = client.get("/v1/models", headers={"anthropic-version": "2023-06-01"}).json()
    assert anthropic_models["data"][0]["type"] == "model"
    assert anthropic_models["has_more"] is False


# --------------------------------------------------------------------------- statuses, bodies


@pytest.mark.parametrize(
    ("path", "behaviour", "status", "check"),
    [
        pytest.param(
            CHAT,
            {"status": 429, "headers": {"retry-after": "3"}},
            429,
            lambda r: (
                r.headers["retry-after"] == "3"
                and r.json()["error"]["type"] == "rate_limit_exceeded"
            ),
            id="openai-429-retry-after",
        ),
        pytest.param(
            CHAT,
            {"status": 503},
            503,
            lambda r: r.json()["error"]["type"] == "server_error",
            id="openai-503",
        ),
        pytest.param(
            MESSAGES,
            {"status": 529},
            529,
            lambda r: (
                r.json()
                == {
                    "type": "error",
                    "error": {
                        "type": "overloaded_error",
                        "message": "fake upstream error (status 529)",
                    },
                }
            ),
            id="anthropic-529",
        ),
        pytest.param(
            CHAT,
            {"status": 502, "body": "<html>bad gateway</html>"},
            502,
            lambda r: (
                r.text == "<html>bad gateway</html>"
                and r.headers["content-type"].startswith("text/plain")
            ),
            id="string-body",
        ),
        pytest.param(
            CHAT,
            {"status": 400, "body": {"error": {"message": "nope", "code": "context_length"}}},
            400,
            lambda r: r.json()["error"]["code"] == "context_length",
            id="json-body",
        ),
        pytest.param(
            CHAT,
            {"headers": {"x-extra": "1"}, "text": "custom"},
            200,
            lambda r: (
                r.headers["x-extra"] == "1"
                and r.json()["choices"][0]["message"]["content"] == "custom"
            ),
            id="headers-on-success",
        ),
    ],
)
def test_status_headers_and_bodies(
    client: httpx.Client,
    upstream: UpstreamProcess,
    path: str,
    behaviour: dict[str, Any],
    status: int,
    check: Callable[[httpx.Response], bool],
) -> None:
    upstream.control.script(behaviour)
    body = chat_body() if path == CHAT else messages_body()
    response = client.post(path, json=body)
    assert response.status_code == status
    assert check(response)
    (entry,) = upstream.control.log()
    assert entry["status"] == status
    assert entry["outcome"] == "completed"
    assert entry["behaviour"] == behaviour


def test_finish_reason_usage_and_id_overrides(
    client: httpx.Client, upstream: UpstreamProcess
) -> None:
    upstream.control.script(
        {"finish_reason": "length", "usage": {"prompt_tokens": 100, "completion_tokens": 7}},
        {"finish_reason": "length", "usage": {"output_tokens": 9}, "id": "msg_x"},
    )
    body = client.post(CHAT, json=chat_body()).json()
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"] == {"prompt_tokens": 100, "completion_tokens": 7, "total_tokens": 107}
    message = client.post(MESSAGES, json=messages_body()).json()
    assert message["stop_reason"] == "max_tokens"
    assert message["usage"]["output_tokens"] == 9
    assert message["id"] == "msg_x"


def test_custom_chunks_are_streamed_as_given(
    client: httpx.Client, upstream: UpstreamProcess
) -> None:
    upstream.control.script({"chunks": ["Hel", "lo", ", world"]})
    chunks, done = openai_chunks(client, chat_body(stream=True))
    assert done
    pieces = [c["choices"][0]["delta"].get("content") for c in chunks[1:-2]]
    assert pieces == ["Hel", "lo", ", world"]


# --------------------------------------------------------------------------- connection faults


def test_reset_is_a_connection_error(client: httpx.Client, upstream: UpstreamProcess) -> None:
    upstream.control.script({"reset": True})
    with pytest.raises(httpx.TransportError):
        client.post(CHAT, json=chat_body())
    (entry,) = upstream.control.log()
    assert entry["outcome"] == "reset"
    assert entry["disconnected"] is False
    assert client.post(CHAT, json=chat_body()).status_code == 200  # next request: default


def test_drop_closes_without_an_answer(client: httpx.Client, upstream: UpstreamProcess) -> None:
    upstream.control.script({"drop": True})
    with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
        client.post(CHAT, json=chat_body())
    (entry,) = upstream.control.log()
    assert (entry["outcome"], entry["status"], entry["disconnected"]) == ("dropped", None, False)
    assert client.post(CHAT, json=chat_body()).status_code == 200


def test_close_ends_the_connection_after_the_answer_without_saying_so(
    upstream: UpstreamProcess,
) -> None:
    upstream.control.script({"status": 400, "close": True})
    with socket.create_connection(("127.0.0.1", upstream.port), timeout=10) as sock:
        body = json.dumps(chat_body()).encode()
        sock.sendall(
            b"POST " + CHAT.encode() + b" HTTP/1.1\r\nhost: x\r\ncontent-type: application/json"
            b"\r\ncontent-length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )
        received = b""
        while chunk := sock.recv(65536):  # the server closes: recv returns b"" at its FIN
            received += chunk
    head = received.split(b"\r\n\r\n", 1)[0].lower()
    assert head.startswith(b"http/1.1 400")
    assert b"connection: close" not in head  # a keep-alive answer, as far as the client knows


@pytest.mark.parametrize(
    "behaviour",
    [
        pytest.param({"hang": True}, id="hang"),
        pytest.param({"delay": 60}, id="delay"),
        pytest.param({"stall_after": 2}, id="stall_after"),
        pytest.param({"role_only_then_stall": True}, id="role_only_then_stall"),
    ],
)
def test_client_timeout_is_logged_as_disconnect(
    upstream: UpstreamProcess, behaviour: dict[str, Any]
) -> None:
    upstream.control.script(behaviour)
    with (
        httpx.Client(base_url=upstream.base_url, timeout=httpx.Timeout(5.0, read=0.3)) as c,
        pytest.raises(httpx.ReadTimeout),
        c.stream("POST", CHAT, json=chat_body(stream=True)) as response,
    ):
        for _ in response.iter_lines():
            pass
    log = upstream.control.wait_for(lambda log: log and log[0]["outcome"] != "pending")
    entry = log[0]
    assert entry["outcome"] == "disconnected"
    assert entry["disconnected"] is True
    assert entry["disconnected_at"] >= entry["received_at"]


def test_stall_after_sends_exactly_n_events(upstream: UpstreamProcess) -> None:
    upstream.control.script({"role_only_then_stall": True})
    datas: list[str] = []
    with (
        httpx.Client(base_url=upstream.base_url, timeout=httpx.Timeout(5.0, read=0.3)) as c,
        pytest.raises(httpx.ReadTimeout),
        c.stream("POST", CHAT, json=chat_body(stream=True)) as response,
    ):
        for line in response.iter_lines():
            if line.startswith("data:"):
                datas.append(line)
    (only,) = datas
    assert json.loads(only.removeprefix("data:"))["choices"][0]["delta"]["role"] == "assistant"
    upstream.control.wait_for(lambda log: log[0]["disconnected"])
    assert upstream.control.log()[0]["events_sent"] == 1


def test_client_closing_a_slow_stream_is_logged(upstream: UpstreamProcess) -> None:
    upstream.control.script({"chunk_delay": 0.05, "chunks": [f"{i} " for i in range(200)]})
    with (
        httpx.Client(base_url=upstream.base_url, timeout=10.0) as c,
        c.stream("POST", CHAT, json=chat_body(stream=True)) as response,
    ):
        lines = response.iter_lines()
        assert next(lines).startswith("data:")
    log = upstream.control.wait_for(lambda log: log[0]["outcome"] != "pending")
    assert log[0]["outcome"] == "disconnected"
    assert log[0]["events_sent"] < 200


@pytest.mark.parametrize("path", [CHAT, MESSAGES])
def test_stream_cut_ends_without_terminator(
    client: httpx.Client, upstream: UpstreamProcess, path: str
) -> None:
    upstream.control.script({"stream_cut_after": 3})
    lines: list[str] = []
    body = chat_body(stream=True) if path == CHAT else messages_body(stream=True)
    with pytest.raises(httpx.RemoteProtocolError), client.stream("POST", path, json=body) as r:
        for line in r.iter_lines():
            lines.append(line)
    events = sse_events(lines)
    assert len(events) == 3
    assert all(data != "[DONE]" and "message_stop" not in data for _, data in events)
    (entry,) = upstream.control.log()
    assert entry["outcome"] == "cut"
    assert entry["events_sent"] == 3


def test_stream_cut_on_a_json_answer_truncates_the_body(
    client: httpx.Client, upstream: UpstreamProcess
) -> None:
    upstream.control.script({"stream_cut_after": 0})
    with pytest.raises(httpx.RemoteProtocolError):
        client.post(CHAT, json=chat_body())


# --------------------------------------------------------------------------- stream content faults


def test_inband_error_openai(client: httpx.Client, upstream: UpstreamProcess) -> None:
    error = {"message": "model overloaded", "type": "server_error", "code": 503}
    upstream.control.script({"inband_error": error, "inband_error_after": 2})
    datas = [d for _, d in sse_events(stream_lines(client, CHAT, chat_body(stream=True)))]
    assert len(datas) == 4
    assert "choices" in json.loads(datas[1])
    assert json.loads(datas[2]) == {"error": error}
    assert datas[3] == "[DONE]"


def test_inband_error_anthropic_default(client: httpx.Client, upstream: UpstreamProcess) -> None:
    upstream.control.script({"inband_error": {}, "inband_error_after": 1})
    events = sse_events(stream_lines(client, MESSAGES, messages_body(stream=True)))
    assert [name for name, _ in events] == ["message_start", "error"]
    error = json.loads(events[1][1])
    assert error["type"] == "error"
    assert error["error"]["type"] == "overloaded_error"


def test_anthropic_sdk_raises_on_inband_error(upstream: UpstreamProcess) -> None:
    upstream.control.script({"inband_error": {}, "inband_error_after": 4})
    with (
        anthropic.Anthropic(base_url=upstream.base_url, api_key="k", max_retries=0) as sdk,
        pytest.raises(anthropic.APIStatusError),
        sdk.messages.stream(
            model="m", max_tokens=8, messages=[{"role": "user", "content": "hi"}]
        ) as stream,
    ):
        stream.get_final_message()


@pytest.mark.parametrize(
    ("behaviour", "expect_done", "expect_finish"),
    [
        pytest.param({"no_done": True}, False, "stop", id="no_done"),
        pytest.param({"no_finish": True}, True, None, id="no_finish"),
        pytest.param({"usage_chunk": False}, True, "stop", id="no_usage_chunk"),
    ],
)
def test_stream_endings(
    client: httpx.Client,
    upstream: UpstreamProcess,
    behaviour: dict[str, Any],
    expect_done: bool,
    expect_finish: str | None,
) -> None:
    upstream.control.script(behaviour)
    chunks, done = openai_chunks(client, chat_body(stream=True))
    assert done is expect_done
    finishes = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
    assert [f for f in finishes if f is not None] == ([expect_finish] if expect_finish else [])
    has_usage_chunk = chunks[-1]["choices"] == []
    assert has_usage_chunk is behaviour.get("usage_chunk", True)


def test_anthropic_no_done_and_no_finish(client: httpx.Client, upstream: UpstreamProcess) -> None:
    upstream.control.script({"no_done": True}, {"no_finish": True})
    first = [n for n, _ in sse_events(stream_lines(client, MESSAGES, messages_body(stream=True)))]
    assert first[-1] == "message_delta"
    second = [n for n, _ in sse_events(stream_lines(client, MESSAGES, messages_body(stream=True)))]
    assert "message_delta" not in second
    assert second[-1] == "message_stop"


def test_malformed_json_and_stream(client: httpx.Client, upstream: UpstreamProcess) -> None:
    upstream.control.script({"malformed": True}, {"malformed": True, "malformed_after": 2})
    response = client.post(CHAT, json=chat_body())
    assert response.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        response.json()
    datas = [d for _, d in sse_events(stream_lines(client, CHAT, chat_body(stream=True)))]
    assert datas[2] == "{not json"
    assert datas[-1] == "[DONE]"


# --------------------------------------------------------------------------- tool calls


def test_tool_call_fragments_reassemble(client: httpx.Client, upstream: UpstreamProcess) -> None:
    calls = [
        {"id": "call_a", "name": "get_weather", "arguments": {"city": "Paris", "days": 3}},
        {"name": "get_time", "arguments": '{"tz": "Europe/Paris"}'},
    ]
    upstream.control.script({"tool_calls": calls})
    chunks, done = openai_chunks(client, chat_body(stream=True))
    assert done
    assembled: dict[int, dict[str, str]] = {}
    fragments = 0
    for chunk in chunks:
        for choice in chunk["choices"]:
            for delta in choice["delta"].get("tool_calls", []):
                slot = assembled.setdefault(delta["index"], {"arguments": ""})
                if "id" in delta:
                    slot["id"], slot["name"] = delta["id"], delta["function"]["name"]
                slot["arguments"] += delta["function"].get("arguments", "")
                fragments += 1
    assert sorted(assembled) == [0, 1]
    assert fragments > 4
    assert assembled[0]["id"] == "call_a"
    assert assembled[1]["id"]
    assert assembled[1]["id"] != assembled[0]["id"]
    assert json.loads(assembled[0]["arguments"]) == {"city": "Paris", "days": 3}
    assert json.loads(assembled[1]["arguments"]) == {"tz": "Europe/Paris"}
    finishes = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
    assert finishes[-1] == "tool_calls"

    upstream.control.script({"tool_calls": calls})
    message = client.post(CHAT, json=chat_body()).json()["choices"][0]["message"]
    assert message["content"] is None
    assert [c["function"]["name"] for c in message["tool_calls"]] == ["get_weather", "get_time"]


def test_anthropic_tool_use_through_the_sdk(upstream: UpstreamProcess) -> None:
    calls = [{"id": "toolu_1", "name": "lookup", "arguments": {"q": "fake upstream"}}]
    upstream.control.script({"tool_calls": calls, "text": "Let me look."}, {"tool_calls": calls})
    with (
        anthropic.Anthropic(base_url=upstream.base_url, api_key="k") as sdk,
        sdk.messages.stream(
            model="m", max_tokens=8, messages=[{"role": "user", "content": "hi"}]
        ) as stream,
    ):
        streamed = stream.get_final_message()
    assert [b.type for b in streamed.content] == ["text", "tool_use"]
    assert streamed.content[1].input == {"q": "fake upstream"}  # type: ignore[union-attr]
    assert streamed.stop_reason == "tool_use"
    with anthropic.Anthropic(base_url=upstream.base_url, api_key="k") as sdk:
        whole = sdk.messages.create(
            model="m", max_tokens=8, messages=[{"role": "user", "content": "hi"}]
        )
    assert [b.type for b in whole.content] == ["tool_use"]
    assert whole.content[0].id == "toolu_1"  # type: ignore[union-attr]


# --------------------------------------------------------------------------- script and log


def test_log_records_method_path_headers_and_body(
    client: httpx.Client, upstream: UpstreamProcess
) -> None:
    body = chat_body("logged")
    client.post(CHAT, json=body, headers={"Authorization": "Bearer sk-test", "X-Custom": "v"})
    client.post(CHAT, content=b"not json", headers={"content-type": "text/plain"})
    first, second = upstream.control.log()
    assert (first["seq"], first["method"], first["path"]) == (1, "POST", CHAT)
    assert first["headers"]["authorization"] == "Bearer sk-test"
    assert first["headers"]["x-custom"] == "v"
    assert first["body"] == body
    assert first["stream"] is False
    assert second["body"] is None
    assert second["raw_body"] == "not json"
    assert second["status"] == 400
    assert upstream.control.log(path="/v1/models") == []


def test_scope_times_pending_and_reset(client: httpx.Client, upstream: UpstreamProcess) -> None:
    control = upstream.control
    control.script(
        {"path": "/v1/messages/count_tokens", "status": 500},
        {"status": 503, "times": 2},
    )
    assert client.get("/v1/models").status_code == 200  # unscoped: generation endpoints only
    assert client.post(MESSAGES, json=messages_body()).status_code == 503
    assert client.post(CHAT, json=chat_body()).status_code == 503
    assert client.post(CHAT, json=chat_body()).status_code == 200
    assert control.pending() == [{"path": "/v1/messages/count_tokens", "status": 500}]
    assert client.post("/v1/messages/count_tokens", json=messages_body()).status_code == 500
    assert control.pending() == []
    control.script({"status": 500})
    control.reset()
    assert control.pending() == []
    assert control.log() == []
    assert client.post(CHAT, json=chat_body()).json()["id"] == "chatcmpl-fake-1"


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param({"stauts": 429}, id="unknown-key"),
        pytest.param({"status": "429"}, id="wrong-type"),
        pytest.param({"delay": True}, id="bool-for-number"),
        pytest.param({"tool_calls": [{"arguments": "{}"}]}, id="tool-call-without-name"),
    ],
)
def test_bad_behaviour_is_refused(upstream: UpstreamProcess, bad: dict[str, Any]) -> None:
    with pytest.raises(AssertionError, match="400"):
        upstream.control.script(bad)
    assert upstream.control.pending() == []


async def test_wait_for_async(upstream: UpstreamProcess) -> None:
    async with httpx.AsyncClient(base_url=upstream.base_url) as c:
        await c.post(CHAT, json=chat_body())
    log = await upstream.control.wait_for_async(lambda log: len(log) == 1, within=5.0)
    assert log[0]["outcome"] == "completed"


def test_wait_for_times_out_with_the_log(upstream: UpstreamProcess) -> None:
    with pytest.raises(AssertionError, match="condition not met"):
        upstream.control.wait_for(lambda log: len(log) > 0, timeout=0.1)


# --------------------------------------------------------------------------- process fixtures


def test_start_upstream_gives_independent_processes(
    start_upstream: Callable[..., UpstreamProcess], upstream: UpstreamProcess
) -> None:
    a, b = start_upstream(), start_upstream()
    assert len({a.port, b.port, upstream.port}) == 3
    a.control.script({"status": 500})
    assert httpx.post(a.base_url + CHAT, json=chat_body()).status_code == 500
    assert httpx.post(b.base_url + CHAT, json=chat_body()).status_code == 200
    assert len(a.control.log()) == len(b.control.log()) == 1
    assert upstream.control.log() == []


def test_upstream_exits_on_sigterm_and_by_itself(
    start_upstream: Callable[..., UpstreamProcess],
) -> None:
    up = start_upstream()
    assert up.stop() == 0
    short = start_upstream(max_seconds=0.2)
    assert short.proc.wait(10) == 0


def test_upstream_exits_cleanly_with_a_request_hanging(
    start_upstream: Callable[..., UpstreamProcess],
) -> None:
    up = start_upstream()
    up.control.script({"hang": True})
    body = json.dumps(chat_body()).encode()
    head = f"POST {CHAT} HTTP/1.1\r\nhost: x\r\ncontent-length: {len(body)}\r\n\r\n"
    with socket.create_connection(("127.0.0.1", up.port), timeout=10) as sock:
        sock.sendall(head.encode() + body)
        up.control.wait_for(lambda log: len(log) == 1)
        assert up.stop() == 0
        assert sock.recv(1024) == b""  # closed without an answer


READY_SCRIPT = """
import json, signal, sys, time
print("starting", flush=True)
print("not json {", flush=True)
print(json.dumps({"event": "ready", "http": "127.0.0.1:4011", "grpc": "127.0.0.1:4012",
                  "argv": sys.argv[1:]}), flush=True)
print("to stderr", file=sys.stderr, flush=True)
time.sleep(60)
"""


def test_sidecar_factory_with_a_stand_in(
    sidecar_factory: Callable[..., SidecarProcess],
) -> None:
    config = {"server": {"http": "127.0.0.1:0", "grpc": "127.0.0.1:0"}}
    sidecar = sidecar_factory(
        config, command=[sys.executable, "-c", READY_SCRIPT], args=["--extra"]
    )
    assert sidecar.http_url == "http://127.0.0.1:4011"
    assert sidecar.grpc_target == "127.0.0.1:4012"
    assert (sidecar.http_port, sidecar.grpc_port) == (4011, 4012)
    assert sidecar.pid == sidecar.proc.pid
    assert sidecar.config_path is not None
    assert sidecar.ready["argv"] == ["--config", str(sidecar.config_path), "--extra"]
    assert "127.0.0.1:0" in sidecar.config_path.read_text()
    lines = sidecar.log_lines()
    assert lines[0] == "starting"
    assert "to stderr" in wait_for_log_line(sidecar, "to stderr")
    assert sidecar.proc.poll() is None  # the fixture stops it


def wait_for_log_line(sidecar: SidecarProcess, text: str) -> list[str]:
    """The log lines once ``text`` is among them (stderr may be written after the ready line)."""
    deadline = time.monotonic() + 10
    while text not in (lines := sidecar.log_lines()) and time.monotonic() < deadline:
        time.sleep(0.01)
    return lines


def test_sidecar_factory_env_is_cleaned_and_extended(
    sidecar_factory: Callable[..., SidecarProcess], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "from-the-host")
    script = (
        "import json, os, time; print(json.dumps({'event': 'ready', 'http': '127.0.0.1:1',"
        " 'grpc': '127.0.0.1:2', 'key': os.environ.get('OPENAI_API_KEY'),"
        " 'extra': os.environ.get('EXTRA')}), flush=True); time.sleep(60)"
    )
    sidecar = sidecar_factory(command=[sys.executable, "-c", script], env={"EXTRA": "x"})
    assert sidecar.config_path is None
    assert sidecar.ready["key"] is None
    assert sidecar.ready["extra"] == "x"


def test_sidecar_factory_reports_an_early_exit(
    sidecar_factory: Callable[..., SidecarProcess],
) -> None:
    script = "import sys; print('config error: backends.x.kind', file=sys.stderr); sys.exit(2)"
    with pytest.raises(ProcessStartError, match="exited with 2") as excinfo:
        sidecar_factory({"bad": True}, command=[sys.executable, "-c", script])
    assert excinfo.value.returncode == 2
    assert "config error: backends.x.kind" in excinfo.value.output


def test_sidecar_factory_times_out_and_stops_a_silent_process(
    sidecar_factory: Callable[..., SidecarProcess],
) -> None:
    script = "import time; print('no ready line', flush=True); time.sleep(60)"
    with pytest.raises(ProcessStartError, match="not ready within") as excinfo:
        sidecar_factory(command=[sys.executable, "-c", script], startup_timeout=0.5)
    assert "no ready line" in excinfo.value.output


def test_sidecar_stop_kills_a_process_that_ignores_sigterm(
    sidecar_factory: Callable[..., SidecarProcess],
) -> None:
    script = (
        "import json, signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
        " print(json.dumps({'event': 'ready', 'http': '127.0.0.1:1', 'grpc': '127.0.0.1:2'}),"
        " flush=True); time.sleep(60)"
    )
    sidecar = sidecar_factory(command=[sys.executable, "-c", script])
    assert sidecar.stop(timeout=0.5) == -signal.SIGKILL
