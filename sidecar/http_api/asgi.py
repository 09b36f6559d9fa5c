"""The ASGI plumbing every HTTP door shares, and the router that assembles the doors.

A door (``anthropic_door``, ``openai_door``, ``ops``) is a set of routes plus the way it shows
an error (its own error body and status codes). ``HttpApp`` is the one ASGI application: it
reads the request id, checks access, finds the route by (method, path) — a dict lookup, then a
few prefix routes — and runs its handler; a ``SidecarError`` a handler raises is rendered by
that route's door, a bug of ours too (as an internal error, details in the log). Two doors may
serve the same path (``GET /v1/models``): the first whose ``claims`` accepts the request wins.

Here too: the request body read once with the size cap (``Exchange.body``), JSON sending, the
response headers built from the engine's outcome, and the disconnect watcher: once a request
has run for 50 ms, a task waits for the client to go away and cancels the handler when it
does, which cancels the upstream request at once (engine and backends close in ``finally``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import Awaitable, Callable, Mapping, MutableMapping, Sequence
from typing import Any, Protocol

from sidecar.auth import TokenCheck
from sidecar.errors import (
    AuthenticationError,
    InternalError,
    InvalidRequestError,
    NotFoundError,
    RequestTooLargeError,
    SidecarError,
)
from sidecar.ids import new_request_id
from sidecar.logs import log

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

JSON_HEADER = (b"content-type", b"application/json")
SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]
_TOKEN = re.compile(r"[\x21-\x7e]+")  # printable ASCII, no spaces: safe in any header
_MAX_REQUEST_ID = 128


class ClientGone(Exception):
    """The client disconnected before its request body was complete."""


@dataclasses.dataclass(slots=True)
class Exchange:
    """One HTTP request being served: the ASGI triple and what the router read of it."""

    scope: Scope
    receive: Receive
    send: Send
    request_id: str
    path: str
    max_body: int
    # The request's headers by name, the first of each name kept; made at the first lookup,
    # so a request asking for several headers scans them once.
    _index: dict[bytes, bytes] | None = None

    def header(self, name: bytes) -> str | None:
        index = self._index
        if index is None:
            headers = self.scope["headers"]
            index = self._index = dict(reversed(headers if type(headers) is list else [*headers]))
        value = index.get(name)
        return None if value is None else value.decode("latin-1")

    async def body(self) -> bytes:
        """The request body, read once, at most ``max_body`` bytes (else a 413)."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                raise ClientGone
            chunk: bytes = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                raise RequestTooLargeError(
                    f"request body is larger than the limit of {self.max_body} bytes"
                )
            chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def deadline(self) -> float | None:
        """The request's whole time budget from ``x-anyllm-timeout``, as a loop-clock time."""
        timeout = self.header(b"x-anyllm-timeout")
        if timeout is None:
            return None
        try:
            seconds = float(timeout)
        except ValueError:
            seconds = -1.0
        if not seconds > 0 or seconds == float("inf"):
            raise InvalidRequestError(
                f"x-anyllm-timeout: expected a positive number of seconds, got {timeout[:40]!r}",
                field="x-anyllm-timeout",
            )
        return asyncio.get_running_loop().time() + seconds


Handler = Callable[[Exchange], Awaitable[None]]


class Door(Protocol):
    """A front door: its routes and how it shows an error."""

    def routes(self) -> Mapping[tuple[str, str], Handler]:
        """(method, path) → handler; a path ending in ``/*`` matches anything below it."""
        ...

    def claims(self, exchange: Exchange) -> bool:
        """Whether this door serves a path that another door serves too."""
        ...

    async def send_error(self, exchange: Exchange, error: SidecarError) -> None: ...


@dataclasses.dataclass(frozen=True, slots=True)
class _Route:
    handler: Handler
    door: Door


class HttpApp:
    """The HTTP surface: every door's routes behind one router, access control and errors."""

    def __init__(
        self,
        doors: Sequence[Door],
        *,
        max_body_bytes: int,
        auth: TokenCheck | None = None,
        open_paths: frozenset[str] = frozenset(),
    ) -> None:
        self._default = doors[0]  # shows errors of requests no route matched
        self._auth = auth or TokenCheck(())
        self._open = open_paths  # reached without a token (probes, scrapers)
        self._max_body = max_body_bytes
        self._exact: dict[tuple[str, str], list[_Route]] = {}
        self._prefix: list[tuple[str, str, list[_Route]]] = []
        for door in doors:
            for (method, path), handler in door.routes().items():
                route = _Route(handler, door)
                if path.endswith("/*"):
                    prefix = path[:-1]
                    for m, p, routes in self._prefix:
                        if (m, p) == (method, prefix):
                            routes.append(route)
                            break
                    else:
                        self._prefix.append((method, prefix, [route]))
                else:
                    self._exact.setdefault((method, path), []).append(route)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return  # lifespan is off; websockets are not served
        path: str = scope["path"].rstrip("/") or "/"
        exchange = Exchange(scope, receive, send, "", path, self._max_body)
        exchange.request_id = _request_id(exchange)
        route = self._route(exchange)
        door = route.door if route is not None else self._default
        try:
            if self._auth.enabled and path not in self._open and not self._authorized(exchange):
                raise AuthenticationError(
                    "a valid sidecar token is required (x-api-key or authorization: Bearer)"
                )
            if route is None:
                if any(p == path for _, p in self._exact):
                    raise InvalidRequestError(f"method {scope['method']} is not allowed on {path}")
                raise NotFoundError(f"no such endpoint: {path}")
            await route.handler(exchange)
        except SidecarError as exc:
            await door.send_error(exchange, exc)
        except ClientGone:
            return  # the caller left while sending its body: nobody to answer
        except Exception as exc:  # a bug of ours: the door's error body, details in the log
            log(
                "internal_error", level=40, request_id=exchange.request_id, error=type(exc).__name__
            )
            error = InternalError(f"internal error (request {exchange.request_id})")
            await door.send_error(exchange, error)

    def _route(self, exchange: Exchange) -> _Route | None:
        method = exchange.scope["method"]
        routes = self._exact.get((method, exchange.path))
        if routes is None:
            for m, prefix, candidates in self._prefix:
                if m == method and exchange.path.startswith(prefix):
                    routes = candidates
                    break
            else:
                return None
        if len(routes) == 1:
            return routes[0]
        return next((r for r in routes if r.door.claims(exchange)), routes[-1])

    def _authorized(self, exchange: Exchange) -> bool:
        return self._auth.allows(exchange.header(b"x-api-key")) or self._auth.allows(
            exchange.header(b"authorization")
        )


