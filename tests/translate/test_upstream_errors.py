"""Upstream error responses -> UpstreamError: golden bodies of each server, Retry-After."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from sidecar.errors import FailureKind
from sidecar.translate.upstream_errors import (
    error_from_anthropic,
    error_from_openai,
    parse_retry_after,
)

from .golden import cases, check


@pytest.mark.parametrize(("path", "case"), cases("errors"))
def test_golden(path: Path, case: dict[str, Any]) -> None:
    body = case["body_text"].encode() if "body_text" in case else orjson.dumps(case["body"])
    convert = error_from_anthropic if case["backend"] == "anthropic" else error_from_openai
    error = convert(case["status"], body, case["headers"], now=case.get("now"))
    assert error.kind is FailureKind.STATUS
    assert error.backend == ""
    assert len(error.message) <= 500
    check(
        path,
        case,
        {
            "expected": {
                "message": error.message,
                "status": error.status,
                "type": error.error_type,
                "retry_after": error.retry_after,
            }
        },
    )


@pytest.mark.parametrize(
    ("headers", "now", "expected"),
    [
        ({}, None, None),
        ({"retry-after": "5"}, None, 5.0),
        ({"retry-after": " 1.5 "}, None, 1.5),
        ({"Retry-After": "5"}, None, 5.0),
        ({"retry-after-ms": "250"}, None, 0.25),
        ({"retry-after-ms": "250", "retry-after": "9"}, None, 0.25),
        ({"retry-after-ms": "x", "retry-after": "9"}, None, 9.0),
        ({"retry-after": "-1"}, None, None),
        ({"retry-after": "inf"}, None, None),
        ({"retry-after": "nan"}, None, None),
        ({"retry-after": "Wed, 21 Oct 2015 07:28:30 GMT"}, None, None),
        ({"retry-after": "Wed, 21 Oct 2015 07:28:30 GMT"}, 1445412500.0, 10.0),
        ({"retry-after": "Wed, 21 Oct 2015 07:28:30 GMT"}, 1445412600.0, 0.0),
        ({"retry-after": "Wed, 21 Oct 2015 07:28:30"}, 1445412500.0, None),
        ({"retry-after": "not a date"}, 1445412500.0, None),
    ],
    ids=[
        "absent",
        "seconds",
        "fraction-spaces",
        "capitalised",
        "ms",
        "ms-wins",
        "bad-ms",
        "negative",
        "inf",
        "nan",
        "date-no-now",
        "date",
        "date-past",
        "date-no-zone",
        "garbage",
    ],
)
def test_parse_retry_after(
    headers: dict[str, str], now: float | None, expected: float | None
) -> None:
    assert parse_retry_after(headers, now) == expected
