"""A lean HTTP/1.1 client for the upstream hot path: keep-alive connections as asyncio
protocols, parsed by httptools (llhttp, the parser uvicorn uses), pooled per upstream.

Why not aiohttp: on a relayed request the HTTP client was a quarter of the sidecar's own CPU,
and on a paced stream every upstream read went through its stream reader, payload parser and
timeout helpers. The sidecar needs far less than a general client: POST a body it already holds
to one known origin, read the status and headers, then the body whole or read by read.

How it works. A ``Connection`` owns one socket and one llhttp parser. ``send`` writes the
request head and body in one call and waits for the response head; body bytes arrive in
``data_received`` (decoded from chunked, decompressed when the upstream sent gzip/deflate),
are queued, and ``read`` hands over what has arrived (``b""`` once the body ended), waking the
reader once per arrival. A body read to its end on a keep-alive connection returns the
connection to its ``Pool`` (last in, first out: the warmest socket first); a connection the
caller stops reading early, that broke, or that the upstream asked to close is closed. An idle
connection closes after ``KEEPALIVE`` seconds or as soon as the upstream closes it. Reading
pauses while more than ``_HIGH_WATER`` bytes wait for a slow reader (TCP then pushes back on
the upstream). There are no read timers here: the engine owns the per-attempt timers and cancels
the task, which closes the connection.

Failures are this module's own exceptions: ``ConnectError`` (no connection), ``Disconnected``
(the connection closed or broke before the response ended; ``answered`` says whether its head
had arrived, and ``reused`` whether the connection had served before), ``BadResponse`` (bytes
that are not HTTP). The session maps them to ``UpstreamError``s.
"""

from __future__ import annotations

import asyncio
import ssl
import zlib
from collections.abc import Mapping
from typing import cast

import httptools
from multidict import CIMultiDict, CIMultiDictProxy

KEEPALIVE = 15.0  # seconds an idle pooled connection stays open (aiohttp's default too)
_HIGH_WATER = 1 << 20
# Sent unless the caller's headers set them; host / content-length are always the request's own.
DEFAULT_HEADERS = {"user-agent": "anyllm-sidecar", "accept-encoding": "gzip, deflate"}
_OWN = frozenset({"content-length", "transfer-encoding", "connection"})

ResponseHeaders = CIMultiDictProxy[str]


class ConnectError(Exception):
    """No connection to the upstream: refused, unreachable, DNS, TLS handshake."""


class Disconnected(Exception):
    """The connection closed or broke before the response ended."""

    def __init__(self, message: str, *, answered: bool, reused: bool, clean: bool) -> None:
        super().__init__(message)
        self.answered = answered  # the response head had arrived
        self.reused = reused  # the connection had served a request before
        self.clean = clean  # closed by the upstream (end of stream), not reset or broken


class BadResponse(Exception):
    """What came back is not an HTTP/1.1 response (or not one this client can decode)."""


class Response:
    """A response's status and headers, and its body read through its connection."""

    __slots__ = ("_connection", "headers", "status")

    def __init__(self, connection: Connection, status: int, headers: ResponseHeaders) -> None:
        self._connection = connection
        self.status = status
        self.headers = headers

    async def read(self) -> bytes:
        """The next bytes of the body (all that has arrived), ``b""`` once it ended."""
        return await self._connection.read()

    async def body(self) -> bytes:
        """The whole body."""
        parts: list[bytes] = []
        while piece := await self._connection.read():
            parts.append(piece)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def release(self) -> None:
        """Done with it: back to the pool when the body was read to its end, else closed."""
        self._connection.release()


