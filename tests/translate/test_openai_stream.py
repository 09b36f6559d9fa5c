"""OpenAI stream chunks -> Anthropic events: golden cases, the state table, property tests."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import msgspec
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sidecar.errors import FailureKind, UpstreamError
from sidecar.model import StreamEvent
from sidecar.translate.openai_stream import (
    TRANSITIONS,
    Input,
    OpenAIStreamTranslator,
    State,
)
from sidecar.translate.sse import SSEDecoder

from .golden import cases, check
from .stream_checks import assert_valid, sdk_message

MESSAGE_ID = "msg_test01"
MODEL = "claude-sonnet-4-5"


def _payload(chunk: Any) -> bytes:
    return chunk.encode() if isinstance(chunk, str) else orjson.dumps(chunk)


def run(chunks: list[Any], *, finish: bool = True, input_tokens: int = 0) -> list[StreamEvent]:
    translator = OpenAIStreamTranslator(
        message_id=MESSAGE_ID, model=MODEL, input_tokens=input_tokens
    )
    events: list[StreamEvent] = []
    for chunk in chunks:
        events += translator.feed(_payload(chunk))
    if finish:
        events += translator.finish()
    return events


@pytest.mark.parametrize(("path", "case"), cases("stream"))
def test_golden(path: Path, case: dict[str, Any]) -> None:
    translator = OpenAIStreamTranslator(
        message_id=MESSAGE_ID, model=MODEL, input_tokens=case["input_tokens"]
    )
    events: list[StreamEvent] = []
    error: dict[str, Any] | None = None
    try:
        for chunk in case["chunks"]:
            events += translator.feed(_payload(chunk))
        if case["finish"]:
            events += translator.finish()
    except UpstreamError as exc:
        error = {"kind": exc.kind.value, "status": exc.status}
        if exc.kind is not FailureKind.INVALID_RESPONSE:
            error["message"] = exc.message
        with pytest.raises(UpstreamError):  # the failed state sticks
            translator.finish()
    assert_valid(events, complete=error is None)
    expected: dict[str, Any] = {"expected": msgspec.to_builtins(events)}
    if error is None:
        final = sdk_message(events)
        expected["final"] = final.model_dump(mode="json", exclude_none=True)
    else:
        expected["error"] = error
    check(path, case, expected)


# --------------------------------------------------------------------------- the state table


def test_table_has_no_way_out_of_done_or_failed() -> None:
    for (state, _), target in TRANSITIONS.items():
        if state is State.DONE:
            assert target is State.DONE
        assert state is not State.FAILED
    for event in (Input.DONE_MARKER, Input.END):
        assert (State.IDLE, event) not in TRANSITIONS
        assert (State.STREAMING, event) not in TRANSITIONS


def test_states_along_a_normal_stream() -> None:
    t = OpenAIStreamTranslator(message_id=MESSAGE_ID, model=MODEL)
    states = [t.state]
    t.feed(b'{"choices":[{"delta":{"content":"a"}}]}')
    states.append(t.state)
    t.feed(b'{"choices":[{"delta":{},"finish_reason":"stop"}]}')
    states.append(t.state)
    t.feed(b'{"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":1}}')
    states.append(t.state)
    assert t.feed(b"[DONE]")
    states.append(t.state)
    assert states == [State.IDLE, State.STREAMING, State.FINISHED, State.FINISHED, State.DONE]
    assert t.finish() == []
    assert t.feed(b"[DONE]") == []


def test_message_delta_waits_for_usage() -> None:
    t = OpenAIStreamTranslator(message_id=MESSAGE_ID, model=MODEL)
    t.feed(b'{"choices":[{"delta":{"content":"a"}}]}')
    after_finish = t.feed(b'{"choices":[{"delta":{},"finish_reason":"stop"}]}')
    assert after_finish == []  # nothing final yet: usage comes in the next chunk
    t.feed(b'{"choices":[],"usage":{"prompt_tokens":7,"completion_tokens":3}}')
    events = t.feed(b"[DONE]")
    delta = msgspec.to_builtins(events[-2])
    assert delta["usage"] == {"output_tokens": 3, "input_tokens": 7}


def test_str_payloads_are_accepted() -> None:
    t = OpenAIStreamTranslator(message_id=MESSAGE_ID, model=MODEL)
    events = t.feed('{"choices":[{"delta":{"content":"é"},"finish_reason":"stop"}]}')
    events += t.feed("[DONE]")
    assert_valid(events)


# --------------------------------------------------------------------------- property tests

_texts = st.text(min_size=1, max_size=12)
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-1000, 1000) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)
_args = st.dictionaries(st.text(max_size=6), _json_values, max_size=4)


@st.composite
def _fragments(draw: st.DrawFn, text: str) -> list[str]:
    """``text`` cut at random places (pieces may be empty)."""
    cuts = sorted(draw(st.lists(st.integers(0, len(text)), max_size=4)))
    bounds = [0, *cuts, len(text)]
    return [text[a:b] for a, b in itertools.pairwise(bounds)]


@st.composite
def _streams(draw: st.DrawFn) -> tuple[list[Any], dict[str, Any]]:
    """A random but well-formed upstream stream and what its translation must contain."""
    chunks: list[Any] = []
    text = ""
    thinking_parts: list[str] = []
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["content", "reasoning_content", "reasoning", "refusal"]))
        piece = draw(_texts)
        chunks.append({"choices": [{"index": 0, "delta": {kind: piece}}]})
        if kind in ("content", "refusal"):
            text += piece
        else:
            thinking_parts.append(piece)
    refused = any("refusal" in c["choices"][0]["delta"] for c in chunks)
    calls = draw(st.lists(_args, max_size=3))
    style = draw(st.sampled_from(["index", "index0", "noindex", "empty_ids", "interleaved"]))
    pieces: list[list[dict[str, Any]]] = []
    for n, args in enumerate(calls):
        frags = draw(_fragments(orjson.dumps(args).decode()))
        deltas: list[dict[str, Any]] = []
        for k, frag in enumerate(frags):
            d: dict[str, Any] = {"function": {"arguments": frag}}
            if style != "noindex":
                d["index"] = 0 if style == "index0" else n
            if k == 0:
                d["id"] = f"call_{n}"
                d["type"] = "function"
                d["function"]["name"] = f"tool_{n}"
            elif style == "empty_ids":
                d["id"] = ""
                d["function"]["name"] = ""
            deltas.append(d)
        pieces.append(deltas)
    if style == "interleaved":
        order = draw(st.permutations([n for n, p in enumerate(pieces) for _ in p]))
        cursors = [0] * len(pieces)
        merged: list[dict[str, Any]] = []
        for n in order:  # keeps each call's own order and its first fragment first
            merged.append(pieces[n][cursors[n]])
            cursors[n] += 1
    else:
        merged = [d for p in pieces for d in p]
    for d in merged:
        chunks.append({"choices": [{"index": 0, "delta": {"tool_calls": [d]}}]})
    finish = draw(st.sampled_from(["stop", "length", "tool_calls"]))
    chunks.append({"choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
    usage = draw(st.none() | st.integers(0, 500))
    if usage is not None:
        chunks.append({"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": usage}})
    if draw(st.booleans()):
        chunks.append("[DONE]")
    expect = {
        "text": text,
        "thinking": "".join(thinking_parts),
        # blocks come in the order the calls started
        "tools": [
            (d["id"], d["function"]["name"], calls[int(d["id"][5:])]) for d in merged if d.get("id")
        ],
        # No usage from the upstream: the translator estimates, ~4 characters a token.
        "output_tokens": usage
        if usage is not None
        else (
            len(text)
            + len("".join(thinking_parts))
            + sum(len(d["function"].get("arguments", "")) for d in merged)
            + 3
        )
        // 4,
        "refused": refused,
        "finish": finish,
    }
    return chunks, expect


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_streams())
def test_any_wellformed_stream_translates_to_a_valid_sdk_message(
    stream: tuple[list[Any], dict[str, Any]],
) -> None:
    chunks, expect = stream
    events = run(chunks)
    assert_valid(events)
    message = sdk_message(events)
    text = "".join(b.text for b in message.content if b.type == "text")
    thinking = "".join(b.thinking for b in message.content if b.type == "thinking")
    tools = [(b.id, b.name, b.input) for b in message.content if b.type == "tool_use"]
    assert text == expect["text"]
    assert thinking == expect["thinking"]
    assert tools == expect["tools"]
    assert message.usage.output_tokens == expect["output_tokens"]
    if expect["finish"] == "length":
        assert message.stop_reason == "max_tokens"
    elif expect["refused"]:
        assert message.stop_reason == "refusal"
    elif expect["tools"]:
        assert message.stop_reason == "tool_use"
    else:
        assert message.stop_reason == "end_turn"


def _sse(chunks: list[Any]) -> bytes:
    return b"".join(b"data: " + _payload(c) + b"\n\n" for c in chunks)


@settings(max_examples=200, deadline=None)
@given(_streams(), st.data())
def test_sse_chunking_does_not_change_the_events(
    stream: tuple[list[Any], dict[str, Any]], data: st.DataObject
) -> None:
    chunks, _ = stream
    raw = _sse(chunks)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(raw)), max_size=12)))
    bounds = [0, *cuts, len(raw)]
    decoder = SSEDecoder()
    translator = OpenAIStreamTranslator(message_id=MESSAGE_ID, model=MODEL)
    events: list[StreamEvent] = []
    for a, b in itertools.pairwise(bounds):
        for frame in decoder.feed(raw[a:b]):
            events += translator.feed(frame.data)
    for frame in decoder.close():
        events += translator.feed(frame.data)
    events += translator.finish()
    assert events == run(chunks)


@settings(max_examples=200, deadline=None)
@given(_streams(), st.integers(0, 40))
def test_a_stream_cut_anywhere_before_finish_reason_is_incomplete(
    stream: tuple[list[Any], dict[str, Any]], cut: int
) -> None:
    chunks, _ = stream
    finish_at = next(
        i
        for i, c in enumerate(chunks)
        if isinstance(c, dict) and c["choices"] and c["choices"][0].get("finish_reason")
    )
    head = chunks[: min(cut, finish_at)]
    translator = OpenAIStreamTranslator(message_id=MESSAGE_ID, model=MODEL)
    events: list[StreamEvent] = []
    for chunk in head:
        events += translator.feed(_payload(chunk))
    assert_valid(events, complete=False)
    with pytest.raises(UpstreamError) as info:
        translator.finish()
    assert info.value.kind is FailureKind.INCOMPLETE


def test_fragments_for_a_stopped_call_are_dropped_and_noted() -> None:
    notes: list[str] = []
    t = OpenAIStreamTranslator(message_id=MESSAGE_ID, model=MODEL, notes=notes)
    events: list[StreamEvent] = []
    for chunk in (
        {
            "choices": [
                {
                    "delta": {
                        "tool_calls": [
                            {"index": 0, "id": "a", "function": {"name": "f", "arguments": "{}"}}
                        ]
                    }
                }
            ]
        },
        {"choices": [{"delta": {"content": "text stops the tool block"}}]},
        {"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"arguments": " "}}]}}]},
        {"choices": [{"delta": {}, "finish_reason": "tool_calls"}]},
    ):
        events += t.feed(orjson.dumps(chunk))
    events += t.finish()
    assert_valid(events)
    assert notes == ["tool_use.input", "usage.estimated"]
    assert sdk_message(events).content[0].type == "tool_use"
