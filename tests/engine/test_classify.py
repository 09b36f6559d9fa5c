"""The classification table and the retry delay, row by row."""

from __future__ import annotations

import pytest

from sidecar.engine.classify import Verdict, classify, retry_delay
from sidecar.engine.policy import Policy
from sidecar.errors import (
    DeadlineExceededError,
    FailureKind,
    InvalidRequestError,
    SidecarError,
    UpstreamError,
)


def status(code: int, **kw: object) -> UpstreamError:
    return UpstreamError("x", kind=FailureKind.STATUS, status=code, **kw)  # type: ignore[arg-type]


def kind(k: FailureKind) -> UpstreamError:
    return UpstreamError("x", kind=k)


DEFAULT = Policy()
TABLE = [
    *(
        pytest.param(kind(k), DEFAULT, Verdict.MOVE_ON, id=k.value)
        for k in FailureKind
        if k not in (FailureKind.STATUS, FailureKind.CANCELLED)
    ),
    *(
        pytest.param(status(code), DEFAULT, Verdict.MOVE_ON, id=f"http-{code}")
        for code in (408, 429, 500, 502, 503, 504, 529)
    ),
    *(
        pytest.param(status(code), DEFAULT, Verdict.STOP, id=f"http-{code}")
        for code in (400, 401, 403, 404, 413, 422)
    ),
    pytest.param(kind(FailureKind.CANCELLED), DEFAULT, Verdict.STOP, id="cancelled"),
    pytest.param(InvalidRequestError("bad"), DEFAULT, Verdict.STOP, id="caller-error"),
    pytest.param(DeadlineExceededError("late"), DEFAULT, Verdict.STOP, id="deadline"),
    pytest.param(
        status(401), Policy(move_on=(401, 429)), Verdict.MOVE_ON, id="401-configured-to-move-on"
    ),
    pytest.param(status(429), Policy(stop_on=(429,)), Verdict.STOP, id="429-configured-to-stop"),
    pytest.param(
        status(400, context_overflow=True),
        Policy(on_context_overflow="big"),
        Verdict.OVERFLOW,
        id="context-overflow-with-chain",
    ),
    pytest.param(
        status(400, context_overflow=True), DEFAULT, Verdict.STOP, id="context-overflow-no-chain"
    ),
]


@pytest.mark.parametrize(("error", "policy", "verdict"), TABLE)
def test_classify(error: SidecarError, policy: Policy, verdict: Verdict) -> None:
    assert classify(error, policy) is verdict


RETRY = Policy(retries=2, backoff_base=1.0, backoff_max=3.0, retry_after_cap=10.0)
DELAYS = [
    pytest.param(status(503), 0, Policy(), 100.0, 0.5, None, id="no-retries-configured"),
    pytest.param(status(503), 0, RETRY, 100.0, 0.5, 0.5, id="first-backoff-jittered"),
    pytest.param(status(503), 1, RETRY, 100.0, 0.5, 1.0, id="second-backoff-doubles"),
    pytest.param(status(503), 2, RETRY, 100.0, 0.5, None, id="retries-used-up"),
    pytest.param(status(503), 1, RETRY, 100.0, 0.0, 0.0, id="full-jitter-can-be-zero"),
    pytest.param(
        status(503),
        1,
        Policy(retries=9, backoff_base=1, backoff_max=1.5),
        99.0,
        0.99,
        1.485,
        id="backoff-capped",
    ),
    pytest.param(
        status(429, retry_after=4.0), 0, RETRY, 100.0, 0.5, 4.0, id="retry-after-honoured"
    ),
    pytest.param(
        status(429, retry_after=30.0), 0, RETRY, 100.0, 0.5, None, id="retry-after-over-cap"
    ),
    pytest.param(
        status(429, retry_after=4.0), 0, RETRY, 3.0, 0.5, None, id="retry-after-over-budget"
    ),
    pytest.param(status(503), 0, RETRY, 0.2, 0.5, None, id="backoff-over-budget"),
]


@pytest.mark.parametrize(("error", "done", "policy", "left", "jitter", "expected"), DELAYS)
def test_retry_delay(
    error: SidecarError,
    done: int,
    policy: Policy,
    left: float,
    jitter: float,
    expected: float | None,
) -> None:
    delay = retry_delay(error, done, policy, left, jitter)
    assert delay == (pytest.approx(expected) if expected is not None else None)
