"""One error tree for the whole sidecar.

Every error knows how each surface shows it: its Anthropic error ``type``, the HTTP status the
Anthropic API uses for that type, and the gRPC status code (by name, so this module imports no
gRPC). Upstream failures also carry what the engine needs to decide whether to move on: a
``FailureKind`` and, for HTTP failures, the upstream status and ``Retry-After``.

    SidecarError
    ├── RequestError              the caller's request is wrong: never retried, never moves on
    │   ├── InvalidRequestError   400 invalid_request_error    INVALID_ARGUMENT
    │   ├── AuthenticationError   401 authentication_error     UNAUTHENTICATED
    │   ├── NotFoundError         404 not_found_error          NOT_FOUND
    │   └── RequestTooLargeError  413 request_too_large        RESOURCE_EXHAUSTED
    ├── UpstreamError             a backend failed; type and status follow the upstream's status
    │                             or the failure kind (connect, timeout, broken stream...)
    ├── DeadlineExceededError     504 timeout_error            DEADLINE_EXCEEDED (overall budget)
    ├── OverloadedError           529 overloaded_error         UNAVAILABLE (draining)
    │   └── LocalLimitError       529 overloaded_error         RESOURCE_EXHAUSTED (the sidecar's
    │                             own limits: concurrency, a backend's connection pool)
    └── InternalError             500 api_error                INTERNAL (a bug of ours)

Foreign exceptions (the HTTP client's, msgspec, grpc) are mapped to these at the one place that
meets them.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence


class FailureKind(enum.Enum):
    """What went wrong in one upstream attempt; the engine classifies on this, never on text."""

    CONNECT = "connect"  # refused, reset, DNS: nothing was sent or nothing came back
    CONNECT_TIMEOUT = "connect_timeout"
    READ_TIMEOUT = "read_timeout"
    TTFT_TIMEOUT = "ttft_timeout"
    IDLE_TIMEOUT = "idle_timeout"
    STATUS = "status"  # the upstream answered with an HTTP error status
    STREAM_ERROR = "stream_error"  # an in-band error frame in a stream
    INCOMPLETE = "incomplete"  # a stream that ended without a proper finish
    INVALID_RESPONSE = "invalid_response"  # a body we could not parse
    AUTH = "auth"  # the upstream refused the sidecar's own credentials (expired, bad signature)
    CANCELLED = "cancelled"


# The Anthropic error types and the HTTP status the Anthropic API sends with each.
TYPE_STATUS: Mapping[str, int] = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}

# gRPC status code names by Anthropic error type (DESIGN.md, "The contract").
TYPE_GRPC_CODE: Mapping[str, str] = {
    "invalid_request_error": "INVALID_ARGUMENT",
    "authentication_error": "UNAUTHENTICATED",
    "billing_error": "FAILED_PRECONDITION",
    "permission_error": "PERMISSION_DENIED",
    "not_found_error": "NOT_FOUND",
    "request_too_large": "RESOURCE_EXHAUSTED",
    "rate_limit_error": "RESOURCE_EXHAUSTED",
    "api_error": "UNAVAILABLE",
    "timeout_error": "DEADLINE_EXCEEDED",
    "overloaded_error": "UNAVAILABLE",
}


def error_type_for_status(status: int) -> str:
    """The Anthropic error type for an upstream HTTP status."""
    match status:
        case 400 | 422:
            return "invalid_request_error"
        case 401:
            return "authentication_error"
        case 402:
            return "billing_error"
        case 403:
            return "permission_error"
        case 404:
            return "not_found_error"
        case 408 | 504:
            return "timeout_error"
        case 413:
            return "request_too_large"
        case 429:
            return "rate_limit_error"
        case 503 | 529:
            return "overloaded_error"
    return "api_error" if status >= 500 else "invalid_request_error"


class SidecarError(Exception):
    """Base of every error the sidecar reports to a caller."""

    error_type: str = "api_error"
    grpc_code_override: str | None = None

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        # Outcome metadata (backend, attempts, exhausted...) the engine attaches before raising,
        # for the surfaces to send as headers / trailing metadata with the error.
        self.metadata: list[tuple[str, str]] = []

    @property
    def http_status(self) -> int:
        return TYPE_STATUS.get(self.error_type, 500)

    @property
    def grpc_code(self) -> str:
        return self.grpc_code_override or TYPE_GRPC_CODE.get(self.error_type, "UNKNOWN")

    @property
    def retry_after(self) -> float | None:
        """Seconds the caller should wait before trying again, when known."""
        return None

    @property
    def reason(self) -> str:
        """A stable UPPER_SNAKE_CASE reason for gRPC ErrorInfo and metrics."""
        return self.error_type.upper()


class RequestError(SidecarError):
    """The caller's request is wrong; no backend is tried (again)."""


