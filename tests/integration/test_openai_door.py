"""The OpenAI door end to end: the official openai SDK against the real sidecar process and the
scripted fake upstream, both to an OpenAI-compatible target (the caller's body and the answer
relayed as they are) and to an Anthropic one (translated both ways), with fallback between
them, the streaming commit point, errors in OpenAI's shape and the deadline header; and the
same relay to Azure, the same translation to Bedrock (their fakes, proven elsewhere)."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest
from openai.lib.streaming.chat import ChatCompletionStreamState

from tests.integration.helpers import NATIVE_KEY, PRIMARY_KEY, sidecar_config
from tests.upstream.azure_fakes import AzureFakes
from tests.upstream.bedrock_fake import ACCESS_KEY, REGION, SECRET_KEY, BedrockFake, aws_env

pytestmark = pytest.mark.integration

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 8).decode()
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
SCHEMA = {
    "type": "json_schema",
    "json_schema": {
        "name": "city",
        "strict": True,
        "schema": {
            "type": "object",
            "properties": {"name": {"type": "string"}},
            "required": ["name"],
            "additionalProperties": False,
        },
    },
}
HI = [{"role": "user", "content": "hello there"}]
RELAYED = "default"  # primary, then secondary: OpenAI-compatible
TRANSLATED = "native"  # the Anthropic backend
CHAT = "/v1/chat/completions"
MESSAGES = "/v1/messages"


def config(upstream_url: str) -> dict[str, Any]:
    # Breakers that never open: the cases fail targets on purpose, one after another.
    out = sidecar_config(upstream_url, breaker={"failures": 1000, "cooldown": 1})
    out["chains"]["primary-then-native"] = [
        {"backend": "primary", "model": "gpt-primary"},
        {"backend": "native", "model": "claude-upstream"},
    ]
    return out


@pytest.fixture(scope="module")
def sidecar(module_upstream: Any, module_sidecar_factory: Callable[..., Any]) -> Any:
    return module_sidecar_factory(config(module_upstream.base_url))


@pytest.fixture
def client(sidecar: Any, upstream: Any) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{sidecar.http_url}/v1", api_key="caller-key", max_retries=0) as c:
        yield c


def chain(name: str) -> dict[str, str]:
    return {"x-anyllm-chain": name}


def accumulate(chunks: list[Any]) -> Any:
    """The SDK's own accumulator over the chunks: the completion the caller ends up with."""
    state: ChatCompletionStreamState = ChatCompletionStreamState()
    for chunk in chunks:
        state.handle_chunk(chunk)
    return state.get_final_completion()


# ------------------------------------------------------------------ relayed (OpenAI target)


def test_relayed_body_reaches_the_upstream_as_sent(client: openai.OpenAI, upstream: Any) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-caller",
        messages=HI,  # type: ignore[arg-type]
        seed=7,
        logprobs=True,
        n=1,
        response_format=SCHEMA,  # type: ignore[arg-type]
        reasoning_effort="low",
        parallel_tool_calls=False,
        tools=[WEATHER],  # type: ignore[list-item]
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        extra_body={"vendor_extra": {"nested": [1, 2.5, None, 12345678901234567890123]}},
        extra_headers=chain(RELAYED),
    )
    assert raw.status_code == 200
    assert raw.headers["x-anyllm-backend"] == "primary"
    assert raw.headers["x-anyllm-attempts"] == "1"
    assert "x-anyllm-degradation" not in raw.headers  # nothing was translated
    (entry,) = upstream.control.log(CHAT)
    sent = json.loads(raw.http_request.content)
    assert entry["body"] == {**sent, "model": "gpt-primary"}  # only the model rewritten
    assert entry["headers"]["authorization"] == f"Bearer {PRIMARY_KEY}"  # ours, not the caller's
    assert raw.parse().choices[0].message.content == "echo: hello there"


