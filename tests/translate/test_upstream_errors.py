"""Upstream error responses -> UpstreamError: golden bodies of each server, Retry-After."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from sidecar.errors import FailureKind
from sidecar.translate.upstream_errors import (
    error_from_anthropic,
    error_from_azure,
    error_from_openai,
    parse_ratelimit_reset,
    parse_retry_after,
)

from .golden import cases, check

MAPPERS = {
    "anthropic": error_from_anthropic,
    "azure": error_from_azure,
    "openai": error_from_openai,
}


@pytest.mark.parametrize(("path", "case"), cases("errors"))
def test_golden(path: Path, case: dict[str, Any]) -> None:
    body = case["body_text"].encode() if "body_text" in case else orjson.dumps(case["body"])
    convert = MAPPERS[case["backend"]]
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


OVERFLOW = [
    pytest.param(
        "openai",
        400,
        b'{"error": {"message": "This model\'s maximum context length is 8192 tokens.", '
        b'"code": "context_length_exceeded"}}',
        True,
        id="openai-code",
    ),
    pytest.param(
        "openai",
        400,
        b'{"object": "error", "message": "This model\'s maximum context length is 4096 tokens. '
        b'However, you requested 5000 tokens"}',
        True,
        id="vllm-text",
    ),
    pytest.param(
        "anthropic",
        400,
        b'{"type": "error", "error": {"type": "invalid_request_error", '
        b'"message": "prompt is too long: 210000 tokens > 200000 maximum"}}',
        True,
        id="anthropic-text",
    ),
    pytest.param(
        "openai", 400, b'{"error": {"message": "unknown parameter foo"}}', False, id="other-400"
    ),
    pytest.param(
        "openai", 500, b'{"error": {"message": "maximum context length"}}', False, id="not-a-400"
    ),
]


@pytest.mark.parametrize(("shape", "status", "body", "expected"), OVERFLOW)
def test_context_overflow_is_recognised(
    shape: str, status: int, body: bytes, expected: bool
) -> None:
    convert = error_from_openai if shape == "openai" else error_from_anthropic
    assert convert(status, body, {}).context_overflow is expected


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        pytest.param({}, None, id="none"),
        pytest.param({"x-ratelimit-reset-requests": "20ms"}, 0.02, id="milliseconds"),
        pytest.param({"x-ratelimit-reset-tokens": "1h2m3.5s"}, 3723.5, id="go-duration"),
        pytest.param({"x-ratelimit-reset-requests": "7"}, 7.0, id="plain-seconds"),
        pytest.param({"x-ratelimit-reset-requests": "soon"}, None, id="garbage"),
        pytest.param({"x-ratelimit-reset-requests": "1s2x"}, None, id="trailing-garbage"),
        pytest.param({"x-ratelimit-reset-requests": "-3"}, None, id="negative"),
        pytest.param(
            {"x-ratelimit-reset-requests": "1s", "x-ratelimit-reset-tokens": "30s"},
            30.0,
            id="none-exhausted-longest",
        ),
        pytest.param(
            {
                "x-ratelimit-reset-requests": "2s",
                "x-ratelimit-remaining-requests": "0",
                "x-ratelimit-reset-tokens": "30s",
                "x-ratelimit-remaining-tokens": "100",
            },
            2.0,
            id="the-exhausted-one",
        ),
    ],
)
def test_parse_ratelimit_reset(headers: dict[str, str], expected: float | None) -> None:
    assert parse_ratelimit_reset(headers) == expected
