"""Anthropic Message / events -> Chat Completions: golden cases, the state table, the openai
SDK's view (types, accumulator, streaming client) and property tests."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import httpx2
import msgspec
import openai
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sidecar.errors import UpstreamError
from sidecar.model import Message, Ping, StreamEvent
from sidecar.translate.anthropic_to_openai_chat import (
    FINISH_REASONS,
    SSE_DONE,
    TRANSITIONS,
    AnthropicToOpenAIChunks,
    State,
    finish_reason_for,
    sse_chunk,
    to_chat_completion,
)

from .golden import cases, check
from .openai_checks import sdk_accumulate, sdk_completion
from .stream_checks import sdk_message

COMPLETION_ID = "chatcmpl-test01"
CREATED = 1_700_000_000
MODEL = "gpt-4o"  # the caller's model name


def _events(raw: list[dict[str, Any]]) -> list[StreamEvent]:
    return [msgspec.convert(e, StreamEvent) for e in raw]  # type: ignore[arg-type]


def _as_message(sdk: Any) -> Message:
    """The anthropic SDK's accumulated message as ours."""
    return msgspec.convert(sdk.model_dump(mode="json", exclude_none=True), Message)


def essence(message: dict[str, Any]) -> dict[str, Any]:
    """What a message says: text, reasoning, tool calls with their arguments parsed."""
    calls = [
        (c["id"], c["function"]["name"], json.loads(c["function"]["arguments"] or "{}"))
        for c in message.get("tool_calls") or ()
    ]
    return {
        "content": message.get("content") or "",
        "reasoning_content": message.get("reasoning_content") or "",
        "tool_calls": calls,
    }


def translator(*, include_usage: bool, notes: list[str] | None = None) -> AnthropicToOpenAIChunks:
    return AnthropicToOpenAIChunks(
        completion_id=COMPLETION_ID,
        created=CREATED,
        model=MODEL,
        include_usage=include_usage,
        notes=notes,
    )


def completion(message: Message, notes: list[str] | None = None) -> dict[str, Any]:
    return to_chat_completion(
        message,
        completion_id=COMPLETION_ID,
        created=CREATED,
        model=MODEL,
        notes=notes if notes is not None else [],
    )


# --------------------------------------------------------------------------- responses


@pytest.mark.parametrize(("path", "case"), cases("openai_door/response"))
def test_response_golden(path: Path, case: dict[str, Any]) -> None:
    notes: list[str] = []
    body = completion(msgspec.convert(case["message"], Message), notes)
    sdk_completion(body)
    check(path, case, {"expected": body, "notes": notes})


@pytest.mark.parametrize(
    ("stop_reason", "finish", "noted"),
    [
        ("end_turn", "stop", None),
        ("stop_sequence", "stop", None),
        ("max_tokens", "length", None),
        ("model_context_window_exceeded", "length", None),
        ("tool_use", "tool_calls", None),
        ("refusal", "content_filter", None),
        ("pause_turn", "stop", "stop_reason.pause_turn"),
        ("something_new", "stop", "stop_reason"),
        (None, "stop", "stop_reason"),
    ],
    ids=lambda v: str(v),
)
def test_finish_reasons(stop_reason: str | None, finish: str, noted: str | None) -> None:
    notes: list[str] = []
    assert finish_reason_for(stop_reason, notes) == finish
    assert notes == ([noted] if noted else [])
    if noted is None:
        assert FINISH_REASONS[stop_reason or ""] == finish


# --------------------------------------------------------------------------- streams


def run(events: list[StreamEvent], *, include_usage: bool) -> tuple[list[dict[str, Any]], Any]:
    t = translator(include_usage=include_usage)
    chunks: list[dict[str, Any]] = []
    error: dict[str, Any] | None = None
    try:
        for event in events:
            chunks += t.feed(event)
    except UpstreamError as exc:
        error = {"kind": exc.kind.value, "type": exc.error_type, "message": exc.message}
        assert t.state is State.FAILED
        with pytest.raises(UpstreamError):  # the failed state sticks
            t.feed(events[0])
    else:
        assert t.done
    return chunks, (error, t.notes)


