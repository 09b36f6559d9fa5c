"""AWS Bedrock's errors -> ``UpstreamError``, without IO.

How it works
------------
AWS names an error by type, not by status: the ``x-amzn-ErrorType`` header of an error response
(``ThrottlingException:http://internal.amazon.com/...``; the part before ``:`` is the type), or
``__type`` / ``code`` in the JSON body, whose message is ``{"message": ...}`` (or ``Message``).
Inside a 200 stream an error is an event-stream frame with ``:message-type: exception`` and
``:exception-type: throttlingException`` (camel case), or ``:message-type: error``. Both spellings
are looked up, case-insensitively, in one table:

===================================  ======================  ======  =======================
AWS type                             Anthropic error type    counts  engine
===================================  ======================  ======  =======================
ThrottlingException                  rate_limit_error        429     moves on
ServiceQuotaExceededException (400)  rate_limit_error        429     moves on
ServiceUnavailableException          overloaded_error        503     moves on
ModelNotReadyException (429)         overloaded_error        429     moves on
InternalServerException              api_error               500     moves on
ModelErrorException (424)            api_error               502     moves on
ModelStreamErrorException (424)      api_error               502     moves on
ModelTimeoutException (408)          timeout_error           408     moves on
ValidationException                  invalid_request_error   400     stops
AccessDeniedException                permission_error        403     stops
ResourceNotFoundException            not_found_error         404     stops
ExpiredToken, UnrecognizedClient,    authentication_error    (AUTH)  moves on (the backend
InvalidSignature, MissingAuthTok...                                  refreshes credentials)
===================================  ======================  ======  =======================

"counts" is the status the error is classified by: AWS sends some types with a status that would
mislead the engine (a quota as 400, a failed model as 424), so the type decides. An unknown type
keeps the HTTP status it came with. Credential failures are ``FailureKind.AUTH``: this target's
failure, not the caller's mistake. Only the first line of a message is kept, with access key ids
masked: AWS's signature-mismatch message goes on to quote the canonical request, session token
included. A stream frame is ``FailureKind.STREAM_ERROR`` whatever its
type: before the first content the engine falls back, after it the stream ends with an error.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import orjson

from sidecar.errors import FailureKind, UpstreamError

from .upstream_errors import _is_context_overflow, parse_retry_after, upstream_message

__all__ = ["aws_error_type", "error_from_bedrock", "error_from_bedrock_frame"]

# lower-cased AWS type -> (Anthropic error type, status it is classified by)
_TYPES: Mapping[str, tuple[str, int]] = {
    "throttlingexception": ("rate_limit_error", 429),
    "servicequotaexceededexception": ("rate_limit_error", 429),
    "serviceunavailableexception": ("overloaded_error", 503),
    "modelnotreadyexception": ("overloaded_error", 429),
    "internalserverexception": ("api_error", 500),
    "modelerrorexception": ("api_error", 502),
    "modelstreamerrorexception": ("api_error", 502),
    "modeltimeoutexception": ("timeout_error", 408),
    "validationexception": ("invalid_request_error", 400),
    "accessdeniedexception": ("permission_error", 403),
    "resourcenotfoundexception": ("not_found_error", 404),
}

# The request's credentials or signature were refused: refresh and count as this target's failure.
AUTH_TYPES = frozenset(
    {
        "expiredtokenexception",
        "expiredtoken",
        "unrecognizedclientexception",
        "invalidsignatureexception",
        "missingauthenticationtokenexception",
        "missingauthenticationtoken",
        "incompletesignatureexception",
        "invalidclienttokenid",
        "signaturedoesnotmatch",
    }
)


# An access key id (not a secret, but an identifier logs need not carry).
_KEY_ID = re.compile(r"\b(AKIA|ASIA)[A-Z0-9]{12,}\b")


def _safe(message: str) -> str:
    """AWS's signature-mismatch message goes on to quote the canonical request, which holds the
    session token: keep the first line only, and no access key ids."""
    return _KEY_ID.sub(r"\1***", message.split("\n", 1)[0].strip())


def aws_error_type(headers: Mapping[str, str], body: Any) -> str:
    """The AWS error type of a response ('' when it names none), as AWS spells it."""
    value = headers.get("x-amzn-errortype") or headers.get("X-Amzn-ErrorType")
    if value is None:
        for key, val in headers.items():
            if key.lower() == "x-amzn-errortype":
                value = val
                break
    if value:
        return value.split(":", 1)[0].strip()
    if isinstance(body, dict):
        for key in ("__type", "code", "Code"):
            found = body.get(key)
            if isinstance(found, str) and found:
                return found.rsplit("#", 1)[-1]
    return ""


def _classified(
    aws_type: str, message: str, *, kind: FailureKind, status: int | None, **extra: Any
) -> UpstreamError:
    key = aws_type.lower()
    message = _safe(message)
    if key in AUTH_TYPES:
        return UpstreamError(
            f"AWS refused the credentials ({aws_type}): {message}",
            kind=FailureKind.AUTH,
            status=status,
            error_type="authentication_error",
        )
    error_type, counts = _TYPES.get(key, (None, status))
    if kind is FailureKind.STREAM_ERROR:
        counts = None
    text = f"{aws_type}: {message}" if aws_type else message
    return UpstreamError(text, kind=kind, status=counts, error_type=error_type, **extra)


def error_from_bedrock(
    status: int, body: bytes, headers: Mapping[str, str], *, now: float | None = None
) -> UpstreamError:
    """The error for Bedrock's non-2xx response."""
    doc: Any = None
    if body.strip()[:1] == b"{":
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            doc = None
    if isinstance(doc, dict) and "message" not in doc and isinstance(doc.get("Message"), str):
        body = orjson.dumps({"message": doc["Message"]})
    message, _ = upstream_message(status, body)
    return _classified(
        aws_error_type(headers, doc),
        message,
        kind=FailureKind.STATUS,
        status=status,
        retry_after=parse_retry_after(headers, now),
        context_overflow=_is_context_overflow(status, body, message),
    )


def error_from_bedrock_frame(aws_type: str, payload: bytes) -> UpstreamError:
    """The error for an exception (or error) frame inside a 200 event stream."""
    message, _ = upstream_message(200, payload)
    if message == "upstream returned HTTP 200":
        message = "the stream carried an error"
    return _classified(aws_type or "error", message, kind=FailureKind.STREAM_ERROR, status=None)