def test_relayed_answer_reaches_the_caller_as_sent(client: openai.OpenAI, upstream: Any) -> None:
    body = {
        "id": "chatcmpl-upstream",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "gpt-primary-2025",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "hi",
                    "annotations": [{"type": "url_citation", "url": "https://x"}],
                    "vendor_reasoning": {"steps": 3},
                },
                "logprobs": {"content": [{"token": "hi", "logprob": -0.1, "bytes": [104, 105]}]},
                "finish_reason": "a_finish_reason_from_the_future",
            }
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
        "service_tier": "priority",
        "vendor_field": {"kept": True},
    }
    upstream.control.script({"body": body})
    raw = client.chat.completions.with_raw_response.create(
        model="m",
        messages=HI,
        extra_headers=chain(RELAYED),  # type: ignore[arg-type]
    )
    assert json.loads(raw.http_response.content) == body  # nothing dropped, nothing added
    assert raw.parse().choices[0].message.content == "hi"


def stream_chunks(client: openai.OpenAI, **kwargs: Any) -> tuple[list[Any], httpx.Headers]:
    with client.chat.completions.with_streaming_response.create(stream=True, **kwargs) as r:
        headers = r.headers
        chunks = list(r.parse())
    return chunks, headers


@pytest.mark.parametrize("include_usage", [True, False], ids=["usage-asked", "usage-not-asked"])
def test_relayed_stream(
    client: openai.OpenAI, sidecar: Any, upstream: Any, include_usage: bool
) -> None:
    options = {"stream_options": {"include_usage": True}} if include_usage else {}
    chunks, headers = stream_chunks(
        client, model="m", messages=HI, extra_headers=chain(RELAYED), **options
    )
    assert headers["x-anyllm-backend"] == "primary"
    assert headers["content-type"].startswith("text/event-stream")
    (entry,) = upstream.control.log(CHAT)
    # Usage is asked for the metrics either way; only a caller who asked sees its chunk.
    assert entry["body"]["stream_options"] == {"include_usage": True}
    assert accumulate(chunks).choices[0].message.content == "echo: hello there"
    usage = [c.usage for c in chunks if not c.choices]
    if include_usage:
        assert [(u.prompt_tokens, u.completion_tokens) for u in usage] == [(2, 3)]
    else:
        assert usage == []
        assert all(c.choices for c in chunks)  # choices[0] is there on every chunk


def test_relayed_stream_is_the_upstreams_own_bytes(sidecar: Any, upstream: Any) -> None:
    events = [
        {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "up",
         "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}],
         "vendor": {"a": 1}},
        {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "up",
         "choices": [{"index": 0, "delta": {"content": "hi", "vendor_delta": [1]},
                      "logprobs": {"content": []}}]},
        {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "up",
         "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
         "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}},
    ]  # fmt: skip
    upstream.control.script({"events": events})
    body = {"model": "m", "messages": HI, "stream": True,
            "stream_options": {"include_usage": True}}  # fmt: skip
    with httpx.stream(
        "POST", f"{sidecar.http_url}{CHAT}", json=body, headers=chain(RELAYED)
    ) as response:
        text = response.read().decode()
    frames = [line[6:] for line in text.split("\n") if line.startswith("data: ")]
    assert [json.loads(f) for f in frames[:-1]] == events
    assert frames[-1] == "[DONE]"


# ------------------------------------------------------------------ translated (Anthropic target)


def test_translated_create(client: openai.OpenAI, upstream: Any) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-caller",
        messages=[
            {"role": "developer", "content": "Be brief."},
            {"role": "user", "content": "hello there"},
        ],
        max_completion_tokens=50,
        seed=7,
        stop=["END"],
        extra_headers=chain(TRANSLATED),
    )
    assert raw.headers["x-anyllm-backend"] == "native"
    assert raw.headers["x-anyllm-degradation"] == "seed"  # max_tokens was given
    (entry,) = upstream.control.log(MESSAGES)
    assert entry["headers"]["x-api-key"] == NATIVE_KEY
    assert entry["body"] == {
        "model": "claude-upstream",
        "messages": [{"role": "user", "content": "hello there"}],
        "max_tokens": 50,
        "system": "Be brief.",
        "stop_sequences": ["END"],
    }
    completion = raw.parse()
    assert completion.object == "chat.completion"
    assert completion.model == "gpt-caller"
    assert completion.choices[0].message.content == "echo: hello there"
    assert completion.choices[0].finish_reason == "stop"
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (4, 3)


PARALLEL_CALLS = [
    {"id": "toolu_a", "name": "get_weather", "arguments": {"city": "Paris"}},
    {"id": "toolu_b", "name": "get_weather", "arguments": {"city": "Rome"}},
]


