"""Sidecar errors -> OpenAI error bodies and statuses, and the exceptions the openai SDK raises."""

from __future__ import annotations

from typing import Any

import httpx2
import openai
import orjson
import pytest

from sidecar.errors import (
    AuthenticationError,
    ChainExhaustedError,
    DeadlineExceededError,
    FailureKind,
    InternalError,
    InvalidRequestError,
    NotFoundError,
    OverloadedError,
    RequestTooLargeError,
    SidecarError,
    UpstreamError,
)
from sidecar.translate.openai_errors import OPENAI_ERRORS, openai_error, sse_error

CASES: list[Any] = [
    pytest.param(
        InvalidRequestError("messages[2].content: bad", field="messages[2].content"),
        400,
        "invalid_request_error",
        None,
        "messages[2].content",
        openai.BadRequestError,
        id="invalid-request",
    ),
    pytest.param(
        AuthenticationError("bad key"),
        401,
        "invalid_request_error",
        "invalid_api_key",
        None,
        openai.AuthenticationError,
        id="authentication",
    ),
    pytest.param(
        UpstreamError("no", kind=FailureKind.STATUS, status=403),
        403,
        "invalid_request_error",
        "permission_denied",
        None,
        openai.PermissionDeniedError,
        id="permission",
    ),
    pytest.param(
        NotFoundError("no such model"),
        404,
        "invalid_request_error",
        "not_found",
        None,
        openai.NotFoundError,
        id="not-found",
    ),
    pytest.param(
        RequestTooLargeError("too big"),
        413,
        "invalid_request_error",
        "request_too_large",
        None,
        openai.APIStatusError,
        id="too-large",
    ),
    pytest.param(
        UpstreamError("slow down", kind=FailureKind.STATUS, status=429, retry_after=3.0),
        429,
        "requests",
        "rate_limit_exceeded",
        None,
        openai.RateLimitError,
        id="rate-limit",
    ),
    pytest.param(
        UpstreamError("pay", kind=FailureKind.STATUS, status=402),
        429,
        "insufficient_quota",
        "insufficient_quota",
        None,
        openai.RateLimitError,
        id="billing",
    ),
    pytest.param(
        UpstreamError("bad gateway", kind=FailureKind.STATUS, status=502),
        500,
        "server_error",
        None,
        None,
        openai.InternalServerError,
        id="upstream-5xx",
    ),
    pytest.param(
        InternalError("bug"),
        500,
        "server_error",
        None,
        None,
        openai.InternalServerError,
        id="internal",
    ),
    pytest.param(
        OverloadedError("busy", retry_after=1.0),
        503,
        "server_error",
        "overloaded",
        None,
        openai.InternalServerError,
        id="overloaded",
    ),
    pytest.param(
        UpstreamError("read timeout", kind=FailureKind.READ_TIMEOUT),
        504,
        "server_error",
        "timeout",
        None,
        openai.InternalServerError,
        id="upstream-timeout",
    ),
    pytest.param(
        DeadlineExceededError("budget spent"),
        504,
        "server_error",
        "timeout",
        None,
        openai.InternalServerError,
        id="deadline",
    ),
    pytest.param(
        UpstreamError("odd", kind=FailureKind.STATUS, status=500, error_type="brand_new_error"),
        500,
        "server_error",
        None,
        None,
        openai.InternalServerError,
        id="unknown-type",
    ),
]


@pytest.mark.parametrize(("error", "status", "kind", "code", "param", "sdk_class"), CASES)
def test_error_table(
    error: SidecarError,
    status: int,
    kind: str,
    code: str | None,
    param: str | None,
    sdk_class: type[Exception],
) -> None:
    result = openai_error(error)
    assert result.status == status
    assert result.body == {
        "error": {"message": error.message, "type": kind, "param": param, "code": code}
    }
    assert result.retry_after == error.retry_after
    assert sse_error(error) == b"data: " + orjson.dumps(result.body) + b"\n\n"
    # The official client raises the exception it would raise for OpenAI's own answer.
    raised = _sdk_error(result.status, result.body)
    assert type(raised) is sdk_class
    assert raised.body == result.body["error"]
    assert raised.code == code and raised.param == param and raised.type == kind


def test_exhausted_chain_shows_its_last_error_and_field() -> None:
    last = InvalidRequestError("tools[0]: bad", field="tools[0]")
    result = openai_error(ChainExhaustedError(last, attempts=2))
    assert result.status == 400
    assert result.body["error"]["param"] == "tools[0]"


def test_every_anthropic_type_is_in_the_table() -> None:
    from sidecar.errors import TYPE_STATUS

    assert set(OPENAI_ERRORS) == set(TYPE_STATUS)


def _sdk_error(status: int, body: dict[str, Any]) -> openai.APIStatusError:
    def answer(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(status, json=body)

    client = openai.OpenAI(
        api_key="test",
        base_url="http://127.0.0.1:9/v1",  # never dialled: the transport answers
        http_client=httpx2.Client(transport=httpx2.MockTransport(answer)),
        max_retries=0,
    )
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    return info.value
