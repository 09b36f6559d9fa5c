"""Entra ID tokens through AKS workload identity (``sidecar.backends.entra``), in-process against
the fake token endpoint, with a fake clock: one refresh for concurrent callers, the refresh in
the background while the token is valid, the file read again, failures."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from sidecar.backends.entra import WorkloadIdentityTokens
from sidecar.engine.classify import Verdict, classify
from sidecar.engine.policy import Policy
from sidecar.errors import UpstreamError
from tests.backends.azure_fake import CLIENT, TENANT, Fake, fake

__all__ = ["fake"]  # the fixture


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def settled(source: WorkloadIdentityTokens) -> None:
    """Wait (bounded, not measured) until no refresh is in flight."""
    for _ in range(500):
        if source._refreshing is None:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the refresh never finished")


def tokens(fake: Fake, clock: Clock, **overrides: Any) -> WorkloadIdentityTokens:
    args: dict[str, Any] = {
        "authority": fake.url,
        "tenant_id": TENANT,
        "client_id": CLIENT,
        "token_file": str(fake.token_file),
        "scope": "https://cognitiveservices.azure.com/.default",
        "clock": clock,
    }
    return WorkloadIdentityTokens("az", **{**args, **overrides})


async def test_token_is_reused_then_refreshed_in_the_background(fake: Fake) -> None:
    clock = Clock()
    source = tokens(fake, clock)
    try:
        first = await asyncio.gather(*(source.token() for _ in range(5)))
        assert len(set(first)) == 1 and source.refreshes == 1  # one exchange for all callers
        clock.now += 3600 - 299  # inside the five-minute margin: still valid
        assert await source.token() == first[0]  # answered at once with the valid token ...
        assert await source.token() == first[0]
        await settled(source)
        assert source.refreshes == 2  # ... while one refresh ran behind it
        assert await source.token() != first[0]
    finally:
        await source.aclose()


async def test_the_file_is_read_again_for_every_refresh(fake: Fake) -> None:
    clock = Clock()
    source = tokens(fake, clock)
    try:
        await source.token()
        fake.token_file.write_text("eyJ.rotated.by-the-kubelet\n")
        clock.now += 7200  # expired: the caller waits for the refresh
        await source.token()
    finally:
        await source.aclose()
    assert [t["assertion_matched"] for t in fake.tokens()] == [True, True]


async def test_a_failed_refresh_keeps_the_valid_token_and_tries_later(fake: Fake) -> None:
    clock = Clock()
    source = tokens(fake, clock)
    try:
        token = await source.token()
        fake.script({"path": f"/{TENANT}/oauth2/v2.0/token", "status": 503})
        clock.now += 3400
        assert await source.token() == token
        await settled(source)
        assert await source.token() == token  # no new attempt on every request ...
        assert source.refreshes == 2
        clock.now += 6  # ... but a few seconds later
        assert await source.token() == token
        await settled(source)
        assert source.refreshes == 3
        assert await source.token() != token
    finally:
        await source.aclose()


REFUSED = [
    pytest.param({"client_id": "someone-else"}, "unauthorized_client", id="entra-refuses"),
    pytest.param({"token_file": "/nonexistent/token"}, "cannot read the federated", id="no-file"),
    pytest.param({"authority": "http://127.0.0.1:9"}, "connection failed", id="unreachable"),
]


@pytest.mark.parametrize(("overrides", "says"), REFUSED)
async def test_no_token_is_a_failure_that_moves_on(
    fake: Fake, overrides: dict[str, Any], says: str
) -> None:
    source = tokens(fake, Clock(), **overrides)
    try:
        with pytest.raises(UpstreamError) as info:
            await source.token()
    finally:
        await source.aclose()
    assert says in info.value.message
    assert info.value.backend == "az"
    assert classify(info.value, Policy()) is Verdict.MOVE_ON
    assert "eyJ" not in info.value.message  # the file's content is never in a message
