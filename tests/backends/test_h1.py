"""The lean HTTP/1.1 client against a real socket server on 127.0.0.1 that answers each request
with scripted bytes: framing (length, chunked, until the end), keep-alive reuse, closing, the
upstream's failures, decompression, flow control and the pool's limit."""

from __future__ import annotations

import asyncio
import gzip
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest

from sidecar.backends import h1

Answer = Callable[[bytes], bytes | None]  # request bytes -> response bytes (None: hang up)
Serve = Callable[..., Awaitable["Server"]]


class Last(bytes):
    """Response bytes after which the server hangs up."""


@dataclass
class Server:
    """Answers request N with ``answers[N]`` (the last one repeats); counts its connections."""

    answers: list[Answer]
    connections: int = 0
    requests: list[bytes] = field(default_factory=list)
    closed: int = 0
    port: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                request = head + await reader.readexactly(length)
                self.requests.append(request)
                answer = self.answers[min(len(self.requests), len(self.answers)) - 1](request)
                if answer is None:
                    break
                writer.write(answer)
                await writer.drain()
                if isinstance(answer, Last):
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.closed += 1
            writer.close()


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    servers: list[asyncio.Server] = []

    async def start(*answers: Answer) -> Server:
        state = Server(list(answers))
        server = await asyncio.start_server(state.handle, "127.0.0.1", 0)
        state.port = server.sockets[0].getsockname()[1]
        servers.append(server)
        return state

    yield start
    for server in servers:
        server.close()


def fixed(body: bytes, status: int = 200, headers: str = "", *, close: bool = False) -> Answer:
    extra = "connection: close\r\n" if close else ""
    head = f"HTTP/1.1 {status} X\r\ncontent-length: {len(body)}\r\n{headers}{extra}\r\n"
    return lambda _: head.encode() + body


def chunked(*pieces: bytes) -> Answer:
    def answer(_: bytes) -> bytes:
        out = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
        for piece in pieces:
            out += f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
        return out + b"0\r\n\r\n"

    return answer


def pool(server: Server, limit: int = 0) -> h1.Pool:
    return h1.Pool("127.0.0.1", server.port, None, "127.0.0.1", limit)


def head(length: int = 2, **headers: str) -> bytes:
    return h1.request_head("POST", "/v1/x", "127.0.0.1", {}, headers, length)


async def exchange(p: h1.Pool, body: bytes = b"{}") -> tuple[int, bytes, h1.Connection]:
    connection = await p.acquire(5.0)
    response = await connection.send(head(len(body)), body)
    try:
        return response.status, await response.body(), connection
    finally:
        response.release()


FRAMINGS = {
    "content-length": (fixed(b"hello"), b"hello"),
    "chunked": (chunked(b"he", b"l", b"lo"), b"hello"),
    "empty": (fixed(b""), b""),
}


@pytest.mark.parametrize(("answer", "body"), FRAMINGS.values(), ids=FRAMINGS.keys())
async def test_bodies_are_read_whole_and_the_connection_is_kept(
    serve: Serve, answer: Answer, body: bytes
) -> None:
    server = await serve(answer)
    p = pool(server)
    try:
        for _ in range(3):
            status, got, _connection = await exchange(p)
            assert (status, got) == (200, body)
    finally:
        p.close()
    assert server.connections == 1
    assert len(server.requests) == 3


async def test_until_eof_body_completes_when_the_upstream_closes(
    serve: Serve,
) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await reader.readexactly(2)
        writer.write(b"HTTP/1.1 200 OK\r\n\r\nuntil ")
        await writer.drain()
        writer.write(b"the end")
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    p = h1.Pool("127.0.0.1", server.sockets[0].getsockname()[1], None, "127.0.0.1", 0)
    try:
        connection = await p.acquire(5.0)
        response = await connection.send(head(), b"{}")
        assert await response.body() == b"until the end"
        response.release()
        assert connection.closed  # no keep-alive without framing
    finally:
        p.close()
        server.close()


CLOSING = {
    "connection-close": fixed(b"x", close=True),
    "http-1.0": lambda _: b"HTTP/1.0 200 OK\r\ncontent-length: 1\r\n\r\nx",
}