@pytest.mark.parametrize(("path", "case"), cases("openai_door/stream"))
def test_stream_golden(path: Path, case: dict[str, Any]) -> None:
    events = _events(case["events"])
    chunks, (error, notes) = run(events, include_usage=case["include_usage"])
    expected: dict[str, Any] = {"expected": chunks, "notes": notes}
    if error is not None:
        expected["error"] = error
    else:
        final = sdk_accumulate(chunks)
        expected["final"] = final
        # The stream and the whole answer agree: the same message, the same completion.
        # (pings are not message events for the anthropic SDK's accumulator)
        whole = completion(_as_message(sdk_message([e for e in events if not isinstance(e, Ping)])))
        assert essence(final["choices"][0]["message"]) == essence(whole["choices"][0]["message"])
        assert final["choices"][0]["finish_reason"] == whole["choices"][0]["finish_reason"]
        if case["include_usage"]:
            assert final["usage"] == whole["usage"]
    check(path, case, expected)


def test_table_has_no_way_out_of_done_and_no_failed_state() -> None:
    for (state, _), target in TRANSITIONS.items():
        assert state is not State.FAILED and target is not State.FAILED
        if state is State.DONE:
            assert target is State.DONE


def test_too_many_blocks_is_an_error() -> None:
    t = AnthropicToOpenAIChunks(completion_id="c", created=0, model="m", max_blocks=2)
    events = _events(
        [
            {
                "type": "message_start",
                "message": {"type": "message", "id": "m", "model": "m", "content": []},
            },
            *(
                {
                    "type": "content_block_start",
                    "index": i,
                    "content_block": {"type": "text", "text": ""},
                }
                for i in range(3)
            ),
        ]
    )
    with pytest.raises(UpstreamError, match="too many blocks"):
        for event in events:
            t.feed(event)


# --------------------------------------------------------------------------- the openai SDK


def sdk_stream(body: bytes) -> Any:
    """The official client reading ``body`` as the SSE answer of a streamed create()."""

    def answer(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=body)

    client = openai.OpenAI(
        api_key="test",
        base_url="http://127.0.0.1:9/v1",  # never dialled: the transport answers
        http_client=httpx2.Client(transport=httpx2.MockTransport(answer)),
        max_retries=0,
    )
    return client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "x"}], stream=True
    )


def _golden_chunks(name: str) -> list[dict[str, Any]]:
    case = next(c.values[1] for c in cases("openai_door/stream") if c.id == name)
    chunks, _ = run(_events(case["events"]), include_usage=case["include_usage"])
    return chunks


@pytest.mark.parametrize("name", ["text", "tool_calls", "thinking_then_text", "cache_usage"])
def test_sdk_client_reads_the_sse_frames(name: str) -> None:
    chunks = _golden_chunks(name)
    body = b"".join(sse_chunk(c) for c in chunks) + SSE_DONE
    got = [c.model_dump(mode="json", exclude_unset=True) for c in sdk_stream(body)]
    assert got == chunks


def test_sdk_client_raises_on_the_in_band_error_frame() -> None:
    from sidecar.errors import OverloadedError
    from sidecar.translate.openai_errors import sse_error

    chunks = _golden_chunks("error_event")
    body = b"".join(sse_chunk(c) for c in chunks) + sse_error(OverloadedError("Overloaded"))
    seen = []
    with pytest.raises(openai.APIError) as info:
        for chunk in sdk_stream(body):
            seen.append(chunk.model_dump(mode="json", exclude_unset=True))
    assert seen == chunks  # everything before the error reached the caller
    assert info.value.message == "Overloaded"
    assert info.value.body == {
        "message": "Overloaded",
        "type": "server_error",
        "param": None,
        "code": "overloaded",
    }


def test_sdk_client_takes_a_stream_that_just_stops_as_complete() -> None:
    """Why the error frame is needed: without it a cut stream looks finished to the SDK."""
    chunks = _golden_chunks("error_event")
    body = b"".join(sse_chunk(c) for c in chunks)  # no [DONE], no error
    assert len(list(sdk_stream(body))) == len(chunks)


# --------------------------------------------------------------------------- properties

_TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=6)
_ARGS = st.dictionaries(
    st.text(alphabet="abcxyz", min_size=1, max_size=4),
    st.one_of(st.integers(-5, 5), st.text(max_size=4), st.booleans()),
    max_size=3,
)
_BLOCK = st.one_of(
    st.tuples(st.just("text"), st.lists(_TEXT, min_size=1, max_size=4)),
    st.tuples(st.just("thinking"), st.lists(_TEXT, min_size=1, max_size=4)),
    st.tuples(st.just("tool"), _ARGS, st.lists(st.integers(0, 40), max_size=4)),
)


