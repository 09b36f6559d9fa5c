"""Fakes for google-auth in-process: credentials whose refresh mints ``tok-N``, and a clock."""

from __future__ import annotations

import datetime
from typing import Any

from sidecar.backends.gcp_auth import GoogleTokens


class FakeCredentials:
    """google-auth credentials whose refresh mints ``tok-N`` valid for ``lifetime`` seconds."""

    def __init__(self, clock: FakeClock, lifetime: float | None = 3600.0) -> None:
        self.clock = clock
        self.lifetime = lifetime
        self.refreshes = 0
        self.token: str | None = None
        self.expiry: datetime.datetime | None = None
        self.fail: Exception | None = None

    quota_project_id: str | None = None

    def apply(self, headers: dict[str, str]) -> None:  # as google-auth's Credentials.apply
        headers["authorization"] = f"Bearer {self.token}"
        if self.quota_project_id:
            headers["x-goog-user-project"] = self.quota_project_id

    def refresh(self, request: Any) -> None:
        if self.fail is not None:
            raise self.fail
        self.refreshes += 1
        self.token = f"tok-{self.refreshes}"
        if self.lifetime is not None:
            self.expiry = self.clock.utcnow() + datetime.timedelta(seconds=self.lifetime)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def utcnow(self) -> datetime.datetime:
        return datetime.datetime(2026, 1, 1) + datetime.timedelta(seconds=self.now)


def tokens_for(credentials: FakeCredentials, clock: FakeClock) -> GoogleTokens:
    return GoogleTokens("v", lambda: credentials, clock=clock.monotonic, utcnow=clock.utcnow)
