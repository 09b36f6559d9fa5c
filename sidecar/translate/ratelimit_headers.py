"""The rate-limit state an upstream announces in its response headers, read into one value.

Pure: headers and the current wall-clock time in, an ``Announced`` out. Formats read:

- OpenAI, Azure OpenAI, vLLM and other OpenAI-compatible servers:
  ``x-ratelimit-remaining-requests`` / ``-tokens`` and ``x-ratelimit-reset-requests`` /
  ``-tokens`` as Go-style durations (``1s``, ``6m0s``, ``20ms``, ``1h2m3.5s``) or plain seconds;
  Azure's ``x-ratelimit-reset`` (seconds) is read as a reset for both.
- Anthropic: ``anthropic-ratelimit-requests-remaining`` / ``-tokens-remaining`` (and the
  ``input-tokens`` / ``output-tokens`` variants: the lower one wins) with ``...-reset`` as an
  RFC 3339 time.
- ``retry-after-ms`` (milliseconds) and ``retry-after`` (seconds, or an HTTP date).

A value that does not parse is ignored (an unknown value is never a failure). Only the names
above are looked at; ``RATE_LIMIT_PREFIXES`` lets the HTTP layer copy just those.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from datetime import UTC, datetime

RATE_LIMIT_PREFIXES = ("x-ratelimit-", "anthropic-ratelimit-", "retry-after")

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|us|µs|ns|h|m|s)")
_UNIT = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}


@dataclasses.dataclass(frozen=True, slots=True)
class Announced:
    """What an answer said about the target's limits; None: not said. Resets in seconds from
    the time the answer was read."""

    remaining_requests: int | None = None
    remaining_tokens: int | None = None
    reset_requests: float | None = None
    reset_tokens: float | None = None
    retry_after: float | None = None

    @property
    def empty(self) -> bool:
        return self == _NOTHING


_NOTHING = Announced()


def parse_duration(text: str) -> float | None:
    """``6m0s``, ``20ms``, ``1.5s``, ``2`` (seconds) → seconds; None when it is none of these."""
    text = text.strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        pass
    else:
        return value if value >= 0 else None
    pos, total = 0, 0.0
    for match in _DURATION.finditer(text):
        if match.start() != pos:
            return None
        total += float(match.group(1)) * _UNIT[match.group(2)]
        pos = match.end()
    return total if pos == len(text) and pos > 0 else None


def _reset_at(text: str, now: float) -> float | None:
    """An RFC 3339 time (Anthropic's resets) as seconds from ``now``; else a duration."""
    text = text.strip()
    if text[:4].isdigit() and "T" in text:
        try:
            when = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return None
        if when.tzinfo is None:
            return None
        return max(0.0, when.timestamp() - now)
    return parse_duration(text)


def _int(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(text.strip())
    except ValueError:
        return None


def _min(*values: int | None) -> int | None:
    known = [v for v in values if v is not None]
    return min(known) if known else None


def _retry_after(get: dict[str, str], now: float) -> float | None:
    millis = get.get("retry-after-ms")
    if millis is not None:
        try:
            value = float(millis)
        except ValueError:
            value = -1.0
        if value >= 0:
            return value / 1000
    text = get.get("retry-after")
    if text is None:
        return None
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:  # an HTTP date (IMF-fixdate); email.utils would pull in socket
        when = datetime.strptime(text.strip(), "%a, %d %b %Y %H:%M:%S GMT").replace(tzinfo=UTC)
    except ValueError:
        return None
    return max(0.0, when.timestamp() - now)


def says_exhausted(headers: Iterable[tuple[str, str]]) -> bool:
    """Whether any ``remaining`` header is 0 (or less): the cheap test done on every answer
    before the full read, which only then matters (a success's retry-after is not a block)."""
    for name, value in headers:
        if "remaining" in name:
            text = value.strip()
            if text == "0" or text.startswith("-"):
                return True
    return False


def read_rate_limits(headers: Iterable[tuple[str, str]], now: float) -> Announced:
    """The limits announced in ``headers`` (lower-case names); ``now`` is ``time.time()``."""
    get = {name: value for name, value in headers}
    if not get:
        return _NOTHING
    a = "anthropic-ratelimit-"
    reset_requests = get.get("x-ratelimit-reset-requests")
    reset_tokens = get.get("x-ratelimit-reset-tokens")
    both = get.get("x-ratelimit-reset")  # Azure
    req_reset = _reset_at(reset_requests or both or get.get(a + "requests-reset", ""), now)
    tok_text = reset_tokens or both or get.get(a + "tokens-reset")
    tok_text = tok_text or get.get(a + "input-tokens-reset") or get.get(a + "output-tokens-reset")
    return Announced(
        remaining_requests=_min(
            _int(get.get("x-ratelimit-remaining-requests")),
            _int(get.get(a + "requests-remaining")),
        ),
        remaining_tokens=_min(
            _int(get.get("x-ratelimit-remaining-tokens")),
            _int(get.get(a + "tokens-remaining")),
            _int(get.get(a + "input-tokens-remaining")),
            _int(get.get(a + "output-tokens-remaining")),
        ),
        reset_requests=req_reset,
        reset_tokens=_reset_at(tok_text, now) if tok_text else None,
        retry_after=_retry_after(get, now),
    )
