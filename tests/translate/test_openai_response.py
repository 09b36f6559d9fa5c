"""Chat Completions response body -> Anthropic Message: golden cases plus the finish map."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anthropic.types
import msgspec
import orjson
import pytest

from sidecar.errors import UpstreamError
from sidecar.translate.openai_response import (
    from_openai_response,
    map_finish_reason,
    parse_tool_arguments,
)

from .golden import cases, check

MESSAGE_ID = "msg_test01"
MODEL = "claude-sonnet-4-5"


def _body(case: dict[str, Any]) -> bytes:
    if "body_text" in case:
        return str(case["body_text"]).encode()
    return orjson.dumps(case["body"])


@pytest.mark.parametrize(("path", "case"), cases("response"))
def test_golden(path: Path, case: dict[str, Any]) -> None:
    notes: list[str] = []
    try:
        message = from_openai_response(_body(case), message_id=MESSAGE_ID, model=MODEL, notes=notes)
    except UpstreamError as exc:
        error = {"kind": exc.kind.value, "status": exc.status, "type": exc.error_type}
        if exc.status is not None or "body_text" not in case:
            error["message"] = exc.message
        check(path, case, {"error": error})
        return
    as_json = msgspec.to_builtins(message)
    anthropic.types.Message.model_validate(as_json)  # what the official SDK would accept
    check(path, case, {"expected": as_json, "notes": notes})


@pytest.mark.parametrize(
    ("finish", "stop"),
    [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("tool_calls", "tool_use"),
        ("function_call", "tool_use"),
        ("content_filter", "refusal"),
        ("eos", "end_turn"),
        (None, "end_turn"),
    ],
    ids=lambda v: str(v),
)
def test_map_finish_reason(finish: str | None, stop: str) -> None:
    assert map_finish_reason(finish) == stop


@pytest.mark.parametrize(
    ("arguments", "expected", "noted"),
    [
        (None, {}, False),
        ("", {}, False),
        ("  ", {}, False),
        ('{"a": 1}', {"a": 1}, False),
        ('```json\n{"a": 1}\n```', {"a": 1}, False),
        ('```\n{"a": 1}```', {"a": 1}, False),
        ('"{\\"a\\": 1}"', {"a": 1}, False),
        ('{"a": ', {}, True),
        ("[1]", {}, True),
        ("null", {}, True),
        ('"text"', {}, True),
    ],
    ids=[
        "none",
        "empty",
        "blank",
        "object",
        "fenced-json",
        "fenced-bare",
        "double-encoded",
        "truncated",
        "array",
        "null",
        "string",
    ],
)
def test_parse_tool_arguments(arguments: str | None, expected: dict[str, Any], noted: bool) -> None:
    notes: list[str] = []
    assert parse_tool_arguments(arguments, notes) == expected
    assert notes == (["tool_use.input"] if noted else [])
