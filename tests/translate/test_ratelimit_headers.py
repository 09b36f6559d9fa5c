"""The rate-limit headers of each provider, read into one ``Announced`` value."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from sidecar.translate.ratelimit_headers import (
    Announced,
    parse_duration,
    read_rate_limits,
    says_exhausted,
)

NOW = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        pytest.param("2s", 2.0, id="seconds"),
        pytest.param("6m0s", 360.0, id="minutes-seconds"),
        pytest.param("20ms", 0.02, id="millis"),
        pytest.param("1h2m3.5s", 3723.5, id="hours"),
        pytest.param("0.5", 0.5, id="plain-number"),
        pytest.param("17", 17.0, id="plain-integer"),
        pytest.param("", None, id="empty"),
        pytest.param("soon", None, id="words"),
        pytest.param("2s later", None, id="trailing"),
        pytest.param("-1", None, id="negative"),
    ],
)
def test_durations(text: str, seconds: float | None) -> None:
    value = parse_duration(text)
    assert value == (None if seconds is None else pytest.approx(seconds))


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        pytest.param(
            {
                "x-ratelimit-limit-requests": "60",
                "x-ratelimit-remaining-requests": "0",
                "x-ratelimit-remaining-tokens": "149984",
                "x-ratelimit-reset-requests": "1s",
                "x-ratelimit-reset-tokens": "6m0s",
            },
            Announced(0, 149984, 1.0, 360.0),
            id="openai",
        ),
        pytest.param(
            {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset": "7"},
            Announced(0, None, 7.0, 7.0),
            id="azure-reset",
        ),
        pytest.param(
            {
                "anthropic-ratelimit-requests-remaining": "0",
                "anthropic-ratelimit-requests-reset": "2026-12-01T12:00:30Z",
                "anthropic-ratelimit-input-tokens-remaining": "500",
                "anthropic-ratelimit-output-tokens-remaining": "20",
                "anthropic-ratelimit-tokens-reset": "2026-12-01T12:01:00+00:00",
            },
            Announced(0, 20, 30.0, 60.0),
            id="anthropic-rfc3339",
        ),
        pytest.param(
            {"anthropic-ratelimit-requests-reset": "2026-12-01T11:00:00Z"},
            Announced(None, None, 0.0, None),
            id="anthropic-reset-in-the-past",
        ),
        pytest.param(
            {"retry-after-ms": "1500", "retry-after": "9"}, Announced(retry_after=1.5), id="ms-wins"
        ),
        pytest.param({"retry-after": "3"}, Announced(retry_after=3.0), id="retry-after"),
        pytest.param(
            {"retry-after": "Tue, 01 Dec 2026 12:00:10 GMT"},
            Announced(retry_after=10.0),
            id="retry-after-date",
        ),
        pytest.param(
            {
                "x-ratelimit-remaining-requests": "many",
                "x-ratelimit-reset-requests": "later",
                "retry-after": "whenever",
                "anthropic-ratelimit-requests-reset": "2026-13-45T99:00:00Z",
            },
            Announced(),
            id="unparsable-ignored",
        ),
        pytest.param({}, Announced(), id="none"),
    ],
)
def test_providers(headers: dict[str, str], expected: Announced) -> None:
    got = read_rate_limits(headers.items(), NOW)
    assert got == expected
    assert got.empty is (expected == Announced())


@pytest.mark.parametrize(
    ("headers", "exhausted"),
    [
        pytest.param({"x-ratelimit-remaining-requests": "0"}, True, id="openai-requests"),
        pytest.param({"x-ratelimit-remaining-tokens": " 0 "}, True, id="openai-tokens"),
        pytest.param({"anthropic-ratelimit-output-tokens-remaining": "0"}, True, id="anthropic"),
        pytest.param({"x-ratelimit-remaining-requests": "-3"}, True, id="negative"),
        pytest.param({"x-ratelimit-remaining-requests": "10"}, False, id="some-left"),
        pytest.param({"x-ratelimit-remaining-requests": "00x"}, False, id="not-a-number"),
        pytest.param({"retry-after": "5"}, False, id="retry-after-alone"),
        pytest.param({}, False, id="none"),
    ],
)
def test_the_cheap_test_before_a_full_read(headers: dict[str, str], exhausted: bool) -> None:
    assert says_exhausted(headers.items()) is exhausted
    if exhausted:  # and the full read agrees
        got = read_rate_limits(headers.items(), NOW)
        assert 0 in (got.remaining_requests, got.remaining_tokens) or any(
            v is not None and v < 0 for v in (got.remaining_requests, got.remaining_tokens)
        )