class InvalidRequestError(RequestError):
    error_type = "invalid_request_error"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class AuthenticationError(RequestError):
    error_type = "authentication_error"


class NotFoundError(RequestError):
    error_type = "not_found_error"


class RequestTooLargeError(RequestError):
    error_type = "request_too_large"


class DeadlineExceededError(SidecarError):
    error_type = "timeout_error"

    @property
    def reason(self) -> str:
        return "DEADLINE_EXCEEDED"


class OverloadedError(SidecarError):
    error_type = "overloaded_error"

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self._retry_after = retry_after

    @property
    def retry_after(self) -> float | None:
        return self._retry_after


class LocalLimitError(OverloadedError):
    """The sidecar itself is at a limit (its concurrency limit, a backend's connection pool).

    Not an upstream's failure: no breaker moves, no fallback is tried. The caller is told to
    come back shortly (``retry-after``); on gRPC it is RESOURCE_EXHAUSTED, as for a quota."""

    grpc_code_override = "RESOURCE_EXHAUSTED"

    def __init__(self, message: str, *, reason: str, retry_after: float = 1.0) -> None:
        super().__init__(message, retry_after=retry_after)
        self.limit = reason  # a bounded label: ``concurrency``, ``pool``

    @property
    def reason(self) -> str:
        return f"LOCAL_LIMIT_{self.limit.upper()}"


class InternalError(SidecarError):
    error_type = "api_error"
    grpc_code_override = "INTERNAL"


class UpstreamError(SidecarError):
    """One backend attempt failed. ``status`` is the upstream's HTTP status, if it sent one."""

    def __init__(
        self,
        message: str,
        *,
        kind: FailureKind,
        backend: str = "",
        status: int | None = None,
        retry_after: float | None = None,
        error_type: str | None = None,
        context_overflow: bool = False,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        # The upstream said the prompt does not fit its context window (a 400 that a chain's
        # ``on_context_overflow`` may answer by moving to a larger model).
        self.context_overflow = context_overflow
        self.backend = backend
        self.status = status
        self._retry_after = retry_after
        if error_type is not None:
            self.error_type = error_type
        elif status is not None:
            self.error_type = error_type_for_status(status)
        elif kind in (
            FailureKind.CONNECT_TIMEOUT,
            FailureKind.READ_TIMEOUT,
            FailureKind.TTFT_TIMEOUT,
            FailureKind.IDLE_TIMEOUT,
        ):
            self.error_type = "timeout_error"
        else:
            self.error_type = "api_error"

    @property
    def retry_after(self) -> float | None:
        return self._retry_after

    @property
    def reason(self) -> str:
        if self.kind is FailureKind.STATUS and self.status is not None:
            return f"UPSTREAM_HTTP_{self.status}"
        return f"UPSTREAM_{self.kind.name}"


class ChainExhaustedError(SidecarError):
    """Every target of a chain failed; shows as the last upstream error, marked exhausted.

    ``errors`` holds every failed attempt's error, in order (the last one is ``last``); the
    message lists them all, so the caller sees why each target failed, not only the last."""

    MAX_EACH = 300  # characters of each attempt's message (an upstream's body can be long)

    def __init__(
        self, last: SidecarError, attempts: int, errors: Sequence[SidecarError] = ()
    ) -> None:
        self.errors = list(errors) or [last]
        if len(self.errors) == 1:
            message = last.message
        else:
            listed = "; ".join(
                f"({i}) {_clip(error.message, self.MAX_EACH)}"
                for i, error in enumerate(self.errors, 1)
            )
            message = f"all {len(self.errors)} attempts failed: {listed}"
        super().__init__(message)
        self.last = last
        self.attempts = attempts
        self.error_type = last.error_type

    @property
    def grpc_code(self) -> str:
        return self.last.grpc_code

    @property
    def retry_after(self) -> float | None:
        return self.last.retry_after

    @property
    def reason(self) -> str:
        return "FALLBACK_EXHAUSTED"


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
