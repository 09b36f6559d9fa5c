"""CPU per request of the upstream HTTP client alone: N sequential small POSTs to a canned
HTTP/1.1 server in a process of its own (pinned to another cpu by the caller), measured with
``time.process_time`` in the client process.

Measures the sidecar's ``UpstreamSession`` (``sidecar/backends/h1.py``), and aiohttp and httpx
when they are importable (they are not dependencies: ``pip install aiohttp httpx`` into the
venv to compare). Usage: ``taskset -c 1 .venv/bin/python bench/client_cost.py [-n 4000]``
(it starts the server itself, on cpu 0 when ``taskset`` is available).
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

BODY = b'{"model":"m","messages":[{"role":"user","content":"hi"}]}'
ANSWER = (
    b'{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"m","choices":[{"index":'
    b'0,"message":{"role":"assistant","content":"Hello! This is a canned reply."},"finish_reason"'
    b':"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":10,"total_tokens":22}}'
)
HEAD = f"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {len(ANSWER)}"
RESPONSE = HEAD.encode() + b"\r\n\r\n" + ANSWER
SERVER = f"""
import asyncio, uvloop
RESP = {RESPONSE!r}
class P(asyncio.Protocol):
    def connection_made(self, t): self.t, self.buf = t, b""
    def data_received(self, d):
        self.buf += d
        while (i := self.buf.find(b"\\r\\n\\r\\n")) >= 0:
            n = 0
            for line in self.buf[:i].lower().split(b"\\r\\n"):
                if line.startswith(b"content-length:"): n = int(line[15:])
            if len(self.buf) < i + 4 + n: return
            self.buf = self.buf[i + 4 + n:]
            self.t.write(RESP)
async def main():
    s = await asyncio.get_running_loop().create_server(P, "127.0.0.1", 0)
    print(s.sockets[0].getsockname()[1], flush=True)
    await s.serve_forever()
uvloop.run(main())
"""

Post = Callable[[], Awaitable[bytes]]


async def measure(post: Post, n: int) -> float:
    for _ in range(200):  # warm: connection made, caches filled
        await post()
    start = time.process_time()
    for _ in range(n):
        await post()
    return (time.process_time() - start) / n * 1e6


async def sidecar_session(url: str, n: int) -> float:
    from sidecar.backends.http import UpstreamSession
    from sidecar.translate.upstream_errors import error_from_openai

    session = UpstreamSession(url, max_connections=0, headers={"authorization": "Bearer x"})
    try:
        return await measure(
            lambda: session.post_json("b", "/chat/completions", BODY, {}, error_from_openai), n
        )
    finally:
        await session.aclose()


async def aiohttp_session(url: str, n: int) -> float:
    import aiohttp

    async with aiohttp.ClientSession(headers={"authorization": "Bearer x"}) as session:

        async def post() -> bytes:
            async with session.post(url + "/chat/completions", data=BODY) as response:
                return await response.read()

        return await measure(post, n)


async def httpx_client(url: str, n: int) -> float:
    import httpx

    async with httpx.AsyncClient(headers={"authorization": "Bearer x"}) as client:

        async def post() -> bytes:
            return (await client.post(url + "/chat/completions", content=BODY)).content

        return await measure(post, n)


CLIENTS = {
    "sidecar UpstreamSession (h1.py)": (None, sidecar_session),
    "aiohttp ClientSession": ("aiohttp", aiohttp_session),
    "httpx AsyncClient": ("httpx", httpx_client),
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=4000)
    args = parser.parse_args()
    pin = ["taskset", "-c", "0"] if shutil.which("taskset") else []
    server = subprocess.Popen([*pin, sys.executable, "-c", SERVER], stdout=subprocess.PIPE)
    try:
        assert server.stdout is not None
        url = f"http://127.0.0.1:{int(server.stdout.readline())}/v1"
        for name, (module, run) in CLIENTS.items():
            if module is not None and importlib.util.find_spec(module) is None:
                print(f"{name:34} (not installed)")
                continue
            print(f"{name:34} {uvloop.run(run(url, args.n)):7.1f} µs CPU per request")
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
