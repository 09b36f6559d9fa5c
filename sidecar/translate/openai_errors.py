"""The sidecar's errors as OpenAI shows them: ``{"error": {message, type, param, code}}``.

The OpenAI door answers failures in OpenAI's own shape so the OpenAI SDKs raise their usual
exceptions (they choose the class by HTTP status: 400 ``BadRequestError``, 401
``AuthenticationError``, 403 ``PermissionDeniedError``, 404 ``NotFoundError``, 429
``RateLimitError``, >= 500 ``InternalServerError``) and retry where they would against OpenAI
(408, 409, 429, >= 500). The table, by the Anthropic error type every ``SidecarError`` carries:

    Anthropic type          status  OpenAI type             code
    invalid_request_error   400     invalid_request_error   null (param: the field)
    authentication_error    401     invalid_request_error   invalid_api_key
    billing_error           429     insufficient_quota      insufficient_quota
    permission_error        403     invalid_request_error   permission_denied
    not_found_error         404     invalid_request_error   not_found
    request_too_large       413     invalid_request_error   request_too_large
    rate_limit_error        429     requests                rate_limit_exceeded
    api_error               500     server_error            null
    timeout_error           504     server_error            timeout
    overloaded_error        503     server_error            overloaded
    anything else           500     server_error            null

OpenAI sends ``invalid_request_error`` for its 401s and 404s and ``insufficient_quota`` as a 429;
an overloaded engine is its 503. In a stream that has started, the same body is sent in band
(``sse_error``) and no ``[DONE]`` follows: the openai SDK raises ``APIError`` on a frame whose
``error`` is set, while a stream that just stops is taken as complete.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from sidecar.errors import ChainExhaustedError, InvalidRequestError, SidecarError

__all__ = ["OPENAI_ERRORS", "OpenAIError", "openai_error", "sse_error"]

# Anthropic error type -> (HTTP status, OpenAI type, OpenAI code).
OPENAI_ERRORS: Mapping[str, tuple[int, str, str | None]] = {
    "invalid_request_error": (400, "invalid_request_error", None),
    "authentication_error": (401, "invalid_request_error", "invalid_api_key"),
    "billing_error": (429, "insufficient_quota", "insufficient_quota"),
    "permission_error": (403, "invalid_request_error", "permission_denied"),
    "not_found_error": (404, "invalid_request_error", "not_found"),
    "request_too_large": (413, "invalid_request_error", "request_too_large"),
    "rate_limit_error": (429, "requests", "rate_limit_exceeded"),
    "api_error": (500, "server_error", None),
    "timeout_error": (504, "server_error", "timeout"),
    "overloaded_error": (503, "server_error", "overloaded"),
}
_UNKNOWN = (500, "server_error", None)


@dataclass(frozen=True, slots=True)
class OpenAIError:
    """What the OpenAI door sends for an error: status, body, and ``Retry-After`` if known."""

    status: int
    body: dict[str, Any]
    retry_after: float | None = None


def _field(error: SidecarError) -> str | None:
    if isinstance(error, ChainExhaustedError):
        error = error.last
    return error.field if isinstance(error, InvalidRequestError) else None


def openai_error(error: SidecarError) -> OpenAIError:
    """The OpenAI status and error body for ``error`` (see the table in the module doc)."""
    status, kind, code = OPENAI_ERRORS.get(error.error_type, _UNKNOWN)
    body = {
        "error": {
            "message": error.message,
            "type": kind,
            "param": _field(error),
            "code": code,
        }
    }
    return OpenAIError(status=status, body=body, retry_after=error.retry_after)


def sse_error(error: SidecarError) -> bytes:
    """The in-band error frame for a stream already started (no ``[DONE]`` after it)."""
    return b"data: " + orjson.dumps(openai_error(error).body) + b"\n\n"