class Connection(asyncio.Protocol):
    """One keep-alive connection: one request at a time, its response parsed as it arrives."""

    def __init__(self, pool: Pool) -> None:
        self._pool = pool
        self._loop = pool.loop
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self.served = 0  # requests answered on it so far
        self.closed = False
        self._busy = False
        self._head: asyncio.Future[Response] | None = None
        self._header_list: list[tuple[str, str]] = []
        self._chunks: list[bytes] = []
        self._buffered = 0
        self._paused = False
        self._waiter: asyncio.Future[None] | None = None
        self._complete = False
        self._keep_alive = False
        self._until_eof = False  # a body framed by the connection's end (no length, not chunked)
        self._error: Exception | None = None
        self._decompress: zlib._Decompress | None = None
        self._expiry: asyncio.TimerHandle | None = None

    # ---------------------------------------------------------------- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        if not self._busy or self._complete:
            self.close()  # bytes nobody asked for: the connection can't be trusted any more
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(BadResponse(f"not an HTTP response ({exc})"))
            self.close()

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._cancel_expiry()
        if self._busy and not self._complete:
            if exc is None and self._until_eof and self._head is not None and self._head.done():
                self._finish_body()
            else:
                answered = self._head is not None and self._head.done()
                why = f" ({type(exc).__name__})" if exc is not None else ""
                self._fail(
                    Disconnected(
                        f"the upstream closed the connection{why}",
                        answered=answered,
                        reused=self.served > 0,
                        clean=exc is None,
                    )
                )
        self._pool.forget(self)

    def pause_writing(self) -> None:  # a large body to a slow upstream: the transport buffers it
        pass

    def resume_writing(self) -> None:
        pass

    # ---------------------------------------------------------------- httptools callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_list.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        if self._complete or (self._head is not None and self._head.done()):
            self._keep_alive = False  # a second response nobody asked for
            self._header_list = []
            return
        status = self._parser.get_status_code()
        headers = CIMultiDictProxy(CIMultiDict(self._header_list))
        self._header_list = []
        if status < 200:  # an interim answer (100 Continue): the real one follows
            return
        encoding = headers.get("content-encoding", "identity").strip().lower()
        if encoding in ("gzip", "deflate", "x-gzip"):
            self._decompress = zlib.decompressobj(wbits=47 if encoding != "deflate" else 15)
        elif encoding != "identity":
            self._fail(BadResponse(f"unsupported content-encoding {encoding!r}"))
            return
        self._until_eof = (
            "content-length" not in headers
            and "chunked" not in headers.get("transfer-encoding", "").lower()
            and status not in (204, 304)
        )
        head = self._head
        if head is not None and not head.done():
            head.set_result(Response(self, status, headers))

    def on_body(self, body: bytes) -> None:
        if self._complete:
            return
        if self._decompress is not None:
            try:
                body = self._decompress.decompress(body)
            except zlib.error as exc:
                self._fail(BadResponse(f"the body does not decompress ({exc})"))
                return
            if not body:
                return
        self._chunks.append(body)
        self._buffered += len(body)
        if self._buffered > _HIGH_WATER and not self._paused and self._transport is not None:
            self._paused = True
            self._transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if self._head is None or not self._head.done():
            return  # the end of an interim answer
        if self._complete:
            self._keep_alive = False
            return
        self._keep_alive = self._parser.should_keep_alive()
        self._finish_body()

    # ---------------------------------------------------------------- the exchange

    async def send(self, head: bytes, body: bytes) -> Response:
        """Write one request; its response once the head arrived."""
        assert self._transport is not None
        self._cancel_expiry()
        self._busy, self._complete, self._error = True, False, None
        self._until_eof, self._decompress = False, None
        self._head = self._loop.create_future()
        try:
            if len(body) < 16384:
                self._transport.write(head + body)
            else:
                self._transport.writelines((head, body))
        except RuntimeError as exc:  # the transport closed under us (uvloop raises)
            self.closed = True
            raise Disconnected(
                "the connection closed before the request was written",
                answered=False,
                reused=self.served > 0,
                clean=True,
            ) from exc
        return await self._head

    async def read(self) -> bytes:
        while True:
            chunks = self._chunks
            if chunks:
                data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
                self._chunks = []
                self._buffered = 0
                if self._paused and self._transport is not None:
                    self._paused = False
                    self._transport.resume_reading()
                return data
            if self._error is not None:
                raise self._error
            if self._complete:
                return b""
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    def release(self) -> None:
        if not self._busy:
            return
        self._busy = False
        reusable = self._complete and self._keep_alive and self._error is None and not self.closed
        self.served += 1
        self._chunks, self._buffered = [], 0
        if reusable and self._paused and self._transport is not None:
            self._paused = False  # ended with bytes unread: the next response must flow
            self._transport.resume_reading()
        if reusable and self._pool.put(self):
            self._expiry = self._loop.call_later(KEEPALIVE, self.close)
        else:
            self.close()
        self._pool.slot_done()

    def closing(self) -> bool:
        """Closed, or closing (the upstream hung up and the loop has not told us yet)."""
        return self.closed or self._transport is None or self._transport.is_closing()

    def close(self) -> None:
        self._cancel_expiry()
        if self._transport is not None and not self.closed:
            self.closed = True
            self._transport.abort()  # no lingering half-read response

    # ---------------------------------------------------------------- internals

    def _finish_body(self) -> None:
        if self._decompress is not None:
            tail = self._decompress.flush()
            if tail:
                self._chunks.append(tail)
        self._complete = True
        self._wake()

    def _fail(self, error: Exception) -> None:
        if self._error is None:
            self._error = error
        head = self._head
        if head is not None and not head.done():
            head.set_exception(error)
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _cancel_expiry(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None


class Pool:
    """Keep-alive connections to one origin; at most ``limit`` in use at once (0: unbounded)."""

    def __init__(
        self, host: str, port: int, tls: ssl.SSLContext | None, server_hostname: str, limit: int
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self._host, self._port = host, port
        self._tls, self._server_hostname = tls, server_hostname
        self._idle: list[Connection] = []
        self._slots = asyncio.Semaphore(limit) if limit > 0 else None
        self._closed = False

    async def acquire(self, connect_timeout: float, *, fresh: bool = False) -> Connection:
        """A pooled connection (the most recently used one), or a new one (always if ``fresh``);
        waits for a slot when the pool is at its limit."""
        if self._slots is not None:
            await self._slots.acquire()
        try:
            idle = self._idle
            while idle and not fresh:
                connection = idle.pop()
                if not connection.closing():
                    return connection
            return await self._connect(connect_timeout)
        except BaseException:
            self.slot_done()
            raise

    async def _connect(self, timeout: float) -> Connection:  # noqa: ASYNC109 (the connect timer)
        try:
            async with asyncio.timeout(timeout):
                _, protocol = await self.loop.create_connection(
                    lambda: Connection(self),
                    self._host,
                    self._port,
                    ssl=self._tls,
                    server_hostname=self._server_hostname if self._tls is not None else None,
                )
        except TimeoutError:
            raise
        except (OSError, ssl.SSLError, ValueError) as exc:
            raise ConnectError(f"{type(exc).__name__}: {exc}") from exc
        return protocol

    def put(self, connection: Connection) -> bool:
        """Keep ``connection`` for the next request; False when the pool is closed."""
        if self._closed:
            return False
        self._idle.append(connection)
        return True

    def forget(self, connection: Connection) -> None:
        if connection in self._idle:
            self._idle.remove(connection)

    def slot_done(self) -> None:
        if self._slots is not None:
            self._slots.release()

    def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()


def request_head(
    method: str,
    target: str,
    host: str,
    base: Mapping[str, str],
    headers: Mapping[str, str],
    length: int,
) -> bytes:
    """The request line and headers: ``base`` (lower-case names) then ``headers``
    (case-insensitively, the later wins), ``host`` unless ``headers`` sets it, and the framing
    headers this client owns (``content-length``)."""
    merged = dict(base)
    for name, value in headers.items():
        merged[name.lower()] = value
    merged.setdefault("host", host)
    lines = [f"{method} {target} HTTP/1.1\r\n"]
    for name, value in merged.items():
        if name in _OWN:
            continue
        if "\n" in value or "\r" in value or "\n" in name or "\r" in name:
            raise ValueError(f"header {name!r} holds a line break")
        lines.append(f"{name}: {value}\r\n")
    lines.append(f"content-length: {length}\r\n\r\n")
    return "".join(lines).encode("utf-8")
