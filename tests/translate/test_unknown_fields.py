"""Naming the request fields the model does not know (what a translating backend drops)."""

from __future__ import annotations

import orjson
import pytest

from sidecar.translate.unknown_fields import unknown_fields

BASE = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}
CASES = [
    pytest.param(BASE, [], id="nothing-unknown"),
    pytest.param(
        {**BASE, "context_management": {"edits": []}, "output_config": {"effort": "low"}},
        ["context_management"],
        id="claude-code-top-level",
    ),
    pytest.param(
        {**BASE, "tools": [{"name": "a", "input_schema": {}, "eager_input_streaming": True}]},
        ["tools[].eager_input_streaming"],
        id="tool-field",
    ),
    pytest.param(
        {**BASE, "thinking": {"type": "enabled", "budget_tokens": 9, "future": 1}},
        ["thinking.future"],
        id="thinking-field",
    ),
]


@pytest.mark.parametrize(("body", "expected"), CASES)
def test_unknown_fields(body: dict[str, object], expected: list[str]) -> None:
    assert unknown_fields(orjson.dumps(body)) == expected


def test_not_json_names_nothing() -> None:
    assert unknown_fields(b"{nope") == []
