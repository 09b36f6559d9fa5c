"""A paced mock upstream: token streams the way a model sends them, one event per write.

nginx answers a stream in one write, so the sidecar sees every event of it in one read. A real
model sends its tokens one by one, tens of milliseconds apart, and the sidecar pays its whole
per-read path for each. This mock (asyncio raw streams, uvloop when installed, pinned by
``run.sh`` on the client's cpu) answers any ``POST`` with a chunked SSE stream of ``--events``
events (~50: message_start, content_block_start, the text deltas, content_block_stop,
message_delta, message_stop), each in its own HTTP chunk and its own write, ``--interval-ms``
apart; the first event goes out at once. The path picks the format: ``/v1/messages`` an
Anthropic stream, anything else an OpenAI ``chat.completion.chunk`` stream (``data: [DONE]``
last). Keep-alive, Content-Length request bodies (read and dropped), ``GET /health``.

Pacing runs on one ticker, not a timer per stream: the interval is cut into ``PHASES`` ticks
and a stream gets its events on the ticks of the phase it started in, so the streams' events are
spread over the interval rather than all written in one sweep.

Usage: ``python bench/paced_mock.py --port 18020 [--events 50] [--interval-ms 100]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mock_nginx import anthropic_sse, openai_sse


def _frames(text: str) -> list[bytes]:
    """Each SSE event of ``text`` as one HTTP/1.1 chunk."""
    out = []
    for event in text.split("\n\n"):
        if event:
            data = (event + "\n\n").encode()
            out.append(b"%x\r\n%s\r\n" % (len(data), data))
    return out


PHASES = 10
HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n"
)


class Paced:
    def __init__(self, events: int, interval: float) -> None:
        # content deltas = events - 5 (Anthropic) / events - 4 (OpenAI: role, finish, usage, DONE)
        self.anthropic = _frames(anthropic_sse(max(1, events - 5)))
        self.openai = _frames(openai_sse(max(1, events - 4)))
        self.interval = interval
        # per phase: stream -> (writer, frames, next index); served by the ticker
        self.phases: list[dict[int, tuple[asyncio.StreamWriter, list[bytes], int]]] = [
            {} for _ in range(PHASES)
        ]
        self.tick = 0
        self.done: dict[int, asyncio.Future[None]] = {}
        self._next_id = 0

    async def ticker(self) -> None:
        loop = asyncio.get_running_loop()
        next_tick = loop.time()
        while True:
            next_tick += self.interval / PHASES
            await asyncio.sleep(max(0.0, next_tick - loop.time()))
            self.tick += 1
            active = self.phases[self.tick % PHASES]
            for sid, (writer, frames, i) in list(active.items()):
                if writer.is_closing():
                    self._end(active, sid)
                    continue
                writer.write(frames[i])
                if i + 1 == len(frames):
                    writer.write(b"0\r\n\r\n")
                    self._end(active, sid)
                else:
                    active[sid] = (writer, frames, i + 1)

    def _end(self, active: dict[int, Any], sid: int) -> None:
        del active[sid]
        future = self.done.pop(sid)
        if not future.done():
            future.set_result(None)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.split(b"\r\n")
                method, path = lines[0].split(b" ")[:2]
                length = 0
                for line in lines[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                if length:
                    await reader.readexactly(length)
                if method != b"POST":
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                    continue
                frames = self.anthropic if path.startswith(b"/v1/messages") else self.openai
                writer.write(HEAD + frames[0])
                sid = self._next_id
                self._next_id += 1
                future = asyncio.get_running_loop().create_future()
                self.done[sid] = future
                self.phases[self.tick % PHASES][sid] = (writer, frames, 1)
                await future
        writer.close()


async def main_async(args: argparse.Namespace) -> None:
    paced = Paced(args.events, args.interval_ms / 1000)
    server = await asyncio.start_server(paced.serve, "127.0.0.1", args.port, backlog=4096)
    ticker = asyncio.create_task(paced.ticker())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"paced mock on 127.0.0.1:{args.port}", flush=True)
    await stop.wait()
    ticker.cancel()
    server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=18020)
    parser.add_argument("--events", type=int, default=50)
    parser.add_argument("--interval-ms", type=float, default=100.0)
    args = parser.parse_args()
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
