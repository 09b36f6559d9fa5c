"""Google Cloud access tokens for the backends that call Google APIs (Vertex AI), via google-auth.

How it works
------------
``GoogleTokens.token()`` returns a cached OAuth2 access token while it is fresh, and otherwise
refreshes it. google-auth is synchronous and its refresh is network IO (the service account's
``token_uri``, the GKE metadata server, STS for workload identity federation), so the refresh
runs in a worker thread (``asyncio.to_thread``) and never on the event loop; it is one refresh
at a time, and every caller that needs a token meanwhile awaits that same refresh (shielded, so
a caller that gives up does not cancel it for the others). The credentials themselves are
found on first use, in the same thread: ``credentials_file`` when configured (a service-account
key, or any other file type google-auth reads), else Application Default Credentials
(``GOOGLE_APPLICATION_CREDENTIALS``, gcloud's user credentials, then the metadata server — which
is how GKE workload identity reaches the pod).

A token is fresh until ``REFRESH_MARGIN`` seconds (at most a quarter of its lifetime) before the
expiry google-auth reports, so a request never leaves with a token about to expire.
``refresh(stale)`` is for an upstream 401: it replaces the token that was refused, unless
another caller already did. The clocks are injectable so tests drive expiry without waiting.

``GoogleAuthSession`` puts that token on every request of a backend's session (``http.Session``)
and owns the 401 rule: a refused token is refreshed and the request sent once more; a second 401
is ``AUTH``. Streams are retried the same way, since a 401 comes before any event.

Failures become ``UpstreamError``s: no credentials or a refused grant are ``AUTH`` (this target
fails, the chain moves on, the log says it is a credentials problem); a token endpoint that
cannot be reached is ``CONNECT``. Tokens never appear in messages or reprs.
"""

from __future__ import annotations

import asyncio
import datetime
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from typing import Any, TypeVar

from sidecar.errors import FailureKind, UpstreamError
from sidecar.translate.sse import SSEFrame

from .http import DEFAULT_CONNECT_TIMEOUT, ErrorMapper, Session

T = TypeVar("T")
Frames = AsyncGenerator[list[SSEFrame] | None, None]

SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)
REFRESH_MARGIN = 300.0  # seconds before expiry that a token is replaced
UNKNOWN_LIFETIME = 300.0  # credentials that report no expiry are refreshed this often
MAX_REASON = 300


def _utcnow() -> datetime.datetime:
    # google-auth's expiry is a naive UTC datetime.
    return datetime.datetime.now(datetime.UTC).replace(tzinfo=None)


def load_credentials(credentials_file: str | None) -> Any:
    """google-auth credentials with the cloud-platform scope (blocking: call in a thread)."""
    import google.auth

    if credentials_file:
        credentials, _ = google.auth.load_credentials_from_file(  # type: ignore[no-untyped-call]
            credentials_file, scopes=list(SCOPES)
        )
    else:
        credentials, _ = google.auth.default(scopes=list(SCOPES))
    return credentials


def _retrieve(future: asyncio.Future[str]) -> None:
    """Marks a refresh's failure as seen even when every waiter has gone."""
    if not future.cancelled():
        future.exception()


