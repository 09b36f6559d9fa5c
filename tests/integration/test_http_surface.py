"""The HTTP surface end to end: the official anthropic SDK → the sidecar process → the fake
upstream process, both on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import anthropic
import httpx
import pytest

from tests.integration.helpers import (
    CALLER_KEY,
    NATIVE_KEY,
    PRIMARY_KEY,
    SECONDARY_KEY,
    WEATHER_TOOL,
    sidecar_config,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def sidecar(upstream: Any, sidecar_factory: Callable[..., Any]) -> Any:
    return sidecar_factory(sidecar_config(upstream.base_url))


@pytest.fixture
def client(sidecar: Any) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=sidecar.http_url, api_key=CALLER_KEY, max_retries=0) as c:
        yield c


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def test_create_answers_from_the_first_target(client: anthropic.Anthropic, upstream: Any) -> None:
    raw = client.messages.with_raw_response.create(
        model="claude-sonnet-4", max_tokens=50, messages=user("hello there")
    )
    message = raw.parse()
    assert message.content[0].type == "text"
    assert message.content[0].text == "echo: hello there"
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0
    assert raw.headers["x-anyllm-backend"] == "primary"
    assert raw.headers["x-anyllm-attempts"] == "1"
    (seen,) = upstream.control.log()
    assert seen["path"] == "/v1/chat/completions"
    assert seen["body"]["model"] == "gpt-primary"
    assert seen["headers"]["authorization"] == f"Bearer {PRIMARY_KEY}"
    assert CALLER_KEY not in str(seen["headers"])  # the caller's key never goes upstream


def test_stream_with_the_sdk_helper(client: anthropic.Anthropic) -> None:
    with client.messages.stream(
        model="claude-sonnet-4", max_tokens=50, messages=user("one two three")
    ) as stream:
        types = [event.type for event in stream]
        final = stream.get_final_message()
    assert final.content[0].type == "text"
    assert final.content[0].text == "echo: one two three"
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens > 0
    assert types[0] == "message_start"
    assert types[-1] == "message_stop"
    assert "content_block_delta" in types


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_tool_use_round_trip(client: anthropic.Anthropic, upstream: Any, stream: bool) -> None:
    upstream.control.script(
        {"tool_calls": [{"id": "call_1", "name": "get_weather", "arguments": {"city": "Paris"}}]}
    )
    kwargs: dict[str, Any] = {
        "model": "claude-sonnet-4",
        "max_tokens": 100,
        "tools": [WEATHER_TOOL],
        "messages": user("weather in Paris?"),
    }
    if stream:
        with client.messages.stream(**kwargs) as s:
            message = s.get_final_message()
    else:
        message = client.messages.create(**kwargs)
    assert message.stop_reason == "tool_use"
    (tool_use,) = [b for b in message.content if b.type == "tool_use"]
    assert tool_use.name == "get_weather"
    assert tool_use.input == {"city": "Paris"}

    # The second turn carries the result back; the upstream sees an OpenAI tool message.
    follow_up = client.messages.create(
        model="claude-sonnet-4",
        max_tokens=100,
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
        messages=[
            *user("weather in Paris?"),
            {"role": "assistant", "content": [b.model_dump() for b in message.content]},
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": tool_use.id, "content": "sunny"}
                ],
            },
        ],
    )
    assert follow_up.content[0].type == "text"
    body = upstream.control.log()[-1]["body"]
    tool_messages = [m for m in body["messages"] if m["role"] == "tool"]
    assert tool_messages[0]["content"] == "sunny"
    assert tool_messages[0]["tool_call_id"] == body["messages"][1]["tool_calls"][0]["id"]


@pytest.mark.parametrize(
    "failure",
    [
        {"status": 500},
        {"status": 429, "headers": {"retry-after": "30"}},
        {"status": 503},
        {"reset": True},
        {"malformed": True},
    ],
    ids=["500", "429", "503", "reset", "malformed"],
)
@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_fallback_to_the_next_target(
    client: anthropic.Anthropic, upstream: Any, failure: dict[str, Any], stream: bool
) -> None:
    upstream.control.script(failure)
    kwargs: dict[str, Any] = {"model": "claude-x", "max_tokens": 50, "messages": user("hi")}
    if stream:
        with client.messages.with_streaming_response.create(stream=True, **kwargs) as raw:
            headers = raw.headers
            text = "".join(raw.iter_text())
        assert "event: message_stop" in text
        assert (
            "echo: hi" in "".join(line for line in text.splitlines() if '"text_delta"' in line)
            or "echo:" in text
        )
    else:
        raw_json = client.messages.with_raw_response.create(**kwargs)
        headers = raw_json.headers
        assert raw_json.parse().content[0].text == "echo: hi"  # type: ignore[union-attr]
    assert headers["x-anyllm-backend"] == "secondary"
    assert headers["x-anyllm-attempts"] == "2"
    seen = upstream.control.log()
    keys = [e["headers"]["authorization"] for e in seen]
    if failure.get("reset") and len(keys) == 3:  # met on a reused connection: sent again first
        assert keys[0] == keys[1] and seen[1]["outcome"] == "reset"
        del keys[1]
    assert keys == [f"Bearer {PRIMARY_KEY}", f"Bearer {SECONDARY_KEY}"]


def test_a_400_stops_the_chain(client: anthropic.Anthropic, upstream: Any) -> None:
    upstream.control.script(
        {"status": 400, "body": {"error": {"message": "bad tool schema", "type": "invalid"}}}
    )
    with pytest.raises(anthropic.BadRequestError) as info:
        client.messages.create(model="claude-x", max_tokens=50, messages=user("hi"))
    assert "bad tool schema" in str(info.value)
    assert info.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    assert len(upstream.control.log()) == 1  # the secondary was not tried
    assert "x-anyllm-fallback-exhausted" not in info.value.response.headers


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_exhausted_chain(client: anthropic.Anthropic, upstream: Any, stream: bool) -> None:
    upstream.control.script({"status": 503, "times": 2})
    with pytest.raises(anthropic.APIStatusError) as info:
        if stream:
            with client.messages.stream(model="x", max_tokens=5, messages=user("hi")) as s:
                s.get_final_message()
        else:
            client.messages.create(model="x", max_tokens=5, messages=user("hi"))
    response = info.value.response
    assert response.status_code == 529  # overloaded_error, as Anthropic sends it
    assert response.headers["x-anyllm-fallback-exhausted"] == "true"
    assert response.headers["x-anyllm-attempts"] == "2"
    assert info.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]


def test_cut_before_content_falls_back_invisibly(
    client: anthropic.Anthropic, upstream: Any
) -> None:
    upstream.control.script({"stream_cut_after": 1})  # only the role chunk, then the cut
    with client.messages.stream(model="x", max_tokens=50, messages=user("still here")) as s:
        message = s.get_final_message()
    assert message.content[0].text == "echo: still here"  # type: ignore[union-attr]
    assert len(upstream.control.log()) == 2


def test_cut_after_content_ends_with_an_error_event(
    client: anthropic.Anthropic, upstream: Any
) -> None:
    upstream.control.script({"stream_cut_after": 3, "text": "a b c d e f g h"})
    received: list[str] = []
    with (
        pytest.raises(anthropic.APIStatusError) as info,
        client.messages.stream(model="x", max_tokens=50, messages=user("hi")) as s,
    ):
        for text in s.text_stream:
            received.append(text)
    assert received  # some content arrived before the cut
    assert "primary" in str(info.value)
    assert len(upstream.control.log()) == 1  # nothing retried after the commit point


def test_native_anthropic_backend_relays_and_keeps_headers(
    client: anthropic.Anthropic, upstream: Any
) -> None:
    raw = client.messages.with_raw_response.create(
        model="claude-sonnet-4",
        max_tokens=50,
        messages=user("native please"),
        extra_headers={"x-anyllm-chain": "native", "anthropic-beta": "some-beta-2025"},
        extra_body={"future_field": {"kept": True}},
    )
    assert raw.headers["x-anyllm-backend"] == "native"
    (seen,) = upstream.control.log()
    assert seen["path"] == "/v1/messages"
    assert seen["headers"]["x-api-key"] == NATIVE_KEY
    assert seen["headers"]["anthropic-beta"] == "some-beta-2025"
    # The caller's anthropic-version passes through (the SDK sends its own).
    assert seen["headers"]["anthropic-version"] == raw.http_request.headers["anthropic-version"]
    assert seen["body"]["model"] == "claude-upstream"
    assert seen["body"]["future_field"] == {"kept": True}  # unknown fields reach Anthropic
    with client.messages.stream(
        model="m", max_tokens=50, messages=user("abc"), extra_headers={"x-anyllm-chain": "native"}
    ) as s:
        assert s.get_final_message().content[0].type == "text"


def test_unknown_chain_is_a_400(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.BadRequestError, match="x-anyllm-chain"):
        client.messages.create(
            model="x", max_tokens=5, messages=user("hi"), extra_headers={"x-anyllm-chain": "zz"}
        )


BAD_BODIES = [
    pytest.param(b"{not json", "not valid JSON", id="invalid-json"),
    pytest.param(b"[1, 2]", "Expected `object`", id="not-an-object"),
    pytest.param(
        b'{"model": "x", "messages": [{"role": "user", "content": "hi"}]}',
        "max_tokens",
        id="missing-max-tokens",
    ),
    pytest.param(
        b'{"model": "x", "max_tokens": "ten", "messages": [{"role": "user", "content": "hi"}]}',
        "max_tokens: Expected `int`, got `str`",
        id="wrong-type",
    ),
    pytest.param(
        b'{"model": "x", "max_tokens": 5, "messages": [{"role": "user", "content": '
        b'[{"type": "image", "source": {"type": "base64", "media_type": "image/png", '
        b'"data": 5}}]}]}',
        "messages[0].content[0].source.data",
        id="image-source-wrong-type",
    ),
    pytest.param(
        b'{"model": "x", "max_tokens": 5, "messages": [{"role": "user", "content": '
        b'[{"type": "text"}]}]}',
        "messages[0].content[0]: Object missing required field `text`",
        id="block-missing-field",
    ),
    pytest.param(
        b'{"model": "x", "max_tokens": 5, "messages": []}', "messages", id="empty-messages"
    ),
    pytest.param(
        b'{"model": "x", "max_tokens": 5, "messages": [{"role": "robot", "content": "hi"}]}',
        "messages[0].role",
        id="bad-role",
    ),
    pytest.param(
        b'{"model": "x", "max_tokens": 0, "messages": [{"role": "user", "content": "hi"}]}',
        "max_tokens: must be at least 1",
        id="zero-max-tokens",
    ),
]


@pytest.mark.parametrize(("body", "expected"), BAD_BODIES)
def test_bad_input_is_a_clear_400(sidecar: Any, upstream: Any, body: bytes, expected: str) -> None:
    with httpx.Client(base_url=sidecar.http_url) as http:
        response = http.post(
            "/v1/messages", content=body, headers={"content-type": "application/json"}
        )
        assert response.status_code == 400
        error = response.json()
        assert error["type"] == "error"
        assert error["error"]["type"] == "invalid_request_error"
        assert expected in error["error"]["message"]
        assert upstream.control.log() == []  # nothing reached an upstream
        # One bad request harms nothing: the next good one is served.
        ok = http.post(
            "/v1/messages",
            json={"model": "x", "max_tokens": 5, "messages": user("fine")},
        )
        assert ok.status_code == 200
        assert ok.json()["content"][0]["text"] == "echo: fine"


def test_count_tokens_models_and_health(sidecar: Any, client: anthropic.Anthropic) -> None:
    raw = client.messages.with_raw_response.count_tokens(
        model="claude-x", messages=user("how many tokens is this")
    )
    assert raw.parse().input_tokens > 0
    assert raw.headers["x-anyllm-token-count"] == "estimated"
    native = client.messages.with_raw_response.count_tokens(
        model="claude-x", messages=user("a b c"), extra_headers={"x-anyllm-chain": "native"}
    )
    assert native.headers["x-anyllm-token-count"] == "exact"
    models = client.models.list()
    assert {m.id for m in models.data} >= {"default", "native"}
    with httpx.Client(base_url=sidecar.http_url) as http:
        assert http.get("/healthz").status_code == 200
        assert http.get("/readyz").json() == {"status": "ready"}
        missing = http.get("/v2/nothing")
        assert missing.status_code == 404
        assert missing.json()["error"]["type"] == "not_found_error"
