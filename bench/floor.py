"""The floors: what the sidecar's two servers cost with no sidecar behind them.

One process (uvloop, pinned by ``run.sh`` on the sidecar's cpu) serving, on 127.0.0.1:

* gRPC: ``MessagesService`` on grpc.aio with the generated servicer and the sidecar's server
  options: ``CreateMessage`` returns a canned one-text-block ``Message``; ``StreamMessage``
  writes 15 canned events (message_start, content_block_start, 10 text deltas,
  content_block_stop, message_delta, message_stop), each with ``context.write``.
* HTTP: a raw ASGI app on uvicorn + httptools configured as the sidecar's, answering any
  ``POST`` with canned Anthropic JSON, or SSE when the path ends in ``/stream``; and on
  ``/paced`` the floor of a paced relay: it opens a raw asyncio connection to the paced mock
  (``--paced-port``), and hands every read of its body to uvicorn as one body message (no HTTP
  client library, no parsing, no SSE decoding: the sockets, the loop and uvicorn only).
* Raw (the ``raw PORT`` line): the same paced relay with asyncio protocols on both sockets and
  no HTTP server at all: each read of the mock's (already chunked) body is written to the
  caller from the read callback. Nothing written in Python relays a paced stream for less on
  this machine: its row is the floor under any per-event target.

Neither reads the request beyond what the framework does, nor calls anything: the rows are
the per-call cost of grpc.aio and of uvicorn themselves, so the sidecar's gRPC overhead can be
reported above its floor and compared with the HTTP surface's overhead above its own.

Beside the plain gRPC floor, one more grpc.aio server per entry of ``VARIANTS`` (server options
to try, the sidecar's trailing metadata on every reply, a handler that awaits one loop turn as
the sidecar's awaits its upstream), so their cost is measured the same way in the same run.
Prints ``ready HTTP_PORT GRPC_PORT`` and ``raw PORT`` once all listen, then
``variant NAME PORT`` for each. Usage: ``python bench/floor.py [--paced-port PORT]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from pathlib import Path
from typing import Any, cast

import grpc
import uvicorn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mock_nginx import anthropic_json, anthropic_sse

from sidecar.grpc_api.gen.anyllm.sidecar.v1 import messages_pb2 as pb
from sidecar.grpc_api.gen.anyllm.sidecar.v1 import (
    messages_service_pb2_grpc as spb_grpc,
)

MAX_MESSAGE = 32 << 20
# name -> (extra server options, trailing metadata on each reply)
TRAILING = (
    ("x-anyllm-backend", "mock-anthropic"),
    ("x-anyllm-attempts", "1"),
    ("x-anyllm-chain", "bench-anthropic-json"),
    ("x-anyllm-route", "name"),
    ("x-request-id", "0123456789abcdef0123456789abcdef"),
)
VARIANTS: dict[str, tuple[list[tuple[str, Any]], tuple[tuple[str, str], ...]]] = {
    "compression off (explicit)": ([("grpc.default_compression_algorithm", 0)], ()),
    "so_reuseport 0": ([("grpc.so_reuseport", 0)], ()),
    "optimization_target throughput": ([("grpc.optimization_target", "throughput")], ()),
    "max_concurrent_streams 1000": ([("grpc.max_concurrent_streams", 1000)], ()),
    "+ the sidecar's 5 trailing metadata": ([], TRAILING),
    # The sidecar's handler waits for its upstream: the call spans loop turns.
    "+ the handler awaits a loop turn": ([], ()),
}
SUSPENDS = "+ the handler awaits a loop turn"


def _message() -> pb.Message:
    return pb.Message(
        id="msg_floor",
        model="mock-model",
        role=pb.ROLE_ASSISTANT,
        content=[pb.ContentBlock(text=pb.TextBlock(text="Hello! This is a canned reply."))],
        stop_reason=pb.STOP_REASON_END_TURN,
        usage=pb.Usage(input_tokens=12, output_tokens=10),
    )


def _events() -> list[pb.StreamEvent]:
    start = pb.Message(id="msg_floor", model="mock-model", role=pb.ROLE_ASSISTANT)
    events = [
        pb.StreamEvent(message_start=pb.MessageStartEvent(message=start)),
        pb.StreamEvent(
            content_block_start=pb.ContentBlockStartEvent(
                index=0, content_block=pb.ContentBlock(text=pb.TextBlock(text=""))
            )
        ),
    ]
    events += [
        pb.StreamEvent(
            content_block_delta=pb.ContentBlockDeltaEvent(index=0, text_delta=f" piece{i}")
        )
        for i in range(10)
    ]
    events += [
        pb.StreamEvent(content_block_stop=pb.ContentBlockStopEvent(index=0)),
        pb.StreamEvent(message_delta=pb.MessageDeltaEvent(stop_reason=pb.STOP_REASON_END_TURN)),
        pb.StreamEvent(message_stop=pb.MessageStopEvent()),
    ]
    return events


class FloorServicer(spb_grpc.MessagesServiceServicer):
    def __init__(self, trailing: tuple[tuple[str, str], ...] = (), suspends: bool = False) -> None:
        self.message = _message()
        self.events = _events()
        self.trailing = trailing
        self.suspends = suspends

    async def CreateMessage(self, request: Any, context: Any) -> pb.Message:
        if self.suspends:
            await asyncio.sleep(0)
        if self.trailing:
            context.set_trailing_metadata(self.trailing)
        return self.message

    async def StreamMessage(self, request: Any, context: Any) -> None:
        for event in self.events:
            await context.write(event)


JSON = anthropic_json().encode()
SSE = anthropic_sse().encode()


PACED_PORT = [0]
PACED_REQUEST = b"POST /v1/messages HTTP/1.1\r\nHost: mock\r\nContent-Length: 2\r\n\r\n{}"


async def paced_relay(send: Any) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", PACED_PORT[0])
    try:
        writer.write(PACED_REQUEST)
        await reader.readuntil(b"\r\n\r\n")
        headers = [(b"content-type", b"text/event-stream")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        while True:
            piece = await reader.read(65536)
            if not piece:
                break
            await send({"type": "http.response.body", "body": piece, "more_body": True})
            if piece.endswith(b"0\r\n\r\n"):  # the mock's last chunk
                break
        await send({"type": "http.response.body", "body": b""})
    finally:
        writer.close()


async def asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    if scope["path"] == "/paced":
        await paced_relay(send)
        return
    stream = scope["path"].endswith("/stream")
    body, ctype = (SSE, b"text/event-stream") if stream else (JSON, b"application/json")
    headers = [(b"content-type", ctype), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def main_async() -> None:
    if "--paced-port" in sys.argv:
        PACED_PORT[0] = int(sys.argv[sys.argv.index("--paced-port") + 1])
    options = [
        ("grpc.max_receive_message_length", MAX_MESSAGE),
        ("grpc.max_send_message_length", MAX_MESSAGE),
    ]
    server = grpc.aio.server(options=options)
    spb_grpc.add_MessagesServiceServicer_to_server(FloorServicer(), server)
    grpc_port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    variants = []
    for name, (extra, trailing) in VARIANTS.items():
        variant = grpc.aio.server(options=options + extra)
        servicer = FloorServicer(trailing, suspends=name == SUSPENDS)
        spb_grpc.add_MessagesServiceServicer_to_server(servicer, variant)
        port = variant.add_insecure_port("127.0.0.1:0")
        await variant.start()
        variants.append((name, port, variant))
    config = uvicorn.Config(
        asgi,
        host="127.0.0.1",
        port=0,
        lifespan="off",
        http="httptools",
        log_config=None,
        access_log=False,
        proxy_headers=False,
        server_header=False,
        date_header=False,
    )
    http = uvicorn.Server(config)
    http.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.create_task(http.serve())
    while not http.started:  # noqa: ASYNC110 (uvicorn has no event for it)
        await asyncio.sleep(0.05)
    http_port = http.servers[0].sockets[0].getsockname()[1]
    raw = await asyncio.get_running_loop().create_server(RawPacedRelay, "127.0.0.1", 0)
    raw_port = raw.sockets[0].getsockname()[1]
    print(f"ready {http_port} {grpc_port}", flush=True)
    print(f"raw {raw_port}", flush=True)
    for name, port, _ in variants:
        print(f"variant {name}\t{port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    http.should_exit = True
    await task
    raw.close()
    await server.stop(0)
    for _, _, variant in variants:
        await variant.stop(0)


class _RawUpstream(asyncio.Protocol):
    """The paced mock's side of the raw relay: every read goes to the caller's socket as is."""

    def __init__(self, client: asyncio.Transport) -> None:
        self.client = client
        self.head = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        cast(asyncio.Transport, transport).write(PACED_REQUEST)

    def data_received(self, data: bytes) -> None:
        if self.head:  # the mock's response head; the caller gets its own
            self.head = False
            data = data.partition(b"\r\n\r\n")[2]
            self.client.write(RAW_HEAD)
            if not data:
                return
        self.client.write(data)  # already chunked by the mock: relayed without reframing


RAW_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
)


class RawPacedRelay(asyncio.Protocol):
    """The floor under any Python relay of a paced stream on this machine: asyncio protocols on
    both sockets and nothing else (no HTTP server, no parser, no framing of ours). It answers
    each request (one per connection, as the paced callers send) by relaying the paced mock."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.relaying: asyncio.Task[None] | None = None  # held: the loop keeps only a weak ref
        self.upstream: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        head, sep, body = self.buffer.partition(b"\r\n\r\n")
        if not sep or self.relaying is not None:
            return
        lines = head.lower().split(b"\r\n")
        length = next((int(v[15:]) for v in lines if v[:15] == b"content-length:"), 0)
        if len(body) >= length:
            self.relaying = asyncio.get_running_loop().create_task(self._relay())

    async def _relay(self) -> None:
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        client = self.transport
        self.upstream, _ = await loop.create_connection(
            lambda: _RawUpstream(client), "127.0.0.1", PACED_PORT[0]
        )

    def connection_lost(self, exc: Exception | None) -> None:
        if self.relaying is not None:
            self.relaying.cancel()  # the caller left while the upstream was being reached
        if self.upstream is not None:
            self.upstream.close()


def main() -> None:
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    asyncio.run(main_async())


if __name__ == "__main__":
    main()
