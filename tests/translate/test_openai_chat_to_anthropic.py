"""OpenAI Chat Completions request -> Anthropic request: golden cases plus targeted checks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar.errors import InvalidRequestError
from sidecar.model import MessagesRequest, request_decoder
from sidecar.translate.openai_chat_to_anthropic import (
    BUDGET_FOR_EFFORT,
    AnthropicOptions,
    ChatRequest,
    to_anthropic_request,
)
from sidecar.translate.openai_request import reasoning_effort_for

from .golden import cases, check

CASES = cases("openai_door/request")


def _body(case: dict[str, Any]) -> bytes:
    if "body_text" in case:
        return str(case["body_text"]).encode()
    return orjson.dumps(case["request"])


def _as_json(result: ChatRequest) -> dict[str, Any]:
    return {
        "request": msgspec.to_builtins(result.request),
        "stream": result.stream,
        "include_usage": result.include_usage,
    }


@pytest.mark.parametrize(("path", "case"), CASES)
def test_golden(path: Path, case: dict[str, Any]) -> None:
    notes: list[str] = []
    options = AnthropicOptions(**case["options"])
    try:
        result = to_anthropic_request(_body(case), notes=notes, options=options)
    except InvalidRequestError as exc:
        check(path, case, {"error": {"message": exc.message, "field": exc.field}})
        return
    encoded = msgspec.json.encode(result.request)
    assert request_decoder.decode(encoded) == result.request  # a valid Anthropic request
    check(path, case, {"expected": _as_json(result), "notes": notes})


@pytest.mark.parametrize(("path", "case"), [c for c in CASES if "request" in c.values[1]])
def test_parsed_dict_gives_the_same_result(path: Path, case: dict[str, Any]) -> None:
    options = AnthropicOptions(**case["options"])
    outcomes = []
    for body in (_body(case), case["request"]):
        notes: list[str] = []
        try:
            outcomes.append(
                (_as_json(to_anthropic_request(body, notes=notes, options=options)), notes)
            )
        except InvalidRequestError as exc:
            outcomes.append(({"message": exc.message, "field": exc.field}, []))
    assert outcomes[0] == outcomes[1]


@pytest.mark.parametrize("effort", sorted(set(BUDGET_FOR_EFFORT) - {"minimal", "xhigh", "max"}))
def test_budget_maps_back_to_its_effort(effort: str) -> None:
    assert reasoning_effort_for(BUDGET_FOR_EFFORT[effort]) == effort


@pytest.mark.parametrize(
    ("default", "effort", "max_tokens", "budget"),
    [
        (4096, None, 4096, None),
        (8192, None, 8192, None),
        (4096, "low", 4096 + 2048, 2048),
        (1000, "high", 1000 + 16384, 16384),
    ],
    ids=["default", "custom-default", "low-adds-its-budget", "high-adds-its-budget"],
)
def test_default_max_tokens_leaves_room_to_think(
    default: int, effort: str | None, max_tokens: int, budget: int | None
) -> None:
    body: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
    if effort is not None:
        body["reasoning_effort"] = effort
    notes: list[str] = []
    req = to_anthropic_request(
        body, notes=notes, options=AnthropicOptions(default_max_tokens=default)
    ).request
    assert req.max_tokens == max_tokens
    assert getattr(req.thinking, "budget_tokens", None) == budget
    assert "max_tokens.default" in notes


def test_notes_are_appended_once_to_the_callers_list() -> None:
    notes = ["earlier"]
    body = {
        "model": "m",
        "max_tokens": 5,
        "messages": [
            {"role": "user", "name": "a", "content": "x"},
            {"role": "user", "name": "b", "content": "y"},
        ],
        "seed": 1,
    }
    to_anthropic_request(body, notes=notes)
    assert notes == ["earlier", "messages.name", "seed"]


def test_result_is_a_frozen_request() -> None:
    result = to_anthropic_request(
        b'{"model":"gpt-4o","messages":[{"role":"user","content":"x"}],"max_tokens":3}', notes=[]
    )
    assert isinstance(result.request, MessagesRequest)
    assert result.request.model == "gpt-4o"  # the caller's model: the engine routes on it
    with pytest.raises(AttributeError):
        result.request.model = "other"  # type: ignore[misc]


# --------------------------------------------------------------------------- never a crash

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 3) | st.floats(-3, 3) | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
_TEXT = st.text(max_size=5)
_ARGS = st.sampled_from(["{}", '{"a": 1}', "", "{bad", "[1]", '"{}"'])
_FUNCTION = st.fixed_dictionaries({"name": st.sampled_from(["f", "g"]), "arguments": _ARGS})
_TOOL = st.fixed_dictionaries(
    {
        "type": st.sampled_from(["function", "function", "custom"]),
        "function": st.just({"name": "f"}),
    }
)
# Each field: plausible values and, now and then, anything at all.
_FIELDS = {
    "max_tokens": st.integers(-1, 5000),
    "max_completion_tokens": st.integers(0, 5000),
    "temperature": st.floats(0, 2.5),
    "top_p": st.floats(0, 1),
    "top_k": st.integers(0, 50),
    "stop": st.one_of(_TEXT, st.lists(_TEXT, max_size=3)),
    "stream": st.booleans(),
    "stream_options": st.just({"include_usage": True}),
    "tools": st.lists(_TOOL, max_size=2),
    "tool_choice": st.sampled_from(
        [
            "auto",
            "none",
            "required",
            "any",
            {"type": "function", "function": {"name": "f"}},
            {"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": []}},
        ]
    ),
    "parallel_tool_calls": st.booleans(),
    "reasoning_effort": st.sampled_from(["none", "minimal", "low", "high", "max", "new"]),
    "response_format": st.sampled_from(
        [
            {"type": "text"},
            {"type": "json_object"},
            {"type": "json_schema"},
            {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}},
        ]
    ),
    "user": _TEXT,
    "n": st.integers(0, 3),
    "seed": st.integers(0, 3),
}
_PART = st.one_of(
    st.builds(lambda t: {"type": "text", "text": t}, _TEXT),
    st.builds(
        lambda u: {"type": "image_url", "image_url": {"url": u}},
        st.sampled_from(["data:image/png;base64,AAAA", "data:x", "https://a/b.png", "ftp://x"]),
    ),
    st.builds(
        lambda d: {"type": "file", "file": d},
        st.sampled_from([{"file_data": "JVBE"}, {"file_id": "f"}, {}, {"file_data": 3}]),
    ),
    st.builds(lambda t: {"type": "refusal", "refusal": t}, _TEXT),
    st.just({"type": "input_audio", "input_audio": {"data": "", "format": "wav"}}),
    st.dictionaries(st.sampled_from(["type", "text"]), _JSON, max_size=2),
)
_MESSAGE = st.fixed_dictionaries(
    {
        "role": st.sampled_from(["user", "user", "assistant", "tool", "system", "developer"]),
        "content": st.one_of(_TEXT, st.lists(_PART, max_size=3), _TEXT, st.none(), _JSON),
    },
    optional={
        "tool_calls": st.lists(
            st.fixed_dictionaries(
                {
                    "id": st.sampled_from(["c1", "c2", "c 3"]),
                    "type": st.just("function"),
                    "function": _FUNCTION,
                }
            ),
            max_size=2,
        ),
        "tool_call_id": st.sampled_from(["c1", "c2", "c 3"]),
        "name": st.text(max_size=3),
        "function_call": _FUNCTION,
    },
)


@st.composite
def _extras(draw: st.DrawFn) -> dict[str, Any]:
    names = draw(st.lists(st.sampled_from(sorted(_FIELDS)), max_size=5, unique=True))
    return {
        n: draw(st.one_of(_FIELDS[n], _JSON) if draw(st.booleans()) else _FIELDS[n]) for n in names
    }


@settings(max_examples=400, deadline=None)
@given(messages=st.lists(_MESSAGE, max_size=5), extra=_extras())
def test_any_body_translates_or_is_a_400_naming_the_problem(
    messages: list[dict[str, Any]], extra: dict[str, Any]
) -> None:
    body = {"model": "m", "messages": messages, **extra}
    notes: list[str] = []
    try:
        result = to_anthropic_request(orjson.dumps(body), notes=notes)
    except InvalidRequestError as exc:
        assert exc.message
        assert exc.field is None or exc.message.startswith(exc.field + ": ")
        return
    encoded = msgspec.json.encode(result.request)
    assert request_decoder.decode(encoded) == result.request
    assert result.request.messages
    assert len(notes) == len(set(notes))
