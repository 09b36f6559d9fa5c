"""``sidecar.backends.gcp_auth``: the token cache and its refresh, driven by fake clocks and
fake google-auth credentials (the real google-auth against a token endpoint is in
tests/test_vertex_server.py and tests/integration/test_vertex.py)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from google.auth import exceptions as auth_errors

from sidecar.backends.gcp_auth import REFRESH_MARGIN, UNKNOWN_LIFETIME, GoogleTokens
from sidecar.engine.classify import Verdict, classify
from sidecar.engine.policy import Policy
from sidecar.errors import FailureKind, UpstreamError
from tests.backends.google_fakes import FakeClock, FakeCredentials, tokens_for

DEFAULT = Policy()


async def test_a_token_is_reused_until_shortly_before_expiry() -> None:
    clock = FakeClock()
    credentials = FakeCredentials(clock, lifetime=3600.0)
    tokens = tokens_for(credentials, clock)
    assert await tokens.token() == "tok-1"
    clock.now += 3600.0 - REFRESH_MARGIN - 1
    assert await tokens.token() == "tok-1"
    clock.now += 2
    assert await tokens.token() == "tok-2"
    assert credentials.refreshes == 2
    assert "tok" not in repr(tokens)


@pytest.mark.parametrize(
    ("lifetime", "fresh_for"),
    [
        pytest.param(3600.0, 3600.0 - REFRESH_MARGIN, id="an-hour:margin"),
        pytest.param(40.0, 30.0, id="short-lived:a-quarter-of-its-life"),
        pytest.param(None, UNKNOWN_LIFETIME * 0.75, id="no-expiry"),
    ],
)
async def test_how_long_a_token_is_fresh(lifetime: float | None, fresh_for: float) -> None:
    clock = FakeClock()
    credentials = FakeCredentials(clock, lifetime=lifetime)
    tokens = tokens_for(credentials, clock)
    await tokens.token()
    clock.now += fresh_for - 0.5
    await tokens.token()
    assert credentials.refreshes == 1
    clock.now += 1.0
    await tokens.token()
    assert credentials.refreshes == 2


async def test_one_refresh_at_a_time_for_concurrent_callers() -> None:
    clock = FakeClock()
    credentials = FakeCredentials(clock)
    tokens = tokens_for(credentials, clock)
    got = await asyncio.gather(*(tokens.token() for _ in range(8)))
    assert got == ["tok-1"] * 8
    assert credentials.refreshes == 1


async def test_a_caller_that_gives_up_leaves_the_refresh_to_the_others() -> None:
    gate = threading.Event()

    class Slow(FakeCredentials):
        def refresh(self, request: Any) -> None:
            gate.wait(10)
            super().refresh(request)

    clock = FakeClock()
    credentials = Slow(clock)
    tokens = tokens_for(credentials, clock)
    first = asyncio.ensure_future(tokens.token())
    await asyncio.sleep(0)  # the first caller starts the refresh...
    second = asyncio.ensure_future(tokens.token())
    await asyncio.sleep(0)  # ...the second waits for the same one
    first.cancel()
    gate.set()
    assert await second == "tok-1"
    with pytest.raises(asyncio.CancelledError):
        await first
    assert credentials.refreshes == 1


async def test_refresh_of_a_stale_token_that_another_caller_replaced_fetches_nothing() -> None:
    clock = FakeClock()
    credentials = FakeCredentials(clock)
    tokens = tokens_for(credentials, clock)
    first = await tokens.token()
    second = await tokens.refresh(first)  # a 401 on the first token
    assert second == "tok-2"
    assert await tokens.refresh(first) == "tok-2"  # a second caller's 401 on the same token
    assert credentials.refreshes == 2


async def test_the_refresh_runs_off_the_event_loop() -> None:
    loop_thread: list[Any] = []

    class Recording(FakeCredentials):
        def refresh(self, request: Any) -> None:
            loop_thread.append(threading.current_thread())
            super().refresh(request)

    clock = FakeClock()
    tokens = tokens_for(Recording(clock), clock)
    await tokens.token()
    assert loop_thread and loop_thread[0] is not threading.current_thread()


@pytest.mark.parametrize(
    ("failure", "kind"),
    [
        pytest.param(
            auth_errors.RefreshError("invalid_grant: Invalid JWT Signature."),
            FailureKind.AUTH,
            id="refused-grant",
        ),
        pytest.param(
            auth_errors.TransportError("connection refused"),
            FailureKind.CONNECT,
            id="token-endpoint-down",
        ),
        pytest.param(
            auth_errors.DefaultCredentialsError("no ADC"),
            FailureKind.AUTH,
            id="no-credentials",
        ),
    ],
)
async def test_credential_failures_are_this_targets_failure(
    failure: Exception, kind: FailureKind
) -> None:
    clock = FakeClock()
    credentials = FakeCredentials(clock)
    credentials.fail = failure
    tokens = tokens_for(credentials, clock)
    with pytest.raises(UpstreamError) as info:
        await tokens.token()
    assert info.value.kind is kind
    assert classify(info.value, DEFAULT) is Verdict.MOVE_ON
    assert "Google credentials" in info.value.message


async def test_missing_credentials_when_loading_are_an_auth_failure() -> None:
    def load() -> Any:
        raise auth_errors.DefaultCredentialsError("Your default credentials were not found")

    tokens = GoogleTokens("v", load)
    with pytest.raises(UpstreamError, match="no Google credentials found") as info:
        await tokens.token()
    assert info.value.kind is FailureKind.AUTH