def _request_id(exchange: Exchange) -> str:
    """The caller's ``x-request-id`` when it is a plain token (it is echoed in headers and sent
    upstream), else a fresh one."""
    given = exchange.header(b"x-request-id")
    if given is not None and 0 < len(given) <= _MAX_REQUEST_ID and _TOKEN.fullmatch(given):
        return given
    return new_request_id()


# --------------------------------------------------------------------------- sending


def encode_headers(pairs: list[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    """Outcome metadata as response headers (``request-id`` too, unless an upstream's own
    ``request-id`` is relayed)."""
    out = []
    ids: list[bytes] = []  # the x-request-id values, to repeat as request-id
    relayed = False  # an upstream's own request-id is among the pairs
    for key, value in pairs:
        encoded = value.encode("latin-1")
        out.append((_KEYS.get(key) or key.encode("latin-1"), encoded))
        if key == "x-request-id":
            ids.append(encoded)
        elif key == "request-id":
            relayed = True
    if not relayed:
        out += [(b"request-id", encoded) for encoded in ids]
    return out


# The names outcome metadata always uses, encoded once.
_KEYS = {
    key: key.encode("latin-1")
    for key in (
        "x-request-id",
        "x-anyllm-chain",
        "x-anyllm-backend",
        "x-anyllm-attempts",
        "x-anyllm-degradation",
        "x-anyllm-fallback-exhausted",
        "x-anyllm-hedged",
        "x-should-retry",
        "request-id",
        "retry-after",
    )
}


async def send_json(send: Send, status: int, body: bytes, metadata: list[tuple[str, str]]) -> None:
    headers = [JSON_HEADER, *encode_headers(metadata)]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def error_metadata(error: SidecarError, request_id: str) -> list[tuple[str, str]]:
    """The headers of an error response: the outcome's, and ``retry-after`` when known."""
    metadata = error.metadata or [("x-request-id", request_id)]
    if error.retry_after is not None:
        metadata = [*metadata, ("retry-after", str(max(1, round(error.retry_after))))]
    return metadata


async def start_sse(send: Send, metadata: list[tuple[str, str]]) -> None:
    headers = SSE_HEADERS + encode_headers(metadata)
    await send({"type": "http.response.start", "status": 200, "headers": headers})


def send_more(send: Send, body: bytes) -> Awaitable[None]:
    # The server's own awaitable, not a coroutine around it: one frame less per event.
    return send({"type": "http.response.body", "body": body, "more_body": True})


async def end_body(send: Send) -> None:
    await send({"type": "http.response.body", "body": b"", "more_body": False})


# --------------------------------------------------------------------------- disconnects


class Finished:
    """``done`` once the final byte is handed to the server, so a late disconnect is no cancel;
    ``gone`` when the client left and the handler was cancelled for it."""

    __slots__ = ("done", "gone")

    def __init__(self) -> None:
        self.done = False
        self.gone = False


async def run_watched(exchange: Exchange, work: Callable[[Finished], Awaitable[None]]) -> None:
    """Run ``work`` with the disconnect watcher: a client that leaves cancels it, quietly."""
    finished = Finished()
    watcher = _DisconnectWatch(exchange.receive, finished)
    try:
        await work(finished)
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if not finished.gone or task is None:
            raise
        task.uncancel()  # the client left: the upstream work is cancelled, nothing to send
    finally:
        watcher.cancel()


# How long a request runs before a task starts watching for its client to leave. Most
# requests that finish sooner never pay for the watcher (a task woken at least once: ~0.1 ms of
# CPU per request, measured with `make bench`); a client that leaves earlier is noticed then.
WATCH_AFTER = 0.05


class _DisconnectWatch:
    """Cancels the handler task when the client disconnects, once the request runs long enough
    to be worth watching."""

    __slots__ = ("_finished", "_handler", "_receive", "_task", "_timer")

    def __init__(self, receive: Receive, finished: Finished) -> None:
        self._receive = receive
        self._finished = finished
        self._handler = asyncio.current_task()
        self._task: asyncio.Task[None] | None = None
        self._timer = asyncio.get_running_loop().call_later(WATCH_AFTER, self._start)

    def _start(self) -> None:
        if not self._finished.done:
            self._task = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                if not self._finished.done and self._handler is not None:
                    self._finished.gone = True
                    self._handler.cancel()
                return

    def cancel(self) -> None:
        self._timer.cancel()
        if self._task is not None:
            self._task.cancel()
