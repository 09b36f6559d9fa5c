"""What the HTTP backends share: one pooled upstream session each (the lean HTTP/1.1 client of
``h1.py``), and the one place where the client's exceptions become ``UpstreamError``s.

Why its own client: on this hot path the HTTP client is most of the sidecar's own CPU. Measured
on the same machine against a local nginx, one small POST cost 1.27 ms of CPU with httpx
(httpcore + h11 + anyio), 0.22 ms with aiohttp (its C parser, no extra layers), and less again
with ``h1.py`` (llhttp through httptools, nothing the sidecar does not use); see the README's
benchmark section.

The session has a connect timeout but no read timeout: the engine owns the per-attempt timers
(TTFT, idle, attempt, overall) and cancels the request when one fires, which closes the
connection at once. A body read to its end returns the connection to the pool. Keys are sent
from configuration only; nothing of the caller's credentials reaches an upstream. Proxies and
netrc files in the pod's environment are never used.

Stale pooled connections: an upstream may close a keep-alive connection at any time (after an
error, when idle) without saying so, and a request can be sent on it just as it closes. When a
request dies that way — on a *reused* connection, before any byte of the answer: the upstream
disconnects, resets the connection (its kernel's answer to data on a socket it closed), or the
request cannot even be written — it is sent once more on a new connection of its own,
invisibly: not an attempt, no fallback. On a new connection the same failures are the
upstream's, as before. Safe because the upstream never answered; HTTP clients do the same for
idempotent requests (RFC 9112, 9.3.1).
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncGenerator, Callable, Mapping
from functools import lru_cache
from typing import NoReturn, Protocol, TypeVar

import yarl

from sidecar.errors import FailureKind, UpstreamError
from sidecar.translate.sse import SSEDecoder, SSEFrame

from . import h1
from .base import report_response_headers
from .settings import HttpSettings

DEFAULT_CONNECT_TIMEOUT = 10.0
ErrorMapper = Callable[[int, bytes, Mapping[str, str]], UpstreamError]
F = TypeVar("F")


class FrameDecoder(Protocol[F]):
    """Sans-IO framing of a streamed body (SSE, AWS event-stream): bytes in, frames out."""

    def feed(self, data: bytes) -> list[F]: ...

    def close(self) -> list[F]: ...


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
        # must go out on exactly the path that was signed.
        self._encoded = encoded_paths
        origin = yarl.URL(self.base_url)
        if origin.scheme not in ("http", "https") or not origin.host:
            raise ValueError(f"not an http(s) URL: {self.base_url!r}")
        self._tls: ssl.SSLContext | None = None
        if origin.scheme == "https":
            self._tls = _tls_context(ca_file, client_cert, client_key)
        self._origin = (origin.host, origin.port or (443 if self._tls else 80))
        self._host = str(origin.host_port_subcomponent)
        self._headers = {**h1.DEFAULT_HEADERS, **{k.lower(): v for k, v in headers.items()}}
        self._limit = max_connections
        self._pool: h1.Pool | None = None  # made on first use, inside the running loop

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
        if self._pool is not None:
            self._pool.close()

    def _target(self, path: str) -> str:
        return _request_target(self.base_url + path, self._encoded)

    async def _post(
        self, backend: str, path: str, body: bytes, headers: Mapping[str, str], connect: float
    ) -> h1.Response:
        """POST on a pooled connection; once more on a new one when a reused connection turns
        out to have been closed by the upstream before it answered (see the module doc)."""
        if self._pool is None:
            self._pool = h1.Pool(*self._origin, self._tls, self._origin[0], self._limit)
        try:
            head = h1.request_head(
                "POST", self._target(path), self._host, self._headers, headers, len(body)
            )
            for fresh in (False, True):
                connection = await self._pool.acquire(connect, fresh=fresh)
                try:
                    return await connection.send(head, body)
                except h1.Disconnected as exc:
                    connection.release()
                    if fresh or exc.answered or not exc.reused:
                        raise
                except BaseException:
                    connection.release()
                    raise
        except Exception as exc:
            _raise_mapped(exc, backend, started=False)
        raise AssertionError("unreachable")  # pragma: no cover

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
        response = await self._post(backend, path, body, headers, connect_timeout)
        try:
            content = await response.body()
        except Exception as exc:
            _raise_mapped(exc, backend, started=True)
        finally:
            response.release()
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
                try:
                    content = await response.body()
                except Exception as exc:
                    _raise_mapped(exc, backend, started=True)
                raise _with_backend(to_error(response.status, content, response.headers), backend)
            if headers_out is not None:
                headers_out += relayed_headers(response.headers)
            read = response.read
            while True:
                try:
                    piece = await read()
                except Exception as exc:
                    # mapped here, not by a context manager entered around every read
                    _raise_mapped(exc, backend, started=True)
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


@lru_cache(maxsize=1024)
def _request_target(url: str, encoded: bool) -> str:
    """The request target (path and query) of ``url``: as given when ``encoded``, else
    percent-encoded where it must be (what any HTTP client does to a path it is handed)."""
    return yarl.URL(url, encoded=encoded).raw_path_qs


@lru_cache(maxsize=16)
def _tls_context(
    ca_file: str | None, client_cert: str | None, client_key: str | None
) -> ssl.SSLContext:
    """The system's CAs (or ``ca_file``), and a client certificate when configured; built once
    per distinct setting (loading CAs takes milliseconds)."""
    context = ssl.create_default_context(cafile=ca_file)
    if client_cert:
        context.load_cert_chain(client_cert, client_key)
    return context


def relayed_headers(headers: Mapping[str, str]) -> list[tuple[str, str]]:
    """The upstream response headers that reach the caller: Anthropic's own (``anthropic-*``,
    e.g. rate-limit state and organization id) and its ``request-id``."""
    return [
        (name.lower(), value)
        for name, value in headers.items()
        if name.lower().startswith("anthropic-") or name.lower() == "request-id"
    ]


def client_error(exc: Exception, backend: str, *, started: bool) -> UpstreamError | None:
    """The ``UpstreamError`` the client's exception ``exc`` stands for (None when it is not
    the client's: raise it as it is). ``started``: whether the response had begun; a broken
    connection after that is a cut body."""
    if isinstance(exc, TimeoutError):  # the connect timer
        return UpstreamError(
            f"{backend}: connection timed out", kind=FailureKind.CONNECT_TIMEOUT, backend=backend
        )
    if isinstance(exc, h1.ConnectError):
        return UpstreamError(
            f"{backend}: connection failed ({exc})", kind=FailureKind.CONNECT, backend=backend
        )
    if isinstance(exc, h1.Disconnected):
        if exc.answered and exc.clean:
            return UpstreamError(
                f"{backend}: the response body was cut short",
                kind=FailureKind.INCOMPLETE,
                backend=backend,
            )
        if started or exc.answered:
            return UpstreamError(
                f"{backend}: the connection broke mid-response",
                kind=FailureKind.INCOMPLETE,
                backend=backend,
            )
        return UpstreamError(
            f"{backend}: connection failed ({exc})", kind=FailureKind.CONNECT, backend=backend
        )
    if isinstance(exc, h1.BadResponse):
        return UpstreamError(
            f"{backend}: {exc}", kind=FailureKind.INVALID_RESPONSE, backend=backend
        )
    if isinstance(exc, OSError | ValueError):  # writing to a socket, a header that can't be sent
        return UpstreamError(
            f"{backend}: connection failed ({type(exc).__name__})",
            kind=FailureKind.INCOMPLETE if started else FailureKind.CONNECT,
            backend=backend,
        )
    return None


def _raise_mapped(exc: Exception, backend: str, *, started: bool) -> NoReturn:
    """Raise the ``UpstreamError`` the client's exception ``exc`` stands for, or ``exc``."""
    error = client_error(exc, backend, started=started)
    if error is None:
        raise exc
    raise error from exc


def _with_backend(error: UpstreamError, backend: str) -> UpstreamError:
    error.backend = backend
    return error
