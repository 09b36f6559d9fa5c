"""AWS credentials and SigV4 signing for the backends that call AWS (Bedrock), by botocore.

How it works
------------
``AwsCredentials`` holds one set of frozen credentials (access key, secret, token) for the event
loop to sign with. Where they come from is botocore's business: static keys from the settings,
or botocore's default chain (``botocore.session.Session(profile=...).get_credentials()``:
environment, shared config / profile, web identity (IRSA: ``AWS_ROLE_ARN`` +
``AWS_WEB_IDENTITY_TOKEN_FILE``), container credentials (EKS Pod Identity), IMDS). Resolving the
chain and refreshing temporary credentials do network IO and take locks, so both run in a thread
(``asyncio.to_thread``), never on the event loop, and at most one at a time: concurrent callers
share the one refresh.

Two times are kept for temporary credentials (from their expiry, read once per fetch):
``refresh_at`` (5 minutes before expiry, or half the lifetime for short ones), from which a
request still signs with the cached credentials but starts a background refresh; and
``use_until`` (a minute before expiry, or a quarter of the lifetime), from which a request waits
for fresh ones. So in steady state no request waits for credentials at all, and none is signed
with credentials that expire on the way. botocore refreshes its own temporary credentials
15 minutes before expiry, so by ``refresh_at`` it has new ones to give.

``invalidate`` is for a request AWS refused (an expired token, a bad signature): the next request
resolves the chain from scratch (a new botocore session), once however many requests saw the
refusal.

``sign`` adds ``X-Amz-Date``, ``X-Amz-Security-Token`` and ``Authorization`` for one request with
botocore's ``SigV4Auth``, over the URL exactly as it will be sent: botocore percent-encodes the
path again for the canonical request, as AWS does. Measured on this machine: ~50 µs of CPU per
request for a 1.4 KB body.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import yarl
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials, ReadOnlyCredentials

from sidecar.errors import FailureKind, UpstreamError
from sidecar.logs import log

REFRESH_EARLY = 300.0  # seconds before expiry from which a background refresh starts
EXPIRY_SKEW = 60.0  # seconds before expiry from which the cached credentials are not used
RETRY_REFRESH = 5.0  # after a background refresh that got nothing newer, try again after this

# A resolver returns botocore credentials (plain or refreshable), or None when the chain found
# none. Called in a worker thread.
Resolver = Callable[[], Credentials | None]


def default_resolver(profile: str | None) -> Resolver:
    """botocore's default credential chain, for ``profile`` (or the environment's default)."""

    def resolve() -> Credentials | None:
        import botocore.session  # loads botocore's data files: only where the chain is used

        credentials: Credentials | None = botocore.session.Session(
            profile=profile
        ).get_credentials()
        return credentials

    return resolve


def static_resolver(access_key: str, secret_key: str, token: str | None) -> Resolver:
    credentials = Credentials(access_key, secret_key, token or None, method="config")
    return lambda: credentials


class AwsCredentials:
    """Frozen AWS credentials for signing on the event loop, refreshed before they expire."""

    def __init__(
        self,
        backend: str,
        resolve: Resolver,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.UTC),
    ) -> None:
        self._backend = backend
        self._resolve = resolve
        self._clock = clock
        self._wall = wall
        self._source: Credentials | None = None
        self._frozen: ReadOnlyCredentials | None = None
        self._refresh_at = 0.0
        self._use_until = 0.0
        self._task: asyncio.Task[ReadOnlyCredentials] | None = None
        self.fetches = 0  # how many times credentials were fetched (for tests and logs)

    async def get(self) -> ReadOnlyCredentials:
        """Credentials to sign one request with; waits only when there are none usable."""
        frozen, now = self._frozen, self._clock()
        if frozen is not None and now < self._use_until:
            if now >= self._refresh_at and self._task is None:
                self._start_refresh()
            return frozen
        return await asyncio.shield(self._start_refresh())

    def invalidate(self, used: ReadOnlyCredentials) -> None:
        """AWS refused ``used``: resolve the chain again for the next request (once)."""
        if self._frozen is used:
            self._frozen = None
            self._source = None

    def _start_refresh(self) -> asyncio.Task[ReadOnlyCredentials]:
        if self._task is None:
            self._task = asyncio.ensure_future(self._refresh())
            self._task.add_done_callback(self._refresh_done)
        return self._task

    def _refresh_done(self, task: asyncio.Task[ReadOnlyCredentials]) -> None:
        self._task = None
        if not task.cancelled() and task.exception() is not None and self._frozen is not None:
            # A background refresh failed: keep using what we have until ``use_until``.
            self._refresh_at = min(self._clock() + RETRY_REFRESH, self._use_until)
            log(
                "aws_credentials_refresh_failed",
                level=logging.WARNING,
                backend=self._backend,
                error=type(task.exception()).__name__,
            )

    async def _refresh(self) -> ReadOnlyCredentials:
        try:
            frozen, left = await asyncio.to_thread(self._fetch)
        except UpstreamError:
            raise
        except Exception as exc:  # botocore's many credential errors; never their text (secrets)
            raise UpstreamError(
                f"{self._backend}: AWS credentials unavailable ({type(exc).__name__})",
                kind=FailureKind.AUTH,
                backend=self._backend,
                error_type="authentication_error",
            ) from exc
        now = self._clock()
        same = self._frozen is not None and frozen.access_key == self._frozen.access_key
        self._frozen = frozen
        if left is None:  # static keys, or credentials that do not expire
            self._refresh_at = self._use_until = float("inf")
        else:
            self._use_until = now + left - min(EXPIRY_SKEW, left / 4)
            self._refresh_at = now + left - min(REFRESH_EARLY, left / 2)
            if same:  # nothing newer yet: ask again a little later, not on every request
                self._refresh_at = min(max(self._refresh_at, now + RETRY_REFRESH), self._use_until)
        return frozen

    def _fetch(self) -> tuple[ReadOnlyCredentials, float | None]:
        """In a worker thread: resolve (once) and freeze; seconds left before expiry."""
        self.fetches += 1
        source = self._source
        if source is None:
            source = self._resolve()
            if source is None:
                raise UpstreamError(
                    f"{self._backend}: no AWS credentials found (environment, profile, web "
                    "identity, container or instance credentials)",
                    kind=FailureKind.AUTH,
                    backend=self._backend,
                    error_type="authentication_error",
                )
            self._source = source
        frozen = source.get_frozen_credentials()
        # botocore keeps the expiry of refreshable credentials here (no public accessor).
        expiry: datetime.datetime | None = getattr(source, "_expiry_time", None)
        left = None if expiry is None else (expiry - self._wall()).total_seconds()
        return frozen, left


def sign(
    credentials: ReadOnlyCredentials,
    region: str,
    service: str,
    url: str,
    body: bytes,
    headers: Mapping[str, str],
) -> dict[str, str]:
    """``headers`` plus the SigV4 ones, for a POST of ``body`` to ``url`` (as sent)."""
    request = AWSRequest(method="POST", url=url, data=body, headers=dict(headers))
    SigV4Auth(credentials, service, region).add_auth(request)
    signed: Any = request.headers
    return {str(k): str(v) for k, v in signed.items()}


def host_of(url: str) -> str:
    """The ``host`` header for ``url``: lower-case, the port only when not the default one."""
    return str(yarl.URL(url, encoded=True).host_port_subcomponent).lower()