@pytest.mark.parametrize("target", [RELAYED, TRANSLATED])
def test_parallel_tool_calls_streamed(client: openai.OpenAI, upstream: Any, target: str) -> None:
    upstream.control.script({"tool_calls": PARALLEL_CALLS})
    chunks, _ = stream_chunks(
        client,
        model="m",
        messages=[{"role": "user", "content": "weather in Paris and Rome?"}],
        tools=[WEATHER],
        extra_headers=chain(target),
    )
    choice = accumulate(chunks).choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls
    assert [(c.function.name, json.loads(c.function.arguments)) for c in calls] == [
        ("get_weather", {"city": "Paris"}),
        ("get_weather", {"city": "Rome"}),
    ]
    indices = [tc.index for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or ()]
    assert sorted(set(indices)) == [0, 1]


@pytest.mark.parametrize("target", [RELAYED, TRANSLATED])
def test_parallel_tool_calls_whole(client: openai.OpenAI, upstream: Any, target: str) -> None:
    upstream.control.script({"tool_calls": PARALLEL_CALLS})
    completion = client.chat.completions.create(
        model="m",
        messages=[{"role": "user", "content": "weather in Paris and Rome?"}],
        tools=[WEATHER],  # type: ignore[list-item]
        extra_headers=chain(target),
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert [json.loads(c.function.arguments) for c in choice.message.tool_calls] == [
        {"city": "Paris"},
        {"city": "Rome"},
    ]


TOOL_ROUND_TRIP: list[dict[str, Any]] = [
    {"role": "user", "content": "weather in Paris and Rome?"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
            {"id": "call_2", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'}},
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    {"role": "tool", "tool_call_id": "call_2", "content": "rainy"},
]  # fmt: skip


def test_tool_results_translated(client: openai.OpenAI, upstream: Any) -> None:
    completion = client.chat.completions.create(
        model="m",
        messages=TOOL_ROUND_TRIP,  # type: ignore[arg-type]
        tools=[WEATHER],  # type: ignore[list-item]
        extra_headers=chain(TRANSLATED),
    )
    assert completion.choices[0].message.content is not None
    (entry,) = upstream.control.log(MESSAGES)
    assert entry["body"]["messages"][1:] == [
        {
            "role": "assistant",
            "content": [
                {"type": "tool_use", "id": "call_1", "name": "get_weather",
                 "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "call_2", "name": "get_weather",
                 "input": {"city": "Rome"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "call_1", "content": "sunny"},
                {"type": "tool_result", "tool_use_id": "call_2", "content": "rainy"},
            ],
        },
    ]  # fmt: skip
    assert entry["body"]["tools"][0]["input_schema"] == WEATHER["function"]["parameters"]  # type: ignore[index]


def test_tool_results_relayed(client: openai.OpenAI, upstream: Any) -> None:
    client.chat.completions.create(
        model="m",
        messages=TOOL_ROUND_TRIP,  # type: ignore[arg-type]
        tools=[WEATHER],  # type: ignore[list-item]
        extra_headers=chain(RELAYED),
    )
    (entry,) = upstream.control.log(CHAT)
    assert entry["body"]["messages"] == TOOL_ROUND_TRIP


@pytest.mark.parametrize("target", [RELAYED, TRANSLATED])
def test_response_format_json_schema(client: openai.OpenAI, upstream: Any, target: str) -> None:
    upstream.control.script({"text": '{"name": "Paris"}'})
    completion = client.chat.completions.create(
        model="m",
        messages=HI,  # type: ignore[arg-type]
        response_format=SCHEMA,  # type: ignore[arg-type]
        extra_headers=chain(target),
    )
    assert json.loads(completion.choices[0].message.content or "") == {"name": "Paris"}
    (entry,) = upstream.control.log()
    if target == RELAYED:
        assert entry["body"]["response_format"] == SCHEMA
    else:
        assert entry["body"]["output_config"] == {
            "format": {"type": "json_schema", "schema": SCHEMA["json_schema"]["schema"]}  # type: ignore[index]
        }


@pytest.mark.parametrize("target", [RELAYED, TRANSLATED])
def test_images(client: openai.OpenAI, upstream: Any, target: str) -> None:
    content = [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
    ]
    client.chat.completions.create(
        model="m",
        messages=[{"role": "user", "content": content}],  # type: ignore[list-item]
        extra_headers=chain(target),
    )
    (entry,) = upstream.control.log()
    sent = entry["body"]["messages"][0]["content"]
    if target == RELAYED:
        assert sent == content
    else:
        assert sent == [
            {"type": "text", "text": "what is this?"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
            {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
        ]


@pytest.mark.parametrize("include_usage", [True, False], ids=["usage-asked", "usage-not-asked"])
def test_translated_stream_usage(client: openai.OpenAI, upstream: Any, include_usage: bool) -> None:
    options = {"stream_options": {"include_usage": True}} if include_usage else {}
    chunks, headers = stream_chunks(
        client, model="gpt-caller", messages=HI, extra_headers=chain(TRANSLATED), **options
    )
    assert headers["x-anyllm-backend"] == "native"
    completion = accumulate(chunks)
    assert completion.choices[0].message.content == "echo: hello there"
    assert {c.model for c in chunks} == {"gpt-caller"}
    usage = [c.usage for c in chunks if not c.choices]
    if include_usage:
        assert [(u.prompt_tokens, u.completion_tokens) for u in usage] == [(2, 3)]
    else:
        assert usage == []


# ------------------------------------------------------------------ fallback and the commit point


@pytest.mark.parametrize("stream", [False, True], ids=["create", "stream"])
@pytest.mark.parametrize(
    "failure",
    [
        pytest.param({"status": 503}, id="503"),
        pytest.param({"reset": True}, id="reset"),
        pytest.param({"stream_cut_after": 1}, id="cut-before-content"),
    ],
)
def test_fallback_from_openai_to_anthropic(
    client: openai.OpenAI, upstream: Any, stream: bool, failure: dict[str, Any]
) -> None:
    if failure.get("stream_cut_after") and not stream:
        failure = {"stream_cut_after": 0}  # a JSON answer cut halfway
    upstream.control.script({**failure, "path": CHAT})
    kwargs: dict[str, Any] = {
        "model": "m",
        "messages": HI,
        "seed": 3,
        "extra_headers": chain("primary-then-native"),
    }
    if stream:
        chunks, headers = stream_chunks(client, **kwargs)
        text = accumulate(chunks).choices[0].message.content
    else:
        raw = client.chat.completions.with_raw_response.create(**kwargs)
        headers, text = raw.headers, raw.parse().choices[0].message.content
    assert text == "echo: hello there"
    assert headers["x-anyllm-backend"] == "native"
    assert headers["x-anyllm-attempts"] == "2"
    # The Anthropic target was sent the translation: what it lost is named.
    assert headers["x-anyllm-degradation"] == "max_tokens.default,seed"
    paths = [e["path"] for e in upstream.control.log()]
    # A reset that met a reused connection is sent once more on a fresh one (not an attempt).
    assert paths == [CHAT, MESSAGES] or (failure.get("reset") and paths == [CHAT, CHAT, MESSAGES])


# Faults after the first content are paced, so that content reaches the caller first (one in
# the same upstream read as the first content still falls back: nothing was sent yet).
PACED = {"chunk_delay": 0.05}


@pytest.mark.parametrize(
    ("target", "events"),
    [
        pytest.param(RELAYED, 3, id="relayed"),  # the role chunk, "one ", "two "
        pytest.param(TRANSLATED, 4, id="translated"),  # message_start, block start, ping, "one "
    ],
)
def test_cut_after_content_raises_in_the_sdk(
    client: openai.OpenAI, upstream: Any, target: str, events: int
) -> None:
    upstream.control.script(
        {"chunks": ["one ", "two ", "three"], "stream_cut_after": events, **PACED}
    )
    received: list[str] = []
    with pytest.raises(openai.APIError) as caught:
        for chunk in client.chat.completions.create(
            model="m", messages=HI, stream=True, extra_headers=chain(target)
        ):
            if chunk.choices and chunk.choices[0].delta.content:
                received.append(chunk.choices[0].delta.content)
    assert received and "".join(received) != "one two three"  # some came, not all
    assert "ended" in caught.value.message or "cut" in caught.value.message
    assert len(upstream.control.log()) == 1  # after the commit point nothing is retried


@pytest.mark.parametrize("target", [RELAYED, TRANSLATED])
def test_upstream_error_mid_stream_raises_in_the_sdk(
    client: openai.OpenAI, upstream: Any, target: str
) -> None:
    upstream.control.script(
        {"inband_error": {"type": "overloaded_error", "message": "the model fell over"},
         "inband_error_after": 4, "text": "one two three", **PACED}
    )  # fmt: skip
    received = []
    with pytest.raises(openai.APIError) as caught:
        for chunk in client.chat.completions.create(
            model="m", messages=HI, stream=True, extra_headers=chain(target)
        ):
            received += [c.delta.content for c in chunk.choices if c.delta.content]
    assert received
    assert "the model fell over" in caught.value.message
    assert len(upstream.control.log()) == 1


# ------------------------------------------------------------------ errors, deadline, models


@pytest.mark.parametrize(
    ("body", "param"),
    [
        pytest.param({"model": "m"}, "messages", id="no-messages"),
        pytest.param({"messages": HI}, "model", id="no-model"),
        pytest.param(
            {"model": "m", "messages": [{"role": "user", "content": 5}]},
            "messages[0].content",
            id="content-not-text",
        ),
        pytest.param(
            {"model": "m", "messages": [{"role": "robot", "content": "x"}]},
            "messages[0].role",
            id="unknown-role",
        ),
        pytest.param({"model": "m", "messages": HI, "temperature": 3}, "temperature", id="range"),
        pytest.param({"model": "m", "messages": []}, "messages", id="empty-messages"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(
    client: openai.OpenAI, upstream: Any, body: dict[str, Any], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.post("/chat/completions", body=body, cast_to=httpx.Response)
    error = caught.value.body
    assert isinstance(error, dict)
    assert error["param"] == param
    assert error["type"] == "invalid_request_error"
    assert error["message"].startswith(param)
    assert upstream.control.log() == []


def test_not_json_is_a_400(sidecar: Any, upstream: Any) -> None:
    response = httpx.post(f"{sidecar.http_url}{CHAT}", content=b"{not json")
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    ("headers", "param"),
    [
        pytest.param({"x-anyllm-timeout": "soon"}, "x-anyllm-timeout", id="bad-timeout"),
        pytest.param({"x-anyllm-chain": "nope"}, "x-anyllm-chain", id="unknown-chain"),
    ],
)
def test_bad_header_is_a_400_naming_it(
    client: openai.OpenAI, headers: dict[str, str], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="m",
            messages=HI,
            extra_headers=headers,  # type: ignore[arg-type]
        )
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["param"] == param


@pytest.mark.parametrize("stream", [False, True], ids=["create", "stream"])
def test_deadline_header(client: openai.OpenAI, upstream: Any, stream: bool) -> None:
    upstream.control.script({"hang": True})
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(
            model="m",
            messages=HI,  # type: ignore[arg-type]
            stream=stream,
            extra_headers={"x-anyllm-timeout": "0.5", **chain(RELAYED)},
        )
    assert caught.value.status_code == 504
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["code"] == "timeout"
    upstream.control.wait_for(lambda log: log and log[0]["disconnected"])  # the upstream let go


def test_exhausted_chain(client: openai.OpenAI, upstream: Any) -> None:
    upstream.control.script({"status": 429, "times": 2, "headers": {"retry-after": "7"}})
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(
            model="m",
            messages=HI,
            extra_headers=chain(RELAYED),  # type: ignore[arg-type]
        )
    headers = caught.value.response.headers
    assert headers["x-anyllm-fallback-exhausted"] == "true"
    assert headers["x-anyllm-attempts"] == "2"
    assert headers["x-should-retry"] == "false"
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["code"] == "rate_limit_exceeded"


def test_models_in_both_shapes(sidecar: Any, client: openai.OpenAI) -> None:
    ids = [m.id for m in client.models.list()]
    assert ids == ["default", "native", "native-then-primary", "primary-then-native"]
    assert client.models.retrieve("native").owned_by == "anyllm-sidecar"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("nope")
    with anthropic.Anthropic(base_url=sidecar.http_url, api_key="k", max_retries=0) as theirs:
        page = theirs.models.list()
        assert [m.id for m in page.data] == ids
        assert page.data[0].type == "model"


def test_metrics_say_openai(sidecar: Any, client: openai.OpenAI) -> None:
    client.chat.completions.create(
        model="m",
        messages=HI,
        extra_headers=chain(RELAYED),  # type: ignore[arg-type]
    )
    client.chat.completions.create(
        model="m",
        messages=HI,
        stream=True,
        extra_headers=chain(RELAYED),  # type: ignore[arg-type]
    )
    text = httpx.get(f"{sidecar.http_url}/metrics").text
    for kind in ("create", "stream"):
        assert (
            f'anyllm_requests_total{{chain="default",kind="{kind}",result="ok",'
            f'route="header",surface="openai"}}'
        ) in text
    assert 'anyllm_tokens_total{direction="output",target="primary/gpt-primary"}' in text


# ------------------------------------------------------------------ Azure: the same relay


@pytest.mark.parametrize(
    ("v1", "path"),
    [
        pytest.param(False, "/openai/deployments/gpt-4o/chat/completions", id="deployments"),
        pytest.param(True, "/openai/v1/chat/completions", id="v1"),
    ],
)
def test_relayed_to_azure(
    sidecar_factory: Callable[..., Any], tmp_path: Any, v1: bool, path: str
) -> None:
    fakes = AzureFakes(tmp_path)
    try:
        azure = fakes.start("azure", deployments=("gpt-4o",))
        backend: dict[str, Any] = {"kind": "azure", "base_url": azure.base_url}
        backend |= {"api_key": fakes.api_key} if v1 else {"api_key": fakes.api_key,
                                                          "api_version": "2024-10-21"}  # fmt: skip
        sidecar = sidecar_factory(
            {
                "server": {"http": "127.0.0.1:0", "grpc": "127.0.0.1:0"},
                "backends": {"az": backend},
                "chains": {"default": [{"backend": "az", "model": "gpt-4o"}]},
            }
        )
        with openai.OpenAI(base_url=f"{sidecar.http_url}/v1", api_key="c", max_retries=0) as c:
            raw = c.chat.completions.with_raw_response.create(
                model="m",
                messages=HI,
                extra_body={"data_sources": [{"type": "x"}]},  # type: ignore[arg-type]
            )
            chunks, _ = stream_chunks(c, model="m", messages=HI)
        # Azure's own fields (content filter results) reach the caller: nothing is modelled.
        assert "prompt_filter_results" in json.loads(raw.http_response.content)
        assert raw.parse().choices[0].message.content == "echo: hello there"
        assert accumulate(chunks).choices[0].message.content == "echo: hello there"
        create, stream = [e for e in azure.control.log() if "chat/completions" in e["path"]]
        assert create["path"] == stream["path"] == path
        assert create["body"] == {"model": "gpt-4o", "messages": HI,
                                  "data_sources": [{"type": "x"}]}  # fmt: skip
        assert stream["body"]["stream_options"] == {"include_usage": True}
    finally:
        fakes.close()


# ------------------------------------------------------------------ Bedrock: the same translation


def test_translated_to_bedrock(sidecar_factory: Callable[..., Any], tmp_path: Any) -> None:
    bedrock = BedrockFake(tmp_path)
    try:
        env = aws_env(tmp_path, AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY)
        backend = {"kind": "bedrock", "region": REGION, "base_url": bedrock.base_url}
        model = "anthropic.claude-test-v1:0"
        config = {
            "server": {"http": "127.0.0.1:0", "grpc": "127.0.0.1:0"},
            "backends": {"br": backend},
            "chains": {"default": [{"backend": "br", "model": model}]},
        }
        sidecar = sidecar_factory(config, env=env)
        with openai.OpenAI(base_url=f"{sidecar.http_url}/v1", api_key="c", max_retries=0) as c:
            raw = c.chat.completions.with_raw_response.create(
                model="m",
                messages=HI,
                max_tokens=20,
                seed=1,  # type: ignore[arg-type]
            )
            chunks, headers = stream_chunks(c, model="m", messages=HI, max_tokens=20)
        assert raw.headers["x-anyllm-degradation"] == "seed"
        assert raw.parse().choices[0].message.content == "echo: hello there"
        assert accumulate(chunks).choices[0].message.content == "echo: hello there"
        create, stream = bedrock.log()
        assert (create["status"], stream["status"]) == (200, 200)
        assert create["body"]["messages"] == [{"role": "user", "content": "hello there"}]
        assert create["body"]["max_tokens"] == 20 and "seed" not in create["body"]
        assert stream["path"].endswith("/invoke-with-response-stream")
    finally:
        bedrock.close()
