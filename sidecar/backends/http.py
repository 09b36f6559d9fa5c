"""What the HTTP backends share: one pooled httpx client each, and the one place where httpx
exceptions become ``UpstreamError``s.

The client has a connect timeout but no read timeout: the engine owns the per-attempt timers
(TTFT, idle, attempt, overall) and cancels the request when one fires, which closes the
connection at once. Keys are sent from configuration only; nothing of the caller's
credentials reaches an upstream.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Iterator, Mapping
from contextlib import contextmanager

import httpx

from sidecar.errors import FailureKind, UpstreamError
from sidecar.translate.sse import SSEDecoder, SSEFrame


def make_client(
    base_url: str, *, max_connections: int, headers: Mapping[str, str]
) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=base_url.rstrip("/"),
        headers=dict(headers),
        timeout=httpx.Timeout(None, connect=DEFAULT_CONNECT_TIMEOUT),
        limits=httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        ),
        # Never pick up proxies or netrc credentials from the environment of the pod.
        trust_env=False,
    )


@contextmanager
def map_httpx_errors(backend: str) -> Iterator[None]:
    """Translate httpx's exceptions into our error tree, keeping the cause."""
    try:
        yield
    except httpx.ConnectTimeout as exc:
        raise UpstreamError(
            f"{backend}: connection timed out", kind=FailureKind.CONNECT_TIMEOUT, backend=backend
        ) from exc
    except httpx.TimeoutException as exc:
        raise UpstreamError(
            f"{backend}: timed out reading the response",
            kind=FailureKind.READ_TIMEOUT,
            backend=backend,
        ) from exc
    except (httpx.ConnectError, httpx.ReadError, httpx.WriteError) as exc:
        raise UpstreamError(
            f"{backend}: connection failed ({type(exc).__name__})",
            kind=FailureKind.CONNECT,
            backend=backend,
        ) from exc
    except (httpx.RemoteProtocolError, httpx.LocalProtocolError) as exc:
        raise UpstreamError(
            f"{backend}: the connection broke mid-response",
            kind=FailureKind.INCOMPLETE,
            backend=backend,
        ) from exc
    except httpx.HTTPError as exc:
        raise UpstreamError(
            f"{backend}: HTTP error ({type(exc).__name__})",
            kind=FailureKind.CONNECT,
            backend=backend,
        ) from exc


DEFAULT_CONNECT_TIMEOUT = 10.0
ErrorMapper = Callable[[int, bytes, Mapping[str, str]], UpstreamError]


async def post_json(
    client: httpx.AsyncClient,
    backend: str,
    path: str,
    body: bytes,
    headers: Mapping[str, str],
    to_error: ErrorMapper,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
) -> bytes:
    """POST ``body``; the response bytes on 2xx, else the upstream error mapped by ``to_error``."""
    timeout = httpx.Timeout(None, connect=connect_timeout)
    with map_httpx_errors(backend):
        response = await client.post(path, content=body, headers=headers, timeout=timeout)
    if response.status_code >= 400:
        raise _with_backend(
            to_error(response.status_code, response.content, response.headers), backend
        )
    return response.content


async def post_sse(
    client: httpx.AsyncClient,
    backend: str,
    path: str,
    body: bytes,
    headers: Mapping[str, str],
    to_error: ErrorMapper,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
) -> AsyncGenerator[SSEFrame | None, None]:
    """POST ``body`` and yield each SSE frame; ``None`` once the body ended.

    The trailing ``None`` lets the caller tell a clean end of the body from a cut connection
    (which raises instead). Closing this generator closes the upstream connection.
    """
    timeout = httpx.Timeout(None, connect=connect_timeout)
    request = client.build_request("POST", path, content=body, headers=headers, timeout=timeout)
    with map_httpx_errors(backend):
        response = await client.send(request, stream=True)
    try:
        if response.status_code >= 400:
            with map_httpx_errors(backend):
                content = await response.aread()
            raise _with_backend(to_error(response.status_code, content, response.headers), backend)
        decoder = SSEDecoder()
        with map_httpx_errors(backend):
            async for piece in response.aiter_raw():
                for frame in decoder.feed(piece):
                    yield frame
        for frame in decoder.close():
            yield frame
        yield None
    finally:
        await response.aclose()


def _with_backend(error: UpstreamError, backend: str) -> UpstreamError:
    error.backend = backend
    return error
