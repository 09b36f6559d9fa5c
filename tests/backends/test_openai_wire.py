"""Relaying Chat Completions to an OpenAI caller: the body sent up, the views the engine reads
of the answer and of each chunk, and that any chunking of a stream relays the same bytes."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar.backends.openai_wire import DONE, OpenAIChunkReader, read_completion, relay_body
from sidecar.errors import FailureKind, UpstreamError
from sidecar.model import RawChatChunk
from sidecar.translate.sse import SSEDecoder

BIG = b'{"model":"m","messages":[{"role":"user","content":"x"}],"seed":123456789012345678901234}'


@pytest.mark.parametrize(
    ("body", "model", "stream", "want_usage", "sent", "ours"),
    [
        pytest.param(BIG, "m", False, True, BIG, False, id="same-model-as-is"),
        pytest.param(
            BIG,
            "up",
            False,
            True,
            b'{"model":"up","messages":[{"role":"user","content":"x"}],'
            b'"seed":123456789012345678901234}',
            False,
            id="model-rewritten-rest-byte-for-byte",
        ),
        pytest.param(
            b'{"model":"m","stream":true}',
            "m",
            True,
            True,
            b'{"model":"m","stream":true,"stream_options":{"include_usage":true}}',
            True,
            id="usage-asked-for-us",
        ),
        pytest.param(
            b'{"model":"m","stream":true,"stream_options":{"include_usage":true}}',
            "up",
            True,
            True,
            b'{"model":"up","stream":true,"stream_options":{"include_usage":true}}',
            False,
            id="usage-asked-by-the-caller",
        ),
        pytest.param(
            b'{"model":"m","stream":true,"stream_options":{"include_usage":false,"x":1}}',
            "m",
            True,
            True,
            b'{"model":"m","stream":true,"stream_options":{"include_usage":true,"x":1}}',
            True,
            id="caller-said-no-we-ask",
        ),
        pytest.param(
            b'{"model":"m","stream":true}',
            "m",
            True,
            False,
            b'{"model":"m","stream":true}',
            False,
            id="backend-without-stream-usage",
        ),
    ],
)
def test_relay_body(
    body: bytes, model: str, stream: bool, want_usage: bool, sent: bytes, ours: bool
) -> None:
    assert relay_body(body, "m", model, stream=stream, want_usage=want_usage) == (sent, ours)


@pytest.mark.parametrize(
    ("content", "tokens"),
    [
        pytest.param(
            b'{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4}}', (3, 4), id="usage"
        ),
        pytest.param(b'{"choices":[{"message":{"content":[1]}}],"x":1}', (None, None), id="odd"),
        pytest.param(
            b'{"choices":[],"usage":{"prompt_tokens":"3","completion_tokens":2.0}}',
            (None, 2),
            id="usage-lenient",
        ),
    ],
)
def test_read_completion(content: bytes, tokens: tuple[int | None, int | None]) -> None:
    answer = read_completion("up", content)
    assert answer.body is content
    assert (answer.input_tokens, answer.output_tokens) == tokens


@pytest.mark.parametrize(
    ("content", "kind", "status"),
    [
        pytest.param(b"<html>", FailureKind.INVALID_RESPONSE, None, id="not-json"),
        pytest.param(b"[1]", FailureKind.INVALID_RESPONSE, None, id="not-an-object"),
        pytest.param(b'{"id":"x"}', FailureKind.INVALID_RESPONSE, None, id="no-choices"),
        pytest.param(
            b'{"error":{"message":"busy","code":503}}',
            FailureKind.INVALID_RESPONSE,
            503,
            id="error-in-a-200",
        ),
        pytest.param(
            b'{"object":"error","message":"bad","code":400}',
            FailureKind.INVALID_RESPONSE,
            400,
            id="vllm-error",
        ),
    ],
)
def test_read_completion_failures(content: bytes, kind: FailureKind, status: int | None) -> None:
    with pytest.raises(UpstreamError) as caught:
        read_completion("up", content)
    assert caught.value.kind is kind
    assert caught.value.status == status
    assert caught.value.backend == "up"


def chunk(delta: dict[str, Any] | None = None, **extra: Any) -> bytes:
    choices = [] if delta is None else [{"index": 0, "delta": delta, **extra}]
    return json.dumps({"id": "c", "object": "chat.completion.chunk", "choices": choices}).encode()


@pytest.mark.parametrize(
    ("data", "content"),
    [
        pytest.param(chunk({"role": "assistant", "content": ""}), False, id="role-only"),
        pytest.param(chunk({"content": "hi"}), True, id="text"),
        pytest.param(chunk({"reasoning_content": "hm"}), True, id="reasoning"),
        pytest.param(chunk({"reasoning": "hm"}), True, id="reasoning-openrouter"),
        pytest.param(chunk({"refusal": "no"}), True, id="refusal"),
        pytest.param(chunk({"tool_calls": [{"index": 0, "id": "c1"}]}), True, id="tool-call"),
        pytest.param(chunk({"function_call": {"name": "f"}}), True, id="legacy-function"),
        pytest.param(chunk({"audio": {"data": "AA"}}), True, id="audio"),
        pytest.param(chunk({"content": None, "tool_calls": []}), False, id="empty-values"),
        pytest.param(chunk({"a_new_kind": "x"}), False, id="unknown-delta-field"),
        pytest.param(chunk({}, finish_reason="stop"), False, id="finish-only"),
        pytest.param(b'{"choices":[],"prompt_filter_results":[{}]}', False, id="azure-filter"),
        pytest.param(b'{"no_choices_at_all":1}', False, id="no-choices"),
    ],
)
def test_chunk_content_is_the_commit_point(data: bytes, content: bool) -> None:
    (item,) = OpenAIChunkReader("up").feed(data)
    assert item == RawChatChunk(data, content=content)


def test_usage_and_done() -> None:
    reader = OpenAIChunkReader("up")
    reader.feed(chunk({"content": "hi"}, finish_reason="stop"))
    usage = b'{"choices":[],"usage":{"prompt_tokens":2,"completion_tokens":1}}'
    assert reader.feed(usage) == [RawChatChunk(usage, input_tokens=2, output_tokens=1)]
    assert reader.feed(b"[DONE]") == [RawChatChunk(DONE, done=True)]
    assert reader.feed(chunk({"content": "late"})) == []  # after [DONE]: nothing relayed
    assert reader.finish() == []


def test_usage_asked_for_us_rides_on_done() -> None:
    reader = OpenAIChunkReader("up", hide_usage=True)
    reader.feed(chunk({}, finish_reason="length"))
    assert reader.feed(b'{"choices":[],"usage":{"prompt_tokens":2,"completion_tokens":1}}') == []
    assert reader.feed(b" [DONE] ") == [
        RawChatChunk(DONE, done=True, input_tokens=2, output_tokens=1)
    ]


def test_end_of_body_after_a_finish_is_complete() -> None:
    reader = OpenAIChunkReader("up")
    reader.feed(chunk({}, finish_reason="a_new_reason"))
    assert reader.finish() == [RawChatChunk(DONE, done=True)]


@pytest.mark.parametrize(
    ("frames", "kind", "message"),
    [
        pytest.param([chunk({"content": "hi"})], FailureKind.INCOMPLETE, "finished", id="cut"),
        pytest.param(
            [chunk({"content": "hi"}), b"[DONE]"],
            FailureKind.INCOMPLETE,
            "finished",
            id="done-early",
        ),
        pytest.param([b"{not json"], FailureKind.INVALID_RESPONSE, "not a chat", id="garbage"),
        pytest.param(
            [b'{"error":{"message":"overloaded","type":"server_error"}}'],
            FailureKind.STREAM_ERROR,
            "overloaded",
            id="in-band-error",
        ),
    ],
)
def test_stream_failures(frames: list[bytes], kind: FailureKind, message: str) -> None:
    reader = OpenAIChunkReader("up")
    with pytest.raises(UpstreamError) as caught:
        for frame in frames:
            reader.feed(frame)
        reader.finish()
    assert caught.value.kind is kind
    assert message in caught.value.message


# ------------------------------------------------------------------ any chunking, the same relay


_text = st.text(st.characters(codec="utf-8", exclude_characters="\r\n"), max_size=8)
_delta = st.one_of(
    st.fixed_dictionaries({"content": _text}),
    st.fixed_dictionaries({"reasoning_content": _text}),
    st.fixed_dictionaries(
        {"tool_calls": st.just([{"index": 0, "function": {"arguments": '{"a"'}}])}
    ),
    st.fixed_dictionaries({"vendor": st.integers()}),
)


@st.composite
def openai_streams(draw: st.DrawFn) -> tuple[list[bytes], bool]:
    """Chunk payloads of one stream (role first, then deltas, a finish, maybe usage), and
    whether it ends with [DONE]."""
    payloads = [chunk({"role": "assistant", "content": ""})]
    payloads += [chunk(d) for d in draw(st.lists(_delta, max_size=12))]
    payloads.append(chunk({}, finish_reason=draw(st.sampled_from(["stop", "length", "x"]))))
    if draw(st.booleans()):
        payloads.append(b'{"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":7}}')
    return payloads, draw(st.booleans())


def relayed(body: bytes, cuts: list[int], hide_usage: bool) -> list[RawChatChunk]:
    decoder, reader = SSEDecoder(), OpenAIChunkReader("up", hide_usage=hide_usage)
    out: list[RawChatChunk] = []
    edges = [0, *sorted(c % (len(body) + 1) for c in cuts), len(body)]
    for start, end in itertools.pairwise(edges):
        for frame in decoder.feed(body[start:end]):
            out += reader.feed(frame.data)
    for frame in decoder.close():
        out += reader.feed(frame.data)
    return out + reader.finish()


@settings(max_examples=200, deadline=None)
@given(
    stream=openai_streams(),
    cuts=st.lists(st.integers(min_value=0), max_size=20),
    crlf=st.booleans(),
    hide_usage=st.booleans(),
)
def test_any_chunking_relays_the_same_frames(
    stream: tuple[list[bytes], bool], cuts: list[int], crlf: bool, hide_usage: bool
) -> None:
    payloads, with_done = stream
    end = b"\r\n" if crlf else b"\n"
    frames = [b"data: " + p + end + end for p in payloads]
    if with_done:
        frames.append(b"data: [DONE]" + end + end)
    body = b"".join(frames)
    whole = relayed(body, [], hide_usage)
    assert relayed(body, cuts, hide_usage) == whole
    usage_chunk = payloads[-1].startswith(b'{"choices":[],"usage"')
    kept = payloads[:-1] if hide_usage and usage_chunk else payloads
    assert [item.data for item in whole] == [*kept, DONE]  # byte for byte, [DONE] last
    assert whole[-1].done and not any(item.done for item in whole[:-1])
    tokens = [(i.input_tokens, i.output_tokens) for i in whole if i.input_tokens is not None]
    assert tokens == ([(5, 7)] if usage_chunk else [])  # counted once, hidden or not
    assert [item.content for item in whole] == [*map(has_content, kept), False]


def has_content(payload: bytes) -> bool:
    """The oracle: a delta with a non-empty content, reasoning or tool-call value."""
    choices = json.loads(payload)["choices"]
    return any(
        c["delta"].get(k) for c in choices for k in ("content", "reasoning_content", "tool_calls")
    )