class GoogleTokens:
    """Cached, refreshed-off-the-loop access tokens for one backend's credentials."""

    def __init__(
        self,
        backend: str,
        load: Callable[[], Any],
        *,
        clock: Callable[[], float] = time.monotonic,
        utcnow: Callable[[], datetime.datetime] = _utcnow,
        margin: float = REFRESH_MARGIN,
    ) -> None:
        self._backend = backend
        self._load = load  # blocking; returns google-auth credentials
        self._clock = clock
        self._utcnow = utcnow
        self._margin = margin
        self._credentials: Any = None
        self._request: Any = None
        self._token: str | None = None
        self._fresh_until = 0.0
        self._pending: asyncio.Future[str] | None = None  # the refresh in flight
        self.refreshes = 0  # how many tokens were fetched (for tests and logs)
        self.headers: dict[str, str] = {}  # sent with the token (x-goog-user-project)

    def __repr__(self) -> str:  # never show a token
        return f"GoogleTokens(backend={self._backend!r}, refreshes={self.refreshes})"

    async def token(self) -> str:
        """A fresh access token (refreshed first if it is about to expire)."""
        if self._token is not None and self._clock() < self._fresh_until:
            return self._token
        return await self.refresh(self._token)

    async def refresh(self, stale: str | None) -> str:
        """A new token in place of ``stale``; one refresh at a time, shared by its waiters."""
        current = self._token
        if current is not None and current != stale and self._clock() < self._fresh_until:
            return current  # already replaced by another caller's refresh
        if self._pending is None:
            self._pending = asyncio.ensure_future(self._refresh())
            self._pending.add_done_callback(_retrieve)
        # Shielded: a caller that gives up (its deadline, a disconnect) leaves the refresh
        # running for the others, and the thread it runs in is never abandoned half-way.
        return await asyncio.shield(self._pending)

    async def _refresh(self) -> str:
        try:
            token, lifetime = await asyncio.to_thread(self._fetch)
        finally:
            self._pending = None
        self._token = token
        self._fresh_until = self._clock() + lifetime - min(self._margin, lifetime / 4)
        self.refreshes += 1
        return token

    def _fetch(self) -> tuple[str, float]:
        """Runs in a worker thread: find the credentials once, then refresh them."""
        import google.auth.exceptions

        try:
            if self._credentials is None:
                from google.auth.transport.requests import Request

                self._credentials = self._load()
                self._request = Request()
            self._credentials.refresh(self._request)
        except google.auth.exceptions.TransportError as exc:
            what = "the token endpoint could not be reached"
            raise self._error(what, exc, FailureKind.CONNECT) from exc
        except google.auth.exceptions.DefaultCredentialsError as exc:
            raise self._error("no Google credentials found", exc, FailureKind.AUTH) from exc
        except (google.auth.exceptions.GoogleAuthError, OSError, ValueError) as exc:
            raise self._error("could not get an access token", exc, FailureKind.AUTH) from exc
        token = self._credentials.token
        if not isinstance(token, str) or not token:
            raise self._error("the credentials gave no access token", None, FailureKind.AUTH)
        # What google-auth itself would send besides the token: x-goog-user-project for user
        # credentials with a quota project (gcloud's ADC), which Vertex then bills and checks.
        applied: dict[str, str] = {}
        self._credentials.apply(applied)
        self.headers = {k: v for k, v in applied.items() if k.lower() != "authorization"}
        expiry = self._credentials.expiry
        if isinstance(expiry, datetime.datetime):
            lifetime = max((expiry - self._utcnow()).total_seconds(), 0.0)
        else:
            lifetime = UNKNOWN_LIFETIME
        return token, lifetime

    def _error(self, what: str, exc: BaseException | None, kind: FailureKind) -> UpstreamError:
        reason = f": {type(exc).__name__}: {exc}" if exc is not None else ""
        if len(reason) > MAX_REASON:
            reason = reason[: MAX_REASON - 1] + "…"
        return UpstreamError(
            f"{self._backend}: Google credentials: {what}{reason}",
            kind=kind,
            backend=self._backend,
        )


class GoogleAuthSession:
    """``session`` with ``tokens``' access token (and google-auth's other headers) on each
    request, ``prefix`` before each path, and the 401 rule (refresh, resend once, then AUTH).
    Several may share one pooled ``session``; ``aclose`` is the owner's to call on it."""

    def __init__(self, session: Session, tokens: GoogleTokens, prefix: str = "") -> None:
        self._session = session
        self._tokens = tokens
        self._prefix = prefix

    def _headers(self, headers: Mapping[str, str], token: str) -> dict[str, str]:
        return {**headers, **self._tokens.headers, "authorization": f"Bearer {token}"}

    async def _authorised(self, backend: str, send: Callable[[str], Awaitable[T]]) -> T:
        token = await self._tokens.token()
        try:
            return await send(token)
        except UpstreamError as exc:
            if exc.status != 401:
                raise
        token = await self._tokens.refresh(token)
        try:
            return await send(token)
        except UpstreamError as exc:
            if exc.status != 401:
                raise
            raise UpstreamError(
                f"{backend}: Google refused the access token after a refresh (HTTP 401): "
                f"{exc.message}",
                kind=FailureKind.AUTH,
                backend=backend,
            ) from exc

    async def post_json(
        self,
        backend: str,
        path: str,
        body: bytes,
        headers: Mapping[str, str],
        to_error: ErrorMapper,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        headers_out: list[tuple[str, str]] | None = None,
    ) -> bytes:
        def send(token: str) -> Awaitable[bytes]:
            return self._session.post_json(
                backend,
                self._prefix + path,
                body,
                self._headers(headers, token),
                to_error,
                connect_timeout,
                headers_out=headers_out,
            )

        return await self._authorised(backend, send)

    async def post_sse(
        self,
        backend: str,
        path: str,
        body: bytes,
        headers: Mapping[str, str],
        to_error: ErrorMapper,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        headers_out: list[tuple[str, str]] | None = None,
    ) -> Frames:
        """The session's SSE batches; the first is read under the 401 rule."""

        async def open_stream(token: str) -> tuple[Frames, list[SSEFrame] | None]:
            frames = self._session.post_sse(
                backend,
                self._prefix + path,
                body,
                self._headers(headers, token),
                to_error,
                connect_timeout,
                headers_out=headers_out,
            )
            try:
                return frames, await anext(frames)
            except BaseException:
                await frames.aclose()
                raise

        frames, first = await self._authorised(backend, open_stream)
        try:
            yield first
            async for batch in frames:
                yield batch
        finally:
            await frames.aclose()

    async def aclose(self) -> None:
        pass  # the pooled session is closed by the backend that made it
