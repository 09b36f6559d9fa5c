"""What the HTTP backends share: one pooled aiohttp session each, and the one place where the
HTTP client's exceptions become ``UpstreamError``s.

Why aiohttp and not httpx: on this hot path the client is most of the sidecar's own CPU. Measured
on the same machine against a local nginx, one small POST cost 1.27 ms of CPU with httpx
(httpcore + h11 + anyio), 0.62 ms with httpx over an aiohttp transport, and 0.22 ms with aiohttp
(its C parser, no extra layers). See the README's benchmark section.

The session has a connect timeout but no read timeout: the engine owns the per-attempt timers
(TTFT, idle, attempt, overall) and cancels the request when one fires, which closes the
connection at once. A body read to its end returns the connection to the pool. Keys are sent
from configuration only; nothing of the caller's credentials reaches an upstream.

Stale pooled connections: an upstream may close a keep-alive connection at any time (after an
error, when idle) without saying so, and a request can be sent on it just as it closes. When a
request dies that way — on a *reused* connection, before any byte of the answer: the upstream
disconnects, resets the connection (its kernel's answer to data on a socket it closed), or the
request cannot even be written — it is sent once more on a new connection of its own,
invisibly: not an attempt, no fallback. On a new connection the same failures are the
upstream's, as before. Safe because the upstream never
answered; HTTP clients do the same for idempotent requests (RFC 9112, 9.3.1). The pool tells
reused connections from new ones (``_Connector``).
"""

from __future__ import annotations

import ssl
import weakref
from collections.abc import AsyncGenerator, Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from functools import lru_cache
from typing import Any, Protocol, TypeVar

import aiohttp
import yarl

from sidecar.errors import FailureKind, UpstreamError
from sidecar.translate.sse import SSEDecoder, SSEFrame

from .base import report_response_headers
from .settings import HttpSettings

DEFAULT_CONNECT_TIMEOUT = 10.0
ErrorMapper = Callable[[int, bytes, Mapping[str, str]], UpstreamError]
F = TypeVar("F")


class FrameDecoder(Protocol[F]):
    """Sans-IO framing of a streamed body (SSE, AWS event-stream): bytes in, frames out."""

    def feed(self, data: bytes) -> list[F]: ...

    def close(self) -> list[F]: ...


# Whether the connection the current request got had served a request before (set by the pool).
_REUSED: ContextVar[bool] = ContextVar("anyllm_reused_connection", default=False)


class _Connector(aiohttp.TCPConnector):
    """The pool; it records, per request, whether the connection handed out is a reused one."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._used: weakref.WeakSet[Any] = weakref.WeakSet()  # protocols that served before

    async def connect(
        self,
        req: Any,
        traces: Any,
        timeout: aiohttp.ClientTimeout,  # noqa: ASYNC109 (its API)
    ) -> aiohttp.connector.Connection:
        connection = await super().connect(req, traces, timeout)
        protocol = connection.protocol
        _REUSED.set(protocol in self._used)  # same task: the caller reads it after a failure
        self._used.add(protocol)
        return connection


def _closed_unanswered(exc: BaseException | None) -> bool:
    """The connection broke before any answer: the upstream disconnected, reset it, or it was
    closing while the request was written ("Can not write request body"). Not a connect error:
    those happen on new connections."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        return False
    return isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientOSError)


class Session(Protocol):
    """What a backend calls on its session: ``UpstreamSession``, or a wrapper around one (the
    Google-token session of ``gcp_auth``), or a test's scripted stand-in."""

    async def post_json(
        self,
        backend: str,
        path: str,
        body: bytes,
        headers: Mapping[str, str],
        to_error: ErrorMapper,
        connect_timeout: float = ...,
        headers_out: list[tuple[str, str]] | None = None,
    ) -> bytes: ...

    def post_sse(
        self,
        backend: str,
        path: str,
        body: bytes,
        headers: Mapping[str, str],
        to_error: ErrorMapper,
        connect_timeout: float = ...,
        headers_out: list[tuple[str, str]] | None = None,
    ) -> AsyncGenerator[list[SSEFrame] | None, None]: ...

    async def aclose(self) -> None: ...


