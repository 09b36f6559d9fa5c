"""OpenAI Chat Completions request -> Anthropic request: golden cases plus targeted checks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import orjson
import pytest

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
