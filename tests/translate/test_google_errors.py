"""``sidecar.translate.google_errors``: Google's error bodies (and Anthropic's, relayed by
Vertex) into ``UpstreamError``; which of them move on is tests/backends/test_vertex.py's."""

from __future__ import annotations

import orjson
import pytest

from sidecar.translate.google_errors import error_from_google, google_status


def google(status: int, name: str, message: str = "m") -> bytes:
    return orjson.dumps({"error": {"code": status, "message": message, "status": name}})


@pytest.mark.parametrize(
    ("status", "body", "error_type", "message"),
    [
        pytest.param(
            429,
            google(429, "RESOURCE_EXHAUSTED", "Quota exceeded"),
            "rate_limit_error",
            "Quota exceeded",
            id="resource-exhausted",
        ),
        pytest.param(503, google(503, "UNAVAILABLE"), "overloaded_error", "m", id="unavailable"),
        pytest.param(
            400,
            google(400, "FAILED_PRECONDITION"),
            "invalid_request_error",
            "m",
            id="failed-precondition",
        ),
        pytest.param(
            401, google(401, "UNAUTHENTICATED"), "authentication_error", "m", id="unauthenticated"
        ),
        pytest.param(
            413,
            google(413, "UNKNOWN"),
            "request_too_large",
            "m",
            id="unknown-the-http-status-decides",
        ),
        pytest.param(500, b"[" + google(500, "INTERNAL") + b"]", "api_error", "m", id="a-list"),
        pytest.param(
            529,
            b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}',
            "overloaded_error",
            "Overloaded",
            id="anthropic-shaped",
        ),
        pytest.param(
            502, b"<html>bad gateway</html>", "api_error", "upstream returned HTTP 502", id="html"
        ),
        pytest.param(
            403,
            google(403, "PERMISSION_DENIED", "denied for Bearer ya29.secret-token-value"),
            "permission_error",
            "denied for Bearer ***",
            id="a-token-in-the-message-is-masked",
        ),
    ],
)
def test_error_from_google(status: int, body: bytes, error_type: str, message: str) -> None:
    error = error_from_google(status, body, {})
    assert (error.status, error.error_type, error.message) == (status, error_type, message)


def test_retry_after_is_read() -> None:
    error = error_from_google(429, google(429, "RESOURCE_EXHAUSTED"), {"retry-after": "3"})
    assert error.retry_after == 3.0


@pytest.mark.parametrize(
    ("body", "status"),
    [
        pytest.param(google(429, "RESOURCE_EXHAUSTED"), "RESOURCE_EXHAUSTED", id="google"),
        pytest.param(b'{"error": {"message": "x"}}', None, id="no-status"),
        pytest.param(b'{"error": "text"}', None, id="error-string"),
        pytest.param(b"not json", None, id="text"),
        pytest.param(b"{broken", None, id="broken-json"),
        pytest.param(b"[]", None, id="empty-list"),
    ],
)
def test_google_status(body: bytes, status: str | None) -> None:
    assert google_status(body) == status