class UpstreamSession:
    """A pooled client for one upstream base URL."""

    def __init__(
        self,
        base_url: str,
        *,
        max_connections: int,
        headers: Mapping[str, str],
        ca_file: str | None = None,
        client_cert: str | None = None,
        client_key: str | None = None,
        encoded_paths: bool = False,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        # Paths sent byte for byte as given (already percent-encoded): a signed request (SigV4)
        # must go out on exactly the path that was signed, and yarl would otherwise decode
        # ``%3A`` back to ``:``.
        self._encoded = encoded_paths
        tls: ssl.SSLContext | bool = True  # the system's CAs
        if ca_file or client_cert:
            tls = ssl.create_default_context(cafile=ca_file)
            if client_cert:
                tls.load_cert_chain(client_cert, client_key)
        self._tls = tls
        self._headers = dict(headers)
        self._session = self._new_session(
            _Connector(limit=max_connections, ttl_dns_cache=60, ssl=tls)
        )
        self._fresh: aiohttp.ClientSession | None = None  # new connections, for stale retries

    def _new_session(self, connector: aiohttp.BaseConnector) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(
            connector=connector,
            headers=self._headers,
            timeout=_timeout(DEFAULT_CONNECT_TIMEOUT),
            # Never pick up proxies or netrc credentials from the environment of the pod.
            trust_env=False,
            # The request body is bytes already; no cookies between unrelated callers.
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=True,
        )

    @classmethod
    def for_backend(
        cls,
        settings: HttpSettings,
        headers: Mapping[str, str],
        *,
        base_url: str | None = None,
        encoded_paths: bool = False,
    ) -> UpstreamSession:
        """The session a backend's settings describe (pool size, TLS), with ``headers``."""
        return cls(
            base_url if base_url is not None else settings.base_url,
            max_connections=settings.max_connections,
            headers={"content-type": "application/json", **settings.headers, **headers},
            ca_file=settings.ca_file,
            client_cert=settings.client_cert,
            client_key=settings.client_key,
            encoded_paths=encoded_paths,
        )

    def url(self, path: str) -> str | yarl.URL:
        """The URL of ``path`` under the base URL, as it will be sent."""
        if self._encoded:
            return yarl.URL(self.base_url + path, encoded=True)
        return self.base_url + path

    async def aclose(self) -> None:
        await self._session.close()
        if self._fresh is not None:
            await self._fresh.close()

    async def _post(
        self, backend: str, path: str, body: bytes, headers: Mapping[str, str], connect: float
    ) -> aiohttp.ClientResponse:
        """POST on a pooled connection; once more on a new one when a reused connection turns
        out to have been closed by the upstream before it answered (see the module doc)."""
        url, timeout = self.url(path), _timeout(connect)
        _REUSED.set(False)
        try:
            with map_client_errors(backend, started=False):
                return await self._session.post(url, data=body, headers=headers, timeout=timeout)
        except UpstreamError as exc:
            if not (_REUSED.get() and _closed_unanswered(exc.__cause__)):
                raise
        if self._fresh is None:
            # Its own connection each time (closed after the answer): a pooled one could be
            # just as stale. Only ever used for these retries.
            self._fresh = self._new_session(
                aiohttp.TCPConnector(force_close=True, limit=0, ssl=self._tls)
            )
        with map_client_errors(backend, started=False):
            return await self._fresh.post(url, data=body, headers=headers, timeout=timeout)

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
        """POST ``body``; the response bytes on 2xx, else the upstream error from ``to_error``.
        ``headers_out`` receives the response headers a caller should see (``relayed_headers``)."""
        async with await self._post(backend, path, body, headers, connect_timeout) as response:
            with map_client_errors(backend, started=True):
                content = await response.read()
            report_response_headers(response.headers)
            if response.status >= 400:
                raise _with_backend(to_error(response.status, content, response.headers), backend)
            if headers_out is not None:
                headers_out += relayed_headers(response.headers)
            return content

    def post_sse(
        self,
        backend: str,
        path: str,
        body: bytes,
        headers: Mapping[str, str],
        to_error: ErrorMapper,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        headers_out: list[tuple[str, str]] | None = None,
    ) -> AsyncGenerator[list[SSEFrame] | None, None]:
        """``post_stream`` with SSE framing."""
        return self.post_stream(
            backend,
            path,
            body,
            headers,
            to_error,
            connect_timeout,
            headers_out,
            decoder=SSEDecoder(),
        )

    async def post_stream(
        self,
        backend: str,
        path: str,
        body: bytes,
        headers: Mapping[str, str],
        to_error: ErrorMapper,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        headers_out: list[tuple[str, str]] | None = None,
        *,
        decoder: FrameDecoder[F],
    ) -> AsyncGenerator[list[F] | None, None]:
        """POST ``body`` and yield the frames ``decoder`` finds in each read; ``None`` once the
        body ended.

        The trailing ``None`` lets the caller tell a clean end of the body from a cut connection
        (which raises instead). Closing this generator early closes the upstream connection.
        """
        response = await self._post(backend, path, body, headers, connect_timeout)
        try:
            report_response_headers(response.headers)
            if response.status >= 400:
                with map_client_errors(backend, started=True):
                    content = await response.read()
                raise _with_backend(to_error(response.status, content, response.headers), backend)
            if headers_out is not None:
                headers_out += relayed_headers(response.headers)
            read = response.content.readany
            while True:
                try:
                    piece = await read()
                except Exception:
                    # mapped here, not by a context manager entered around every read
                    with map_client_errors(backend, started=True):
                        raise
                if not piece:
                    break
                frames = decoder.feed(piece)
                if frames:
                    yield frames
            last = decoder.close()
            if last:
                yield last
            yield None
        finally:
            response.release()


def relayed_headers(headers: Mapping[str, str]) -> list[tuple[str, str]]:
    """The upstream response headers that reach the caller: Anthropic's own (``anthropic-*``,
    e.g. rate-limit state and organization id) and its ``request-id``."""
    return [
        (name.lower(), value)
        for name, value in headers.items()
        if name.lower().startswith("anthropic-") or name.lower() == "request-id"
    ]


@lru_cache(maxsize=64)
def _timeout(connect: float) -> aiohttp.ClientTimeout:
    return aiohttp.ClientTimeout(total=None, sock_connect=connect)


@contextmanager
def map_client_errors(backend: str, *, started: bool) -> Iterator[None]:
    """Translate aiohttp's exceptions into our error tree, keeping the cause.

    ``started``: whether the response had begun; a broken connection after that is a cut body.
    """
    try:
        yield
    except TimeoutError as exc:  # aiohttp's connect timers (its timeout errors subclass it)
        raise UpstreamError(
            f"{backend}: connection timed out", kind=FailureKind.CONNECT_TIMEOUT, backend=backend
        ) from exc
    except aiohttp.ClientPayloadError as exc:
        raise UpstreamError(
            f"{backend}: the response body was cut short",
            kind=FailureKind.INCOMPLETE,
            backend=backend,
        ) from exc
    except (aiohttp.ClientConnectionError, aiohttp.ClientResponseError, OSError) as exc:
        if started:
            raise UpstreamError(
                f"{backend}: the connection broke mid-response",
                kind=FailureKind.INCOMPLETE,
                backend=backend,
            ) from exc
        raise UpstreamError(
            f"{backend}: connection failed ({type(exc).__name__})",
            kind=FailureKind.CONNECT,
            backend=backend,
        ) from exc
    except aiohttp.ClientError as exc:
        raise UpstreamError(
            f"{backend}: HTTP client error ({type(exc).__name__})",
            kind=FailureKind.CONNECT,
            backend=backend,
        ) from exc


def _with_backend(error: UpstreamError, backend: str) -> UpstreamError:
    error.backend = backend
    return error
