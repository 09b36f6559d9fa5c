"""Google Cloud error responses (Vertex AI) -> ``UpstreamError``, without IO.

Vertex answers its own errors in Google's shape (AIP-193)::

    {"error": {"code": 429, "message": "Quota exceeded ...", "status": "RESOURCE_EXHAUSTED"}}

(sometimes inside a one-element list), and relays Claude's own errors in Anthropic's shape
(``{"type": "error", "error": {"type": "overloaded_error", ...}}``). Both are read by
``upstream_errors``; this module adds the Anthropic error type that Google's ``status`` names,
so that the caller sees ``rate_limit_error`` for RESOURCE_EXHAUSTED whatever the HTTP status.
Whether the engine moves on still follows the HTTP status (429 and 5xx move on; 400
INVALID_ARGUMENT, 403 PERMISSION_DENIED, 404 NOT_FOUND stop), as for every other upstream.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from sidecar.errors import UpstreamError

from .upstream_errors import error_from_anthropic

__all__ = ["GOOGLE_STATUS_TYPES", "error_from_google"]

# google.rpc.Code names -> Anthropic error types.
GOOGLE_STATUS_TYPES: Mapping[str, str] = {
    "INVALID_ARGUMENT": "invalid_request_error",
    "FAILED_PRECONDITION": "invalid_request_error",
    "OUT_OF_RANGE": "invalid_request_error",
    "UNAUTHENTICATED": "authentication_error",
    "PERMISSION_DENIED": "permission_error",
    "NOT_FOUND": "not_found_error",
    "RESOURCE_EXHAUSTED": "rate_limit_error",
    "UNAVAILABLE": "overloaded_error",
    "DEADLINE_EXCEEDED": "timeout_error",
    "INTERNAL": "api_error",
}  # UNKNOWN and the rest: the HTTP status decides, as for any upstream


def google_status(body: bytes) -> str | None:
    """The ``error.status`` of a Google error body, if it is one."""
    text = body.strip()
    if text[:1] not in (b"{", b"["):
        return None
    try:
        value: Any = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    if isinstance(value, list) and value:
        value = value[0]
    error = value.get("error") if isinstance(value, dict) else None
    status = error.get("status") if isinstance(error, dict) else None
    return status if isinstance(status, str) else None


def error_from_google(
    status: int, body: bytes, headers: Mapping[str, str], *, now: float | None = None
) -> UpstreamError:
    """The error for a Google Cloud API's non-2xx response (Google or Anthropic body)."""
    error = error_from_anthropic(status, body, headers, now=now)
    google = google_status(body)
    if google is not None and google in GOOGLE_STATUS_TYPES:
        error.error_type = GOOGLE_STATUS_TYPES[google]
    return error
