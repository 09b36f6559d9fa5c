"""Anthropic request -> Chat Completions body: golden cases plus targeted checks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest

from sidecar.errors import InvalidRequestError
from sidecar.model import MessagesRequest
from sidecar.translate.openai_request import (
    OpenAIOptions,
    reasoning_effort_for,
    safe_tool_id,
    to_openai_request,
)

from .golden import cases, check


def _request(raw: dict[str, Any]) -> MessagesRequest:
    return msgspec.convert(raw, MessagesRequest)


@pytest.mark.parametrize(("path", "case"), cases("request"))
def test_golden(path: Path, case: dict[str, Any]) -> None:
    notes: list[str] = []
    options = OpenAIOptions(**case["options"])
    try:
        body = to_openai_request(
            _request(case["request"]),
            case["model"],
            stream=case["stream"],
            options=options,
            notes=notes,
        )
    except InvalidRequestError as exc:
        check(path, case, {"error": {"message": exc.message, "field": exc.field}})
        return
    check(path, case, {"expected": body, "notes": notes})


@pytest.mark.parametrize(
    ("budget", "effort"),
    [
        (0, "low"),
        (1024, "low"),
        (4095, "low"),
        (4096, "medium"),
        (16383, "medium"),
        (16384, "high"),
        (100_000, "high"),
    ],
    ids=lambda v: str(v),
)
def test_reasoning_effort_thresholds(budget: int, effort: str) -> None:
    assert reasoning_effort_for(budget) == effort


@pytest.mark.parametrize(
    ("tool_id", "kept"),
    [
        ("toolu_01A09q90qw90lq917835lq9", True),
        ("call_abc-DEF_123", True),
        ("a" * 64, True),
        ("a" * 65, False),
        ("call.abc", False),
        ("call:1", False),
        ("", False),
        ("é", False),
    ],
    ids=["anthropic", "openai", "64-chars", "65-chars", "dot", "colon", "empty", "non-ascii"],
)
def test_safe_tool_id(tool_id: str, kept: bool) -> None:
    safe = safe_tool_id(tool_id)
    assert (safe == tool_id) is kept
    assert safe == safe_tool_id(tool_id)  # deterministic
    if not kept:
        assert safe.startswith("toolu_")
        assert len(safe) <= 64


def test_notes_are_not_repeated() -> None:
    req = _request(
        {
            "model": "m",
            "max_tokens": 1,
            "system": [{"type": "text", "text": "a", "cache_control": {"type": "ephemeral"}}],
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "x", "cache_control": {"type": "ephemeral"}}
                    ],
                }
            ],
        }
    )
    notes = ["cache_control"]
    to_openai_request(req, "m", stream=False, options=OpenAIOptions(), notes=notes)
    assert notes == ["cache_control"]


def test_request_is_not_mutated_and_output_is_json_ready() -> None:
    raw = {
        "model": "m",
        "max_tokens": 5,
        "tools": [{"name": "f", "input_schema": {"type": "object"}}],
        "messages": [
            {"role": "user", "content": "go"},
            {
                "role": "assistant",
                "content": [
                    {"type": "tool_use", "id": "t1", "name": "f", "input": {"a": [1, {"b": None}]}}
                ],
            },
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1"}]},
        ],
    }
    req = _request(raw)
    before = msgspec.json.encode(req)
    body = to_openai_request(req, "up", stream=True, options=OpenAIOptions(), notes=[])
    assert msgspec.json.encode(req) == before
    assert msgspec.json.decode(msgspec.json.encode(body)) == body
    assert body["messages"][1]["tool_calls"][0]["function"]["arguments"] == '{"a":[1,{"b":null}]}'