@pytest.mark.parametrize("answer", CLOSING.values(), ids=CLOSING.keys())
async def test_a_connection_the_upstream_closes_is_not_reused(serve: Serve, answer: Answer) -> None:
    server = await serve(answer)
    p = pool(server)
    try:
        await exchange(p)
        await exchange(p)
    finally:
        p.close()
    assert server.connections == 2


async def test_stopping_early_closes_the_connection(
    serve: Serve,
) -> None:
    part = b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc"  # the rest never comes
    server = await serve(lambda _: part, fixed(b"ok"))
    p = pool(server)
    try:
        connection = await p.acquire(5.0)
        response = await connection.send(head(), b"{}")
        assert await response.read() == b"abc"
        response.release()  # before the end of the body
        assert connection.closed
        assert (await exchange(p))[:2] == (200, b"ok")
    finally:
        p.close()
    assert server.connections == 2


FAILURES = {
    "hang-up-before-answering": (lambda _: None, h1.Disconnected, False),
    "garbage": (lambda _: b"SSH-2.0-OpenSSH\r\n\r\n", h1.BadResponse, None),
    "cut-mid-body": (
        lambda _: Last(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc"),
        h1.Disconnected,
        True,
    ),
    "unknown-encoding": (fixed(b"x", headers="content-encoding: zstd\r\n"), h1.BadResponse, None),
    "bad-gzip": (fixed(b"notgzip", headers="content-encoding: gzip\r\n"), h1.BadResponse, None),
}


@pytest.mark.parametrize(("answer", "error", "answered"), FAILURES.values(), ids=FAILURES.keys())
async def test_upstream_failures_are_this_modules_errors(
    serve: Serve,
    answer: Answer,
    error: type[Exception],
    answered: bool | None,
) -> None:
    server = await serve(answer, lambda _: None)
    p = pool(server)
    try:
        with pytest.raises(error) as info:
            connection = await p.acquire(5.0)
            try:
                response = await connection.send(head(), b"{}")
                await response.body()
            finally:
                connection.release()
        if isinstance(info.value, h1.Disconnected):
            assert info.value.answered is answered
            assert info.value.reused is False
    finally:
        p.close()


async def test_a_reused_connection_the_upstream_dropped_says_so(
    serve: Serve,
) -> None:
    server = await serve(fixed(b"ok"), lambda _: None)
    p = pool(server)
    try:
        await exchange(p)
        connection = await p.acquire(5.0)
        with pytest.raises(h1.Disconnected) as info:
            await connection.send(head(), b"{}")
        connection.release()
    finally:
        p.close()
    assert (info.value.reused, info.value.answered) == (True, False)


ENCODINGS = {
    "gzip": ("gzip", gzip.compress(b"hello " * 1000)),
    "deflate": ("deflate", zlib.compress(b"hello " * 1000)),
    "identity": ("identity", b"hello " * 1000),
}


@pytest.mark.parametrize(("encoding", "wire"), ENCODINGS.values(), ids=ENCODINGS.keys())
async def test_compressed_bodies_are_decompressed(serve: Serve, encoding: str, wire: bytes) -> None:
    server = await serve(fixed(wire, headers=f"content-encoding: {encoding}\r\n"))
    p = pool(server)
    try:
        _, body, _ = await exchange(p)
    finally:
        p.close()
    assert body == b"hello " * 1000


async def test_an_interim_answer_is_skipped(
    serve: Serve,
) -> None:
    final = fixed(b"done")
    server = await serve(lambda r: b"HTTP/1.1 100 Continue\r\n\r\n" + (final(r) or b""))
    p = pool(server)
    try:
        assert (await exchange(p))[:2] == (200, b"done")
    finally:
        p.close()


async def test_a_slow_reader_pauses_the_upstream_and_loses_nothing(
    serve: Serve,
) -> None:
    big = bytes(range(256)) * (5 * 4096)  # 5 MB, well past the high-water mark
    server = await serve(fixed(big))
    p = pool(server)
    try:
        connection = await p.acquire(5.0)
        response = await connection.send(head(), b"{}")
        got = bytearray(await response.read())
        await asyncio.sleep(0.5)  # the upstream sends on meanwhile, past the high-water mark
        paused = connection._paused
        while piece := await response.read():
            got += piece
        response.release()
    finally:
        p.close()
    assert paused
    assert bytes(got) == big


async def test_a_body_left_unread_after_a_pause_does_not_stall_the_next_response(
    serve: Serve, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Reading pauses past the high-water mark; a body that ended in the same read is complete,
    # so its connection goes back to the pool even though the caller read none of it (a decoder
    # that gave up): the pooled connection must read again.
    monkeypatch.setattr(h1, "_HIGH_WATER", 8)
    server = await serve(fixed(b"x" * 64), fixed(b"second"))
    p = pool(server)
    try:
        connection = await p.acquire(5.0)
        response = await connection.send(head(), b"{}")
        for _ in range(500):  # generous: the body only has to arrive
            if connection._complete:
                break
            await asyncio.sleep(0.01)
        assert connection._complete and connection._paused
        response.release()
        status, body, again = await asyncio.wait_for(exchange(p), 10)
    finally:
        p.close()
    assert (status, body) == (200, b"second")
    assert again is connection and server.connections == 1


async def test_the_pool_limit_holds_requests_until_a_connection_is_free(
    serve: Serve,
) -> None:
    server = await serve(fixed(b"ok"))
    p = pool(server, limit=1)
    try:
        results = await asyncio.gather(*(exchange(p) for _ in range(5)))
    finally:
        p.close()
    assert [r[:2] for r in results] == [(200, b"ok")] * 5
    assert server.connections == 1


async def test_idle_connections_expire(serve: Serve, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(h1, "KEEPALIVE", 0.01)
    server = await serve(fixed(b"ok"))
    p = pool(server)
    try:
        _, _, connection = await exchange(p)
        for _ in range(500):  # generous: the expiry only has to happen
            if connection.closed:
                break
            await asyncio.sleep(0.01)
        assert connection.closed
        await exchange(p)
    finally:
        p.close()
    assert server.connections == 2


async def test_an_unreachable_upstream_is_a_connect_error() -> None:
    probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()
    p = h1.Pool("127.0.0.1", port, None, "127.0.0.1", 0)
    with pytest.raises(h1.ConnectError, match="ConnectionRefused"):
        await p.acquire(5.0)


async def test_a_connect_that_never_finishes_times_out(monkeypatch: pytest.MonkeyPatch) -> None:
    p = h1.Pool("127.0.0.1", 9, None, "127.0.0.1", 1)

    async def never(*args: object, **kwargs: object) -> None:
        await asyncio.Event().wait()

    monkeypatch.setattr(p.loop, "create_connection", never)
    with pytest.raises(TimeoutError):
        await p.acquire(0.01)
    # the slot came back: the next acquire is not stuck behind the failed one
    with pytest.raises(TimeoutError):
        await p.acquire(0.01)


HEADS = {
    "defaults-and-host": (
        {"accept": "a"},
        {},
        b"POST /v1/x HTTP/1.1\r\naccept: a\r\nhost: 127.0.0.1\r\ncontent-length: 2\r\n\r\n",
    ),
    "call-headers-win-case-insensitively": (
        {"x-key": "base"},
        {"X-Key": "call"},
        b"POST /v1/x HTTP/1.1\r\nx-key: call\r\nhost: 127.0.0.1\r\ncontent-length: 2\r\n\r\n",
    ),
    "a-signed-host-is-kept-framing-is-ours": (
        {},
        {"Host": "signed.example", "Content-Length": "99", "Connection": "close"},
        b"POST /v1/x HTTP/1.1\r\nhost: signed.example\r\ncontent-length: 2\r\n\r\n",
    ),
}


@pytest.mark.parametrize(("base", "headers", "wire"), HEADS.values(), ids=HEADS.keys())
def test_request_heads(base: dict[str, str], headers: dict[str, str], wire: bytes) -> None:
    assert h1.request_head("POST", "/v1/x", "127.0.0.1", base, headers, 2) == wire


@pytest.mark.parametrize("value", ["a\r\nx-injected: 1", "a\nb", "a\rb"])
def test_a_header_with_a_line_break_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match="line break"):
        h1.request_head("POST", "/", "h", {}, {"x-k": value}, 0)


async def test_a_pooled_connection_already_closing_is_passed_over(serve: Serve) -> None:
    server = await serve(fixed(b"ok"))
    p = pool(server)
    try:
        _, _, connection = await exchange(p)
        assert connection._transport is not None
        connection._transport.close()  # closing; the loop has not called connection_lost yet
        assert not connection.closed and connection.closing()
        _, _, second = await exchange(p)
    finally:
        p.close()
    assert second is not connection
    assert server.connections == 2
