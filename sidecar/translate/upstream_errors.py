"""Upstream HTTP error responses -> ``UpstreamError`` (kind STATUS), without IO.

How it works
------------
The body is parsed once as JSON (if it is JSON) and the upstream's own message is taken from the
first shape that matches:

=================================================  ============================
shape                                              who sends it
=================================================  ============================
``{"error": {"message": ..., "type": ...}}``       OpenAI, Azure, OpenRouter, LM Studio
``{"type": "error", "error": {"type", "message"}}``  Anthropic (its ``type`` is kept)
``{"object": "error", "message": ...}``            vLLM
``{"message": ...}``                               vLLM (newer), many others
``{"error": "text"}``                              Ollama, llama.cpp
``{"detail": "text" | [...]}``                     FastAPI-based servers
``[{"error": {...}}]``                             Gemini's OpenAI endpoint (a list)
plain text                                         proxies, load balancers
HTML or empty                                      a generic "upstream returned HTTP 502"
=================================================  ============================

The message is truncated to 500 characters and anything that looks like an API key
(``sk-...``, ``Bearer ...``) is masked: upstream messages sometimes echo the key they rejected,
and errors travel to callers and logs. Request headers are never looked at.

``parse_retry_after`` reads ``retry-after-ms`` (OpenAI, milliseconds) or ``retry-after``
(seconds, or an HTTP date, which needs the caller's ``now`` since this module reads no clock).
``error_from_azure`` adds Azure OpenAI's two specifics: a 400 whose ``error.code`` is
``content_filter`` (or ``innererror.code`` ``ResponsibleAIPolicyViolation``) says that the
content filter refused the request, and a 429 without ``retry-after(-ms)`` takes its wait from
the ``x-ratelimit-reset-*`` headers (``parse_ratelimit_reset``).
``backend`` is left empty: the backend that called fills it in.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import orjson

from sidecar.errors import TYPE_STATUS, FailureKind, UpstreamError

__all__ = [
    "error_from_anthropic",
    "error_from_azure",
    "error_from_openai",
    "parse_ratelimit_reset",
    "parse_retry_after",
    "upstream_message",
]

MAX_MESSAGE = 500

_SECRET = re.compile(r"\b(sk-[A-Za-z0-9_\-*]{6,}|Bearer\s+[A-Za-z0-9._\-~+/=]{6,})")


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is not None:
        return value
    for key, val in headers.items():  # a plain dict with other capitalisation
        if key.lower() == name:
            return val
    return None


def parse_retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds to wait from ``retry-after-ms`` / ``retry-after``; None when absent or unusable.

    An HTTP-date value is only understood when ``now`` (a Unix timestamp) is given.
    """
    millis = _header(headers, "retry-after-ms")
    if millis is not None:
        try:
            value = float(millis) / 1000.0
        except ValueError:
            value = -1.0
        if 0.0 <= value < float("inf"):
            return value
    text = _header(headers, "retry-after")
    if text is None:
        return None
    text = text.strip()
    try:
        seconds = float(text)
    except ValueError:
        if now is None:
            return None
        import email.utils  # here, not at the top: it loads socket, which translate keeps out

        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            return None
        return max(when.timestamp() - now, 0.0)
    if 0.0 <= seconds < float("inf"):
        return seconds
    return None


def _mask(match: re.Match[str]) -> str:
    return "Bearer ***" if match.group(0).startswith("Bearer") else "sk-***"


def _clean(message: str) -> str:
    message = _SECRET.sub(_mask, message.strip())
    if len(message) > MAX_MESSAGE:
        message = message[: MAX_MESSAGE - 1] + "…"
    return message


def _from_json(value: Any) -> tuple[str | None, str | None]:
    """(message, Anthropic error type) found in a decoded error body."""
    if isinstance(value, list) and value:
        value = value[0]
    if not isinstance(value, dict):
        return None, None
    error = value.get("error")
    if isinstance(error, dict):
        message = error.get("message")
        kind = error.get("type") if value.get("type") == "error" else None
        if isinstance(message, str):
            return message, kind if isinstance(kind, str) else None
        if isinstance(message, (dict, list)):
            return orjson.dumps(message).decode(), None
    if isinstance(error, str):
        return error, None
    message = value.get("message")
    if isinstance(message, str):
        return message, None
    detail = value.get("detail")
    if isinstance(detail, str):
        return detail, None
    if isinstance(detail, list):
        return orjson.dumps(detail).decode(), None
    return None, None


