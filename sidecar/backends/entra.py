"""Microsoft Entra ID access tokens for Azure OpenAI through AKS workload identity.

How it works
------------
On AKS the workload identity webhook mounts a Kubernetes service-account token (a JWT that
the kubelet rotates) at ``AZURE_FEDERATED_TOKEN_FILE`` and sets ``AZURE_CLIENT_ID``,
``AZURE_TENANT_ID`` and ``AZURE_AUTHORITY_HOST``. That file is *not* a credential for Azure
OpenAI: it is exchanged at Entra ID for an access token, with the one request azure-identity's
``WorkloadIdentityCredential`` makes — a client-credentials grant whose client assertion is the
file's content::

    POST {authority}/{tenant}/oauth2/v2.0/token
    grant_type=client_credentials&client_id=...&scope=https://cognitiveservices.azure.com/.default
    &client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer
    &client_assertion=<the file>

``WorkloadIdentityTokens.token()`` returns a token that is valid for a while yet. A token is
used until its refresh time (Entra's ``refresh_in`` when it sends one, else half its life, at
most five minutes before expiry — azure-identity's margin). From then on the first caller starts
one refresh in the background and every caller keeps the still-valid token meanwhile, so a
refresh never delays or fails a request; only when no valid token is left (its last tenth of
life, at most 30 s, counts as gone) do callers wait, for that same single refresh. A refresh
that fails while the token is still valid is logged and tried again five seconds later. The
file is read again for every refresh (off the event loop: a thread), because the kubelet
rotates it. The clock is injectable, for tests.

Failures (the file unreadable, Entra unreachable or refusing) are ``UpstreamError``s of kind
``CONNECT`` — nothing was sent to Azure OpenAI, so the engine moves on to the next target — with
Entra's error code in the message; neither the file's content nor a token is ever in a message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from urllib.parse import urlencode

import orjson

from sidecar.errors import FailureKind, UpstreamError
from sidecar.logs import log

from .http import UpstreamSession
from .settings import authority_url

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
MAX_MARGIN = 300.0  # refresh at the latest this many seconds before expiry
RETRY_AFTER_FAILURE = 5.0  # a failed refresh is tried again this much later
# A token is not sent in its last moments (at most 30 s, a tenth of its life): it must still be
# valid when Azure OpenAI reads it, after the request's own journey.
MAX_SKEW = 30.0


class WorkloadIdentityTokens:
    """Access tokens from a federated token file; see the module docstring."""

    def __init__(
        self,
        backend: str,
        *,
        authority: str,
        tenant_id: str,
        client_id: str,
        token_file: str,
        scope: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._backend = backend
        self._path = f"/{tenant_id}/oauth2/v2.0/token"
        self._client_id = client_id
        self._file = Path(token_file)
        self._scope = scope
        self._clock = clock
        self._session = UpstreamSession(authority_url(authority), max_connections=0, headers={})
        self._token = ""
        self._refresh_at = 0.0
        self._expires_at = 0.0
        self._refreshing: asyncio.Task[None] | None = None
        self.refreshes = 0  # token requests made (for logs and tests)

    async def token(self) -> str:
        now = self._clock()
        if now < self._refresh_at:
            return self._token
        if self._refreshing is None:
            self._refreshing = asyncio.ensure_future(self._refresh())
            self._refreshing.add_done_callback(self._refreshed)
        if now < self._expires_at:
            return self._token  # still valid: the refresh runs without holding anyone up
        await asyncio.shield(self._refreshing)  # one refresh for all waiters; raises its error
        return self._token

    def _refreshed(self, task: asyncio.Task[None]) -> None:
        self._refreshing = None
        error = None if task.cancelled() else task.exception()
        if error is not None:
            log(
                "entra_token_refresh_failed",
                level=logging.WARNING,
                backend=self._backend,
                reason=str(error),
            )
            # Keep using the valid token, and ask again in a while rather than on every request.
            self._refresh_at = min(self._clock() + RETRY_AFTER_FAILURE, self._expires_at)
        else:
            log("entra_token_refreshed", level=logging.DEBUG, backend=self._backend)

    async def _refresh(self) -> None:
        try:
            assertion = (await asyncio.to_thread(self._file.read_text, encoding="utf-8")).strip()
        except OSError as exc:
            raise self._error(f"cannot read the federated token file ({exc.strerror})") from exc
        form = urlencode(
            {
                "grant_type": "client_credentials",
                "client_id": self._client_id,
                "scope": self._scope,
                "client_assertion_type": ASSERTION_TYPE,
                "client_assertion": assertion,
            }
        ).encode()
        self.refreshes += 1
        started = self._clock()
        content = await self._session.post_json(
            self._backend,
            self._path,
            form,
            {"content-type": "application/x-www-form-urlencoded", "accept": "application/json"},
            self._refused,
        )
        try:
            answer = orjson.loads(content)
            token = str(answer["access_token"])
            lifetime = float(answer["expires_in"])
            refresh_in = answer.get("refresh_in")
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
            raise self._error("Entra ID sent an unreadable token response") from exc
        margin = min(MAX_MARGIN, lifetime / 2)
        refresh = lifetime - margin
        if isinstance(refresh_in, (int, float)) and 0 < refresh_in < lifetime:
            refresh = float(refresh_in)
        self._token = token
        self._expires_at = started + lifetime - min(MAX_SKEW, lifetime / 10)
        self._refresh_at = started + refresh

    def _refused(self, status: int, body: bytes, headers: Mapping[str, str]) -> UpstreamError:
        code = ""
        with contextlib.suppress(orjson.JSONDecodeError, AttributeError):
            doc = orjson.loads(body)
            code = f": {doc.get('error')}: {str(doc.get('error_description', ''))[:300]}"
        return self._error(f"Entra ID refused the workload identity token (HTTP {status}{code})")

    def _error(self, message: str) -> UpstreamError:
        return UpstreamError(
            f"{self._backend}: {message}", kind=FailureKind.CONNECT, backend=self._backend
        )

    def invalidate(self) -> None:
        """Azure OpenAI refused the token: the next request exchanges the file again."""
        self._refresh_at = self._expires_at = 0.0

    async def aclose(self) -> None:
        if self._refreshing is not None:
            self._refreshing.cancel()
            with contextlib.suppress(asyncio.CancelledError, UpstreamError):
                await self._refreshing
        await self._session.aclose()