def _block_events(i: int, block: tuple[Any, ...]) -> list[dict[str, Any]]:
    kind = block[0]
    if kind == "tool":
        text = json.dumps(block[1])
        cuts = sorted({min(c, len(text)) for c in block[2]} | {0, len(text)})
        parts = [text[a:b] for a, b in itertools.pairwise(cuts)]
        start = {"type": "tool_use", "id": f"toolu_{i}", "name": f"f{i}", "input": {}}
        deltas = [{"type": "input_json_delta", "partial_json": p} for p in parts]
    elif kind == "text":
        start = {"type": "text", "text": ""}
        deltas = [{"type": "text_delta", "text": t} for t in block[1]]
    else:
        start = {"type": "thinking", "thinking": ""}
        deltas = [{"type": "thinking_delta", "thinking": t} for t in block[1]]
        deltas.append({"type": "signature_delta", "signature": "sig"})
    return [
        {"type": "content_block_start", "index": i, "content_block": start},
        *({"type": "content_block_delta", "index": i, "delta": d} for d in deltas),
        {"type": "content_block_stop", "index": i},
    ]


@st.composite
def anthropic_streams(draw: st.DrawFn) -> list[dict[str, Any]]:
    blocks = draw(st.lists(_BLOCK, max_size=4))
    stop = draw(st.sampled_from(["end_turn", "max_tokens", "tool_use", "stop_sequence"]))
    usage = {"input_tokens": draw(st.integers(0, 99)), "output_tokens": 1}
    if draw(st.booleans()):
        usage["cache_read_input_tokens"] = draw(st.integers(0, 99))
    events: list[dict[str, Any]] = [
        {
            "type": "message_start",
            "message": {
                "type": "message",
                "id": "msg_p",
                "model": "m",
                "content": [],
                "usage": usage,
            },
        }
    ]
    for i, block in enumerate(blocks):
        events += _block_events(i, block)
        if draw(st.booleans()):
            events.append({"type": "ping"})
    events.append(
        {
            "type": "message_delta",
            "delta": {"stop_reason": stop, "stop_sequence": None},
            "usage": {"output_tokens": draw(st.integers(0, 999))},
        }
    )
    events.append({"type": "message_stop"})
    return events


def _batches(events: list[StreamEvent], cuts: list[int]) -> list[list[StreamEvent]]:
    points = sorted({c % (len(events) + 1) for c in cuts} | {0, len(events)})
    return [events[a:b] for a, b in itertools.pairwise(points)]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=anthropic_streams(), cuts=st.lists(st.integers(0, 200), max_size=8))
def test_any_batching_gives_the_same_answer_as_the_sdk_sees_it(
    raw: list[dict[str, Any]], cuts: list[int]
) -> None:
    events = _events(raw)
    one = translator(include_usage=True)
    single = [chunk for event in events for chunk in one.feed(event)]
    many = translator(include_usage=True)
    batched = [chunk for batch in _batches(events, cuts) for chunk in many.feed_many(batch)]
    assert one.done and many.done
    assert len(batched) <= len(single)
    final = sdk_accumulate(single)  # every chunk validated by the SDK's types on the way
    assert sdk_accumulate(batched) == final
    # Tool calls are numbered 0, 1, 2... in order; the first delta of each names it.
    firsts = [
        call
        for chunk in single
        for choice in chunk["choices"]
        for call in choice["delta"].get("tool_calls", ())
        if "id" in call
    ]
    assert [c["index"] for c in firsts] == list(range(len(firsts)))
    assert all(c["type"] == "function" and c["function"]["arguments"] == "" for c in firsts)
    # The stream says what the whole answer says.
    pings = [e for e in events if not isinstance(e, Ping)]
    whole = completion(_as_message(sdk_message(pings)))
    assert essence(final["choices"][0]["message"]) == essence(whole["choices"][0]["message"])
    assert final["choices"][0]["finish_reason"] == whole["choices"][0]["finish_reason"]
    assert final["usage"] == whole["usage"]
