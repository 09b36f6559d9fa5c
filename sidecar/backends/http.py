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
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncGenerator, Callable, Iterator, Mapping
from contextlib import contextmanager
from functools import lru_cache

import aiohttp

from sidecar.errors import FailureKind, UpstreamError
from sidecar.translate.sse import SSEDecoder, SSEFrame

from .base import report_response_headers
from .settings import HttpSettings

DEFAULT_CONNECT_TIMEOUT = 10.0
ErrorMapper = Callable[[int, bytes, Mapping[str, str]], UpstreamError]


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
    ) -> None:
        self.base_url = base_url.rstrip("/")
        tls: ssl.SSLContext | bool = True  # the system's CAs
        if ca_file or client_cert:
            tls = ssl.create_default_context(cafile=ca_file)
            if client_cert:
                tls.load_cert_chain(client_cert, client_key)
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=max_connections, ttl_dns_cache=60, ssl=tls),
            headers=dict(headers),
            timeout=_timeout(DEFAULT_CONNECT_TIMEOUT),
            # Never pick up proxies or netrc credentials from the environment of the pod.
            trust_env=False,
            # The request body is bytes already; no cookies between unrelated callers.
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=True,
        )

    @classmethod
    def for_backend(cls, settings: HttpSettings, headers: Mapping[str, str]) -> UpstreamSession:
        """The session a backend's settings describe (pool size, TLS), with ``headers``."""
        return cls(
            settings.base_url,
            max_connections=settings.max_connections,
            headers={"content-type": "application/json", **settings.headers, **headers},
            ca_file=settings.ca_file,
            client_cert=settings.client_cert,
            client_key=settings.client_key,
        )

    async def aclose(self) -> None:
        await self._session.close()

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
        with map_client_errors(backend, started=False):
            async with self._session.post(
                self.base_url + path,
                data=body,
                headers=headers,
                timeout=_timeout(connect_timeout),
            ) as response:
                with map_client_errors(backend, started=True):
                    content = await response.read()
                report_response_headers(response.headers)
                if response.status >= 400:
                    raise _with_backend(
                        to_error(response.status, content, response.headers), backend
                    )
                if headers_out is not None:
                    headers_out += relayed_headers(response.headers)
                return content

    async def post_sse(
        self,
        backend: str,
        path: str,
        body: bytes,
        headers: Mapping[str, str],
        to_error: ErrorMapper,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        headers_out: list[tuple[str, str]] | None = None,
    ) -> AsyncGenerator[list[SSEFrame] | None, None]:
        """POST ``body`` and yield the SSE frames of each read; ``None`` once the body ended.

        The trailing ``None`` lets the caller tell a clean end of the body from a cut connection
        (which raises instead). Closing this generator early closes the upstream connection.
        """
        with map_client_errors(backend, started=False):
            response = await self._session.post(
                self.base_url + path, data=body, headers=headers, timeout=_timeout(connect_timeout)
            )
        try:
            report_response_headers(response.headers)
            if response.status >= 400:
                with map_client_errors(backend, started=True):
                    content = await response.read()
                raise _with_backend(to_error(response.status, content, response.headers), backend)
            if headers_out is not None:
                headers_out += relayed_headers(response.headers)
            decoder = SSEDecoder()
            stream = response.content
            while True:
                with map_client_errors(backend, started=True):
                    piece = await stream.readany()
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