def upstream_message(status: int, body: bytes) -> tuple[str, str | None]:
    """The upstream's error message (cleaned) and its Anthropic error type when it has one."""
    message: str | None = None
    error_type: str | None = None
    text = body.strip()
    if text[:1] in (b"{", b"["):
        try:
            message, error_type = _from_json(orjson.loads(text))
        except orjson.JSONDecodeError:
            message = None
    elif text and text[:1] != b"<":
        message = text[: MAX_MESSAGE * 4].decode("utf-8", "replace")
    message = _clean(message) if message else ""
    if not message:
        message = f"upstream returned HTTP {status}"
    return message, error_type


# How upstreams say "the prompt does not fit the context window". OpenAI and Azure send a code;
# vLLM, llama.cpp, Ollama and Anthropic only say it in the message, so the known phrasings are
# listed here, at the boundary, and nowhere else looks at message text.
_OVERFLOW_CODES = frozenset({"context_length_exceeded", "string_above_max_length"})
_OVERFLOW_TEXT = re.compile(
    r"maximum context length|context length exceeded|context window|prompt is too long"
    r"|exceeds the context|input is too long|too many tokens",
    re.IGNORECASE,
)


def _is_context_overflow(status: int, body: bytes, message: str) -> bool:
    if status not in (400, 413, 422):
        return False
    if any(code.encode() in body for code in _OVERFLOW_CODES):
        return True
    return _OVERFLOW_TEXT.search(message) is not None


def error_from_openai(
    status: int, body: bytes, headers: Mapping[str, str], *, now: float | None = None
) -> UpstreamError:
    """The error for an OpenAI-compatible upstream's non-2xx response."""
    message, _ = upstream_message(status, body)
    return UpstreamError(
        message,
        kind=FailureKind.STATUS,
        status=status,
        retry_after=parse_retry_after(headers, now),
        context_overflow=_is_context_overflow(status, body, message),
    )


def error_from_anthropic(
    status: int, body: bytes, headers: Mapping[str, str], *, now: float | None = None
) -> UpstreamError:
    """The error for Anthropic's non-2xx response; its error ``type`` is kept when known."""
    message, error_type = upstream_message(status, body)
    return UpstreamError(
        message,
        kind=FailureKind.STATUS,
        status=status,
        retry_after=parse_retry_after(headers, now),
        error_type=error_type if error_type in TYPE_STATUS else None,
        context_overflow=_is_context_overflow(status, body, message),
    )


# Go-style durations as OpenAI-compatible servers send them in x-ratelimit-reset-*: "1s",
# "6m0s", "20ms", "1h2m3.5s"; a plain number is seconds.
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def _duration(text: str) -> float | None:
    text = text.strip()
    try:
        value = float(text)
    except ValueError:
        parts = _DURATION_PART.findall(text)
        if not parts or "".join(n + u for n, u in parts) != text:
            return None
        value = sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)
    return value if 0.0 <= value < float("inf") else None


def parse_ratelimit_reset(headers: Mapping[str, str]) -> float | None:
    """Seconds until the exhausted rate limit resets, from ``x-ratelimit-reset-{requests,tokens}``.

    A limit whose ``x-ratelimit-remaining-*`` is 0 is the one that was hit; when none says so,
    the longer of the resets given. None when neither header is usable.
    """
    resets: dict[str, float] = {}
    for limit in ("requests", "tokens"):
        text = _header(headers, f"x-ratelimit-reset-{limit}")
        value = _duration(text) if text is not None else None
        if value is not None:
            resets[limit] = value
    if not resets:
        return None
    hit = [v for k, v in resets.items() if _header(headers, f"x-ratelimit-remaining-{k}") == "0"]
    return max(hit or resets.values())


def _azure_codes(body: bytes) -> tuple[object, object]:
    """``error.code`` and ``error.innererror.code`` of an Azure error body, when it has them."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None, None
    error = doc.get("error") if isinstance(doc, dict) else None
    if not isinstance(error, dict):
        return None, None
    inner = error.get("innererror")
    return error.get("code"), inner.get("code") if isinstance(inner, dict) else None


def error_from_azure(
    status: int, body: bytes, headers: Mapping[str, str], *, now: float | None = None
) -> UpstreamError:
    """The error for Azure OpenAI's non-2xx response (see the module docstring)."""
    message, _ = upstream_message(status, body)
    if status == 400 and (b"content_filter" in body or b"ResponsibleAIPolicyViolation" in body):
        code, inner = _azure_codes(body)
        if code == "content_filter" or inner == "ResponsibleAIPolicyViolation":
            message = f"Azure OpenAI's content filter refused the request: {message}"
    retry_after = parse_retry_after(headers, now)
    if status == 429 and retry_after is None:
        retry_after = parse_ratelimit_reset(headers)
    return UpstreamError(
        message,
        kind=FailureKind.STATUS,
        status=status,
        retry_after=retry_after,
        context_overflow=_is_context_overflow(status, body, message),
    )
