"""The sidecar's benchmark: orchestrator and load generators (HTTP/1.1 and gRPC).

Subcommands (``run.sh`` drives them; see ``bench/README.md``):

    config      write the sidecar's YAML for the mock upstream
    wait-mock   wait until the mock (nginx) answers on its ports
    wait-ready  wait for the sidecar's ``ready`` log line, print ``HTTP_ADDR GRPC_ADDR``
    run         measure every cell, print a markdown table, write raw JSON
    hotspots    summarize a py-spy profile (``run.sh --profile``)

``run`` measures, for each mode (``nonstream``, ``stream``, ``long`` = 200-chunk streams,
through the OpenAI-compatible backend: translated; ``anthropic``, ``anthropic-stream``: through
the native Anthropic backend, relayed; and the OpenAI door's: ``openai``, ``openai-stream``
to the OpenAI-compatible backend, relayed, ``openai-anthropic``, ``openai-anthropic-stream`` to
the Anthropic backend, translated) and each concurrency, the targets one after another
(rotated between rounds):

    direct  the mock upstream called over HTTP in its own format: the baseline
    http    the sidecar's ``POST /v1/messages`` (JSON, or SSE with ``"stream": true``); for
            the OpenAI door's modes ``POST /v1/chat/completions``
    grpc    the sidecar's ``CreateMessage`` (unary) / ``StreamMessage`` (server streaming);
            not for the OpenAI door's modes (the gRPC surface speaks Anthropic: its rows are
            the upstream mode's)

Each load generator is closed-loop: C workers, back to back, for warm-up + duration seconds;
only requests *started* after the warm-up are recorded. The HTTP client keeps one keep-alive
HTTP/1.1 connection per worker and parses responses itself (Content-Length and chunked); the
gRPC client shares one channel (one HTTP/2 connection) among the workers, as a real client
would. The sidecar's CPU is read from ``/proc/PID/stat`` (utime + stime, all threads) before
and after each run, warm-up included, and divided by every request completed in that span.
Only loopback targets are accepted, and every loop is bounded in time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime
import json
import os
import re
import resource
import socket
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any, cast

import grpc

from sidecar.grpc_api.gen.anyllm.sidecar.v1 import messages_pb2 as pb
from sidecar.grpc_api.gen.anyllm.sidecar.v1 import messages_service_pb2 as spb
from sidecar.grpc_api.gen.anyllm.sidecar.v1 import messages_service_pb2_grpc as spb_grpc

perf = time.perf_counter
CLK_TCK = os.sysconf("SC_CLK_TCK")
# The OpenAI door's modes, and the upstream mode whose mock port and chain each one uses.
OPENAI_DOOR = {
    "openai": "nonstream",  # relayed: OpenAI door -> openai backend
    "openai-stream": "stream",
    "openai-anthropic": "anthropic",  # translated: OpenAI door -> anthropic backend
    "openai-anthropic-stream": "anthropic-stream",
}
MODES = (
    "nonstream",
    "stream",
    "long",
    "anthropic",
    "anthropic-stream",
    "bedrock",
    "bedrock-stream",
    *OPENAI_DOOR,
)
TARGETS = ("direct", "http", "grpc")
# The mock's ports, relative to --mock-port (see mock_nginx.py), and the sidecar chain per
# upstream mode.
MOCK_OFFSET = {
    "nonstream": 0,
    "stream": 1,
    "long": 2,
    "anthropic": 3,
    "anthropic-stream": 4,
    "bedrock": 3,  # InvokeModel answers the Anthropic message JSON
    "bedrock-stream": 5,  # AWS event-stream frames
}
CHAIN = {
    "nonstream": "bench-json",
    "stream": "bench-sse",
    "long": "bench-long",
    "anthropic": "bench-anthropic-json",
    "anthropic-stream": "bench-anthropic-sse",
    "bedrock": "bench-bedrock-json",
    "bedrock-stream": "bench-bedrock-stream",
}
# Modes whose upstream speaks Anthropic (the native backend: relayed, not translated).
ANTHROPIC_MODES = frozenset({"anthropic", "anthropic-stream"})
# Modes through the bedrock backend (SigV4-signed by botocore, event-stream decoded, relayed).
BEDROCK_MODES = frozenset({"bedrock", "bedrock-stream"})
STREAM_MODES = frozenset(
    {
        "stream",
        "long",
        "anthropic-stream",
        "bedrock-stream",
        "openai-stream",
        "openai-anthropic-stream",
    }
)


def upstream_mode(mode: str) -> str:
    """The mode whose mock port, chain and upstream format ``mode`` uses."""
    return OPENAI_DOOR.get(mode, mode)


def targets_for(mode: str) -> tuple[str, ...]:
    return ("direct", "http") if mode in OPENAI_DOOR else TARGETS


PROMPT = "Say hello in one short sentence."
STREAM_CHUNKS = 10  # content chunks of the mock's short stream (mock_nginx.py)


# --------------------------------------------------------------------------- small helpers


def _loopback(host: str) -> str:
    if not (host.startswith("127.") or host in ("localhost", "::1")):
        raise SystemExit(f"bench: refusing non-loopback target {host!r}")
    return host


def _split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return _loopback(host.strip("[]")), int(port)


def percentile(sorted_values: list[float], p: float) -> float | None:
    if not sorted_values:
        return None
    k = (len(sorted_values) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    fields = stat[stat.rfind(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def children_of(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                with open(f"/proc/{entry}/stat") as f:
                    stat = f.read()
                if int(stat[stat.rfind(")") + 2 :].split()[1]) == pid:
                    out.append(int(entry))
    return out


def pids_cpu_seconds(pids: Iterable[int]) -> float:
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):
            total += proc_cpu_seconds(pid)
    return total


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine spent busy (all cores), from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def mock_accepts(port: int) -> int:
    """Connections nginx has accepted so far (``stub_status``), or -1."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            sock.sendall(b"GET /status HTTP/1.1\r\nHost: mock\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := sock.recv(4096):
                data += chunk
    except OSError:
        return -1
    # "Active connections: 1 \nserver accepts handled requests\n 5 5 9 \n..."
    match = re.search(rb"accepts handled requests\s+(\d+)", data)
    return int(match.group(1)) if match else -1


def self_cpu_seconds() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


@dataclasses.dataclass
class Recorder:
    """What the workers of one run share: the clock, the samples, the counts."""

    t_measure: float  # requests started before this are warm-up
    t_stop: float  # no request starts after this
    totals: list[float] = dataclasses.field(default_factory=list)
    ttfbs: list[float] = dataclasses.field(default_factory=list)
    completed: int = 0  # every finished request, warm-up included (for CPU per request)
    errors: dict[str, int] = dataclasses.field(default_factory=dict)
    error_sample: str = ""
    events: int = 0  # events in the last good response (SSE events or gRPC messages)

    def record(self, start: float, first: float, end: float, ok: bool, why: str = "") -> None:
        self.completed += 1
        if start < self.t_measure:
            return
        if not ok:
            self.error(why)
            return
        self.totals.append(end - start)
        self.ttfbs.append(first - start)

    def error(self, kind: str, sample: str = "") -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1
        if sample and not self.error_sample:
            self.error_sample = sample[:300]


# --------------------------------------------------------------------------- HTTP/1.1 client


class HttpConnection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection with an incremental response parser."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.future: asyncio.Future[None] | None = None
        self.lost = False
        self.status = 0
        self.close_after = False
        self.body = bytearray()
        self.first = 0.0
        self.end = 0.0
        self._state = "head"
        self._left = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.future is not None and not self.future.done():
            self.future.set_exception(ConnectionError("connection lost"))

    def request(self, payload: bytes) -> asyncio.Future[None]:
        assert self.transport is not None
        self.status = 0
        self.close_after = False
        self.body = bytearray()
        self.first = 0.0
        self._state = "head"
        self.future = asyncio.get_running_loop().create_future()
        self.transport.write(payload)
        return self.future

    def data_received(self, data: bytes) -> None:
        now = perf()
        self.buf += data
        try:
            self._feed(now)
        except Exception as exc:  # a malformed response fails the request, not the run
            if self.future is not None and not self.future.done():
                self.future.set_exception(exc)

    def _body(self, now: float, data: bytes | bytearray) -> None:
        if not self.first:
            self.first = now
        self.body += data

    def _done(self, now: float) -> None:
        self.end = now
        if not self.first:
            self.first = now
        future, self.future = self.future, None
        if future is not None and not future.done():
            future.set_result(None)

    def _feed(self, now: float) -> None:
        buf = self.buf
        while self.future is not None:
            if self._state == "head":
                i = buf.find(b"\r\n\r\n")
                if i < 0:
                    return
                lines = bytes(buf[:i]).split(b"\r\n")
                del buf[: i + 4]
                self.status = int(lines[0][9:12])
                length: int | None = None
                chunked = False
                for line in lines[1:]:
                    name, _, value = line.partition(b":")
                    name = name.strip().lower()
                    if name == b"content-length":
                        length = int(value)
                    elif name == b"transfer-encoding" and b"chunked" in value.lower():
                        chunked = True
                    elif name == b"connection" and b"close" in value.lower():
                        self.close_after = True
                if chunked:
                    self._state = "size"
                elif length is not None:
                    self._state, self._left = "data", length
                    if length == 0:
                        self._done(now)
                        return
                else:
                    raise ValueError("response without Content-Length or chunked encoding")
            elif self._state in ("data", "chunk"):
                n = min(self._left, len(buf))
                if n:
                    self._body(now, buf[:n])
                    del buf[:n]
                    self._left -= n
                if self._left:
                    return
                if self._state == "data":
                    self._done(now)
                    return
                self._state = "crlf"
            elif self._state == "crlf":
                if len(buf) < 2:
                    return
                del buf[:2]
                self._state = "size"
            elif self._state == "size":
                j = buf.find(b"\r\n")
                if j < 0:
                    return
                size = int(bytes(buf[:j]).split(b";")[0], 16)
                del buf[: j + 2]
                self._state, self._left = ("trailer", 0) if size == 0 else ("chunk", size)
            elif self._state == "trailer":
                j = buf.find(b"\r\n")
                if j < 0:
                    return
                empty = j == 0
                del buf[: j + 2]
                if empty:
                    self._done(now)
                    return


@dataclasses.dataclass(frozen=True)
class HttpTarget:
    url_host: str
    port: int
    path: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    expect: bytes  # a good response contains this
    reject: bytes = b"event: error"  # ... and not this

    def payload(self) -> bytes:
        head = [
            f"POST {self.path} HTTP/1.1",
            f"Host: {self.url_host}:{self.port}",
            "Content-Type: application/json",
            f"Content-Length: {len(self.body)}",
            *(f"{k}: {v}" for k, v in self.headers),
        ]
        return ("\r\n".join(head) + "\r\n\r\n").encode() + self.body


async def http_worker(target: HttpTarget, rec: Recorder, request_timeout: float) -> None:
    loop = asyncio.get_running_loop()
    payload = target.payload()
    conn: HttpConnection | None = None
    while perf() < rec.t_stop:
        start = perf()
        try:
            if conn is None or conn.lost:
                conn = None
                _, fresh = await asyncio.wait_for(
                    loop.create_connection(HttpConnection, target.url_host, target.port),
                    request_timeout,
                )
                conn = fresh
            c: HttpConnection = conn
            await asyncio.wait_for(c.request(payload), request_timeout)
        except (TimeoutError, OSError, ConnectionError, ValueError) as exc:
            rec.completed += 1
            if start >= rec.t_measure:
                rec.error(type(exc).__name__, str(exc))
            if conn is not None and conn.transport is not None:
                conn.transport.abort()
            conn = None
            await asyncio.sleep(0.01)
            continue
        body = bytes(c.body)
        ok = c.status == 200 and target.expect in body and target.reject not in body
        why = "" if ok else (f"status_{c.status}" if c.status != 200 else "bad_body")
        if not ok and start >= rec.t_measure:
            rec.error_sample = rec.error_sample or body[:300].decode(errors="replace")
        if ok:
            rec.events = body.count(b"\n\n") if body.startswith((b"event:", b"data:")) else 1
        rec.record(start, c.first, c.end, ok, why)
        if c.close_after and c.transport is not None:
            c.transport.close()
            conn = None


# --------------------------------------------------------------------------- gRPC client


def grpc_request(model: str) -> spb.CreateMessageRequest:
    text = pb.ContentBlock(text=pb.TextBlock(text=PROMPT))
    message = pb.InputMessage(role=pb.ROLE_USER, content=[text])
    return spb.CreateMessageRequest(model=model, max_tokens=256, messages=[message])


async def grpc_unary_worker(
    stub: spb_grpc.MessagesServiceAsyncStub, model: str, rec: Recorder, request_timeout: float
) -> None:
    request = grpc_request(model)
    while perf() < rec.t_stop:
        start = perf()
        try:
            reply = await stub.CreateMessage(request, timeout=request_timeout)
        except grpc.aio.AioRpcError as exc:
            rec.completed += 1
            if start >= rec.t_measure:
                rec.error(exc.code().name, exc.details() or "")
            continue
        end = perf()
        ok = len(reply.content) > 0 and reply.content[0].WhichOneof("block") == "text"
        if ok:
            rec.events = 1
        rec.record(start, end, end, ok, "empty_message")


async def grpc_stream_worker(
    stub: spb_grpc.MessagesServiceAsyncStub, model: str, rec: Recorder, request_timeout: float
) -> None:
    request = grpc_request(model)
    while perf() < rec.t_stop:
        start = perf()
        first = 0.0
        count = 0
        last: str | None = None
        try:
            call = stub.StreamMessage(request, timeout=request_timeout)
            async for event in call:
                if not count:
                    first = perf()
                count += 1
                last = event.WhichOneof("event")
        except grpc.aio.AioRpcError as exc:
            rec.completed += 1
            if start >= rec.t_measure:
                rec.error(exc.code().name, exc.details() or "")
            continue
        end = perf()
        ok = last == "message_stop"
        if ok:
            rec.events = count
        rec.record(start, first or end, end, ok, "no_message_stop")


# --------------------------------------------------------------------------- one run


@dataclasses.dataclass(frozen=True)
class Setup:
    http: tuple[str, int]
    grpc: str
    mock_port: int
    sidecar_pid: int
    mock_pids: tuple[int, ...] = ()  # nginx master and worker(s)


def http_target(setup: Setup, target: str, mode: str) -> HttpTarget:
    stream = mode in STREAM_MODES
    door, mode = mode in OPENAI_DOOR, upstream_mode(mode)
    if target == "direct" and mode in BEDROCK_MODES:  # unsigned: the mock does not check
        return HttpTarget(
            url_host="127.0.0.1",
            port=setup.mock_port + MOCK_OFFSET[mode],
            path="/model/mock-model/" + ("invoke-with-response-stream" if stream else "invoke"),
            headers=(("content-type", "application/json"),),
            body=json.dumps(
                {
                    "anthropic_version": "bedrock-2023-05-31",
                    "max_tokens": 256,
                    "messages": [{"role": "user", "content": PROMPT}],
                }
            ).encode(),
            expect=b":event-type" if stream else b'"content"',
        )
    if target == "direct" and mode in ANTHROPIC_MODES:
        return HttpTarget(
            url_host="127.0.0.1",
            port=setup.mock_port + MOCK_OFFSET[mode],
            path="/v1/messages",
            headers=(("x-api-key", "sk-mock"), ("anthropic-version", "2023-06-01")),
            body=json.dumps(
                {
                    "model": "mock-model",
                    "max_tokens": 256,
                    "messages": [{"role": "user", "content": PROMPT}],
                    **({"stream": True} if stream else {}),
                }
            ).encode(),
            expect=b"event: message_stop" if stream else b'"content"',
        )
    if target == "direct":
        body: dict[str, Any] = {
            "model": "mock-model",
            "max_tokens": 256,
            "messages": [{"role": "user", "content": PROMPT}],
        }
        if stream:
            body |= {"stream": True, "stream_options": {"include_usage": True}}
        return HttpTarget(
            url_host="127.0.0.1",
            port=setup.mock_port + MOCK_OFFSET[mode],
            path="/v1/chat/completions",
            headers=(("Authorization", "Bearer sk-mock"),),
            body=json.dumps(body).encode(),
            expect=b"[DONE]" if stream else b'"choices"',
        )
    host, port = setup.http
    if door:  # what an OpenAI SDK sends to the OpenAI door
        body = {
            "model": CHAIN[mode],
            "max_tokens": 256,
            "messages": [{"role": "user", "content": PROMPT}],
        }
        if stream:
            body |= {"stream": True, "stream_options": {"include_usage": True}}
        return HttpTarget(
            url_host=host,
            port=port,
            path="/v1/chat/completions",
            headers=(("Authorization", "Bearer sk-caller"),),
            body=json.dumps(body).encode(),
            expect=b"[DONE]" if stream else b'"choices"',
            reject=b'{"error"',
        )
    body = {
        "model": CHAIN[mode],
        "max_tokens": 256,
        "messages": [{"role": "user", "content": PROMPT}],
    }
    if stream:
        body["stream"] = True
    return HttpTarget(
        url_host=host,
        port=port,
        path="/v1/messages",
        headers=(("anthropic-version", "2023-06-01"),),
        body=json.dumps(body).encode(),
        expect=b"event: message_stop" if stream else b'"content"',
    )


async def _drive(
    workers: Callable[[Recorder], Iterable[Awaitable[None]]], warmup: float, duration: float
) -> tuple[Recorder, float]:
    t0 = perf()
    rec = Recorder(t_measure=t0 + warmup, t_stop=t0 + warmup + duration)
    await asyncio.gather(*workers(rec))
    return rec, perf() - t0


async def measure(
    setup: Setup, target: str, mode: str, concurrency: int, warmup: float, duration: float
) -> dict[str, Any]:
    """One closed-loop run against one target; returns its figures."""
    timeout = 30.0
    cpu0 = proc_cpu_seconds(setup.sidecar_pid)
    self0 = self_cpu_seconds()
    mock0 = pids_cpu_seconds(setup.mock_pids)
    accepts0 = mock_accepts(setup.mock_port)
    busy0 = machine_busy_seconds()
    channel: grpc.aio.Channel | None = None
    if target == "grpc":
        host, port = _split_address(setup.grpc)
        channel = grpc.aio.insecure_channel(
            f"{host}:{port}", options=[("grpc.enable_http_proxy", 0)]
        )
        stub = spb_grpc.MessagesServiceStub(channel)
        model = CHAIN[upstream_mode(mode)]
        worker = grpc_stream_worker if mode in STREAM_MODES else grpc_unary_worker

        def workers(rec: Recorder) -> Iterable[Awaitable[None]]:
            return [worker(stub, model, rec, timeout) for _ in range(concurrency)]
    else:
        http = http_target(setup, target, mode)

        def workers(rec: Recorder) -> Iterable[Awaitable[None]]:
            return [http_worker(http, rec, timeout) for _ in range(concurrency)]

    try:
        rec, wall = await asyncio.wait_for(
            _drive(workers, warmup, duration), warmup + duration + timeout + 10
        )
    finally:
        if channel is not None:
            await channel.close(None)
    cpu = proc_cpu_seconds(setup.sidecar_pid) - cpu0
    client_cpu = self_cpu_seconds() - self0
    mock_cpu = pids_cpu_seconds(setup.mock_pids) - mock0
    other_cpu = machine_busy_seconds() - busy0 - cpu - client_cpu - mock_cpu
    accepts1 = mock_accepts(setup.mock_port)
    # nginx's own count includes the /status request that read accepts0
    upstream_conns = accepts1 - accepts0 - 1 if min(accepts0, accepts1) >= 0 else None
    totals, ttfbs = sorted(rec.totals), sorted(rec.ttfbs)

    def ms(v: float | None) -> float | None:
        return None if v is None else round(v * 1000, 3)

    on_sidecar = target != "direct"
    return {
        "target": target,
        "mode": mode,
        "concurrency": concurrency,
        "ok": len(totals),
        "errors": sum(rec.errors.values()),
        "error_kinds": rec.errors,
        "error_sample": rec.error_sample,
        "rps": round(len(totals) / duration, 1) if duration else 0.0,
        "p50_ms": ms(percentile(totals, 50)),
        "p90_ms": ms(percentile(totals, 90)),
        "p99_ms": ms(percentile(totals, 99)),
        "ttfb_p50_ms": ms(percentile(ttfbs, 50)),
        "events_per_response": rec.events,
        "completed_incl_warmup": rec.completed,
        "wall_s": round(wall, 3),
        "sidecar_cpu_s": round(cpu, 4),
        "sidecar_cpu_ms_per_req": (
            round(1000 * cpu / rec.completed, 4) if on_sidecar and rec.completed else None
        ),
        "sidecar_cpu_pct": round(100 * cpu / wall, 1) if on_sidecar else None,
        "client_cpu_pct": round(100 * client_cpu / wall, 1),
        "mock_cpu_pct": round(100 * mock_cpu / wall, 1),
        # connections the mock accepted during the run: the sidecar's upstream connections
        # (for `direct`, the load generator's own); ~0 per request means keep-alive reuse
        "mock_connections": upstream_conns,
        "mock_conns_per_req": (
            round(upstream_conns / rec.completed, 3)
            if upstream_conns is not None and rec.completed
            else None
        ),
        # everything else on the machine (other processes, kernel threads): the noise indicator
        "other_cpu_pct": round(max(0.0, 100 * other_cpu / wall), 1),
    }


# --------------------------------------------------------------------------- table


def _median(values: Iterable[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def _fmt(v: float | None, digits: int = 3) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def summarize(results: list[dict[str, Any]]) -> dict[tuple[str, int, str], dict[str, Any]]:
    """Median over rounds per (mode, concurrency, target)."""
    keys = sorted(
        {(r["mode"], r["concurrency"], r["target"]) for r in results},
        key=lambda k: (MODES.index(k[0]), k[1], TARGETS.index(k[2])),
    )
    out: dict[tuple[str, int, str], dict[str, Any]] = {}
    for key in keys:
        rows = [r for r in results if (r["mode"], r["concurrency"], r["target"]) == key]
        agg: dict[str, Any] = {
            f: _median(r[f] for r in rows)
            for f in (
                "rps",
                "p50_ms",
                "p99_ms",
                "ttfb_p50_ms",
                "sidecar_cpu_ms_per_req",
                "sidecar_cpu_pct",
                "client_cpu_pct",
                "other_cpu_pct",
                "mock_conns_per_req",
            )
        }
        agg["errors"] = sum(r["errors"] for r in rows)
        agg["events"] = max(r["events_per_response"] for r in rows)
        p50s = [r["p50_ms"] for r in rows if r["p50_ms"] is not None]
        agg["spread"] = max(p50s) - min(p50s) if len(p50s) > 1 else None
        out[key] = agg
    for (mode, conc, target), agg in out.items():
        base = out.get((mode, conc, "direct"), {}).get("p50_ms")
        agg["added_p50_ms"] = (
            agg["p50_ms"] - base
            if target != "direct" and base is not None and agg["p50_ms"] is not None
            else None
        )
    return out


def render(summary: dict[tuple[str, int, str], dict[str, Any]]) -> str:
    lines = [
        "| mode | C | target | events | rps | p50 ms | p99 ms | ttfb p50 ms | added p50 ms |"
        " sidecar CPU ms/req | sidecar CPU % | client CPU % | other CPU % | upstream conns/req |"
        " errors | p50 spread ms |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (mode, conc, target), a in summary.items():
        lines.append(
            f"| {mode} | {conc} | {target} | {a['events']} | {_fmt(a['rps'], 0)} |"
            f" {_fmt(a['p50_ms'])} | {_fmt(a['p99_ms'])} | {_fmt(a['ttfb_p50_ms'])} |"
            f" {_fmt(a['added_p50_ms'])} | {_fmt(a['sidecar_cpu_ms_per_req'])} |"
            f" {_fmt(a['sidecar_cpu_pct'], 0)} | {_fmt(a['client_cpu_pct'], 0)} |"
            f" {_fmt(a['other_cpu_pct'], 0)} | {_fmt(a['mock_conns_per_req'], 2)} |"
            f" {a['errors']} | {_fmt(a['spread'])} |"
        )
    return "\n".join(lines)


def verdicts(summary: dict[tuple[str, int, str], dict[str, Any]], long_chunks: int) -> list[str]:
    """The issue's targets, checked at C=1, plus the per-event cost from long streams."""
    out: list[str] = []
    limits = {"nonstream": 0.5, "stream": 1.0}
    for target in ("http", "grpc"):
        for mode, limit in limits.items():
            cpu = summary.get((mode, 1, target), {}).get("sidecar_cpu_ms_per_req")
            if cpu is not None:
                mark = "ok" if cpu <= limit else "OVER"
                out.append(
                    f"- {target} {mode} C=1: sidecar CPU {cpu:.3f} ms/req"
                    f" (target <= {limit}) {mark}"
                )
        for mode in ("nonstream", "stream"):
            added = summary.get((mode, 1, target), {}).get("added_p50_ms")
            if added is not None:
                mark = "ok" if added <= 1.0 else "OVER"
                out.append(f"- {target} {mode} C=1: added p50 {added:.3f} ms (target <= 1) {mark}")
        for conc in sorted({k[1] for k in summary}):
            short = summary.get(("stream", conc, target), {})
            long = summary.get(("long", conc, target), {})
            extra = long_chunks - STREAM_CHUNKS
            if short.get("sidecar_cpu_ms_per_req") and long.get("sidecar_cpu_ms_per_req") and extra:
                per = (long["sidecar_cpu_ms_per_req"] - short["sidecar_cpu_ms_per_req"]) / extra
                out.append(
                    f"- {target} C={conc}: {1000 * per:.1f} us sidecar CPU per extra upstream chunk"
                    f" ({STREAM_CHUNKS} -> {long_chunks} content chunks; {short['events']} ->"
                    f" {long['events']} events received per response)"
                )
    # The OpenAI door relaying should cost no more than the Anthropic door relaying does.
    for ours, theirs in (("openai", "anthropic"), ("openai-stream", "anthropic-stream")):
        for conc in sorted({k[1] for k in summary}):
            a = summary.get((ours, conc, "http"), {}).get("sidecar_cpu_ms_per_req")
            b = summary.get((theirs, conc, "http"), {}).get("sidecar_cpu_ms_per_req")
            if a is not None and b is not None:
                mark = "ok" if a <= b * 1.1 else "OVER"
                out.append(
                    f"- http {ours} C={conc}: sidecar CPU {a:.3f} ms/req, relayed by the OpenAI"
                    f" door (the Anthropic door relaying, {theirs}: {b:.3f}) {mark}"
                )
    return out


# --------------------------------------------------------------------------- subcommands


def cmd_config(args: argparse.Namespace) -> None:
    base = args.mock_port

    def backend(mode: str, port: int) -> str:
        url = f"http://127.0.0.1:{port}"
        if mode in BEDROCK_MODES:  # fake static keys: signed for real, never checked
            return (
                f'{{kind: bedrock, region: us-east-1, base_url: "{url}",'
                " aws_access_key_id: AKIDBENCHMARK, aws_secret_access_key: bench-secret}"
            )
        if mode in ANTHROPIC_MODES:
            return f'{{kind: anthropic, base_url: "{url}", api_key: "sk-mock"}}'
        return f'{{kind: openai, base_url: "{url}/v1", api_key: "sk-mock"}}'

    backends = "\n".join(
        f"  mock-{mode}: {backend(mode, base + off)}" for mode, off in MOCK_OFFSET.items()
    )
    # the paced mock (paced_mock.py, shapes.py's streams): relayed Anthropic
    backends += (
        f'\n  mock-paced: {{kind: anthropic, base_url: "http://127.0.0.1:{args.paced_port}",'
        ' api_key: "sk-mock"}'
    )
    chains = "\n".join(f"  {CHAIN[mode]}: [{{backend: mock-{mode}}}]" for mode in MOCK_OFFSET)
    chains += "\n  bench-paced: [{backend: mock-paced}]"
    text = (
        "# generated by bench/bench.py config -- the benchmark's sidecar configuration\n"
        'server: {http: "127.0.0.1:0", grpc: "127.0.0.1:0", max_concurrent_requests: 8192}\n'
        f"backends:\n{backends}\n"
        f"chains:\n  default: [{{backend: mock-nonstream}}]\n{chains}\n"
    )
    Path(args.out).write_text(text)


def cmd_wait_ready(args: argparse.Namespace) -> None:
    deadline = time.monotonic() + args.timeout
    log = Path(args.log)
    while time.monotonic() < deadline:
        if log.exists():
            for line in log.read_text(errors="replace").splitlines():
                if '"ready"' not in line:
                    continue
                with contextlib.suppress(ValueError):
                    doc = json.loads(line)
                    if doc.get("event") == "ready":
                        print(doc["http"], doc["grpc"])
                        return
        if args.pid and not Path(f"/proc/{args.pid}").exists():
            raise SystemExit(f"bench: the sidecar (pid {args.pid}) exited; see {log}")
        time.sleep(0.1)
    raise SystemExit(f"bench: no ready line in {log} after {args.timeout} s")


def cmd_wait_mock(args: argparse.Namespace) -> None:
    """Wait until the mock answers ``GET /health`` on its ports."""
    deadline = time.monotonic() + args.timeout
    for port in range(args.port, args.port + args.count):
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                    sock.sendall(b"GET /health HTTP/1.1\r\nHost: mock\r\nConnection: close\r\n\r\n")
                    if sock.recv(64).startswith(b"HTTP/1.1 200"):
                        break
            except OSError:
                pass
            if args.pid and not Path(f"/proc/{args.pid}").exists():
                raise SystemExit(f"bench: the mock (pid {args.pid}) exited")
            if time.monotonic() > deadline:
                raise SystemExit(f"bench: the mock does not answer on 127.0.0.1:{port}")
            time.sleep(0.1)


def cmd_hotspots(args: argparse.Namespace) -> None:
    """Top functions of a py-spy ``--format raw`` (collapsed stacks) profile."""
    own: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    total = 0
    for line in Path(args.profile).read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        # "func (path/file.py:LINE)" -> "func (path/file.py)": one row per function
        frames = [
            re.sub(r":\d+\)$", ")", f) for f in stack.split(";") if not f.startswith("process ")
        ]
        if not frames:
            continue
        total += count
        own[frames[-1]] = own.get(frames[-1], 0) + count
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + count
    if not total:
        raise SystemExit(f"bench: no samples in {args.profile}")
    roots = max(inclusive.values())
    inclusive = {f: c for f, c in inclusive.items() if c < roots}  # drop main(), loop.run...
    by_package: dict[str, int] = {}
    for frame, count in own.items():
        match = re.search(r"\((.*)\)$", frame)
        where = match.group(1) if match else frame
        package = where.split("/")[0].removesuffix(".py") if "/" in where else where
        by_package[package] = by_package.get(package, 0) + count
    tables = (("self", own), ("inclusive", inclusive), ("self by package", by_package))
    for title, table in tables:
        print(f"\n{title} time, top {args.top} of {total} samples:")
        for frame, count in sorted(table.items(), key=lambda kv: -kv[1])[: args.top]:
            print(f"  {100 * count / total:5.1f}%  {frame}")


def _install_uvloop() -> None:
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def cmd_run(args: argparse.Namespace) -> None:
    setup = Setup(
        http=_split_address(args.http),
        grpc=args.grpc,
        mock_port=args.mock_port,
        sidecar_pid=args.sidecar_pid,
        mock_pids=(args.mock_pid, *children_of(args.mock_pid)) if args.mock_pid else (),
    )
    _split_address(setup.grpc)
    modes = [m for m in args.modes.split(",") if m]
    concs = [int(c) for c in args.concurrency.split(",") if c]
    if bad := [m for m in modes if m not in MODES]:
        raise SystemExit(f"bench: unknown modes {bad}; choose from {MODES}")
    only = {t for t in args.targets.split(",") if t}
    if bad := sorted(only - set(TARGETS)):
        raise SystemExit(f"bench: unknown targets {bad}; choose from {TARGETS}")

    def chosen(mode: str) -> tuple[str, ...]:
        # "direct" stays: the added latency is measured against it
        return tuple(t for t in targets_for(mode) if t == "direct" or not only or t in only)

    cells = sum(len(chosen(m)) for m in modes)
    runs = cells * len(concs) * args.rounds
    per_run = args.warmup + args.duration + args.pause
    plan = runs * per_run + len(modes) * 2 * args.prime
    print(
        f"# plan: {len(modes)} modes ({cells} mode x target cells) x {len(concs)} concurrencies"
        f" x {args.rounds} rounds x ({args.warmup:g}+{args.duration:g}) s ~= {plan / 60:.1f} min",
        flush=True,
    )
    if plan > args.max_minutes * 60:
        raise SystemExit(f"bench: the plan exceeds --max-minutes {args.max_minutes}")

    def ours() -> float:
        own = self_cpu_seconds() + proc_cpu_seconds(setup.sidecar_pid)
        return own + pids_cpu_seconds(setup.mock_pids)

    busy0, ours0 = machine_busy_seconds(), ours()
    time.sleep(1.0)
    background = (machine_busy_seconds() - busy0) - (ours() - ours0)
    print(f"# background load before the run: {100 * background:.0f}% of a core", flush=True)
    if background > 0.1:
        print("# WARNING: the machine is not idle; figures will be noisy", flush=True)
    _install_uvloop()
    results: list[dict[str, Any]] = []
    started = datetime.datetime.now(datetime.UTC)
    for mode in modes:
        targets = chosen(mode)
        for target in targets[1:]:  # first requests pay imports, pools, HTTP/2 setup
            if args.prime > 0:
                r = asyncio.run(measure(setup, target, mode, 4, args.prime, 0.0))
                print(f"  prime {mode:9s} {target:6s} requests={r['completed_incl_warmup']}")
        for conc in concs:
            for rnd in range(args.rounds):
                n = len(targets)
                order = targets[rnd % n :] + targets[: rnd % n]
                for target in order:
                    r = asyncio.run(measure(setup, target, mode, conc, args.warmup, args.duration))
                    r["round"] = rnd
                    results.append(r)
                    print(
                        f"  {mode:9s} C={conc:<3d} r{rnd} {target:6s} rps={r['rps']:>8.1f}"
                        f" p50={_fmt(r['p50_ms']):>7s} p99={_fmt(r['p99_ms']):>7s}"
                        f" cpu/req={_fmt(r['sidecar_cpu_ms_per_req']):>7s}"
                        f" client={r['client_cpu_pct']:>5.1f}% other={r['other_cpu_pct']:>5.1f}%"
                        f" err={r['errors']}"
                        + (f" {r['error_kinds']} {r['error_sample']!r}" if r["errors"] else ""),
                        flush=True,
                    )
                    time.sleep(args.pause)
    summary = summarize(results)
    table = render(summary)
    notes = verdicts(summary, args.long_chunks)
    for (mode, conc, target), agg in summary.items():
        conns = agg.get("mock_conns_per_req")
        if target != "direct" and conns is not None and conns > 0.2:
            notes.append(
                f"- {target} {mode} C={conc}: {conns:.2f} new upstream connections per request"
                " (upstream keep-alive is not reused)"
            )
    busiest = max((r["other_cpu_pct"] for r in results), default=0.0)
    if busiest > 10:
        notes.append(
            f"- NOISE: other processes used up to {busiest:.0f}% of a core during a run;"
            " latency and rps are unreliable (CPU ms/req less so). Rerun on a quiet machine."
        )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "started": started.isoformat(),
        "args": {k: v for k, v in vars(args).items() if k != "func"},
        "results": results,
        "summary": [
            {"mode": k[0], "concurrency": k[1], "target": k[2], **v} for k, v in summary.items()
        ],
        "table": table,
        "notes": notes,
    }
    out.write_text(json.dumps(doc, indent=1))
    print()
    print(table)
    print()
    print("\n".join(notes))
    print(f"\nraw results: {out}")
    if any(r["errors"] or not r["ok"] for r in results):
        print("bench: some runs had errors or no successful request (see above)", file=sys.stderr)
        sys.exit(1)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("config", help="write the sidecar configuration for the mock")
    p.add_argument("--mock-port", type=int, default=18010)
    p.add_argument("--paced-port", type=int, default=18020, help="paced_mock.py's port")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_config)

    p = sub.add_parser("wait-ready", help="print the sidecar's HTTP and gRPC addresses")
    p.add_argument("--log", required=True, help="the sidecar's stdout")
    p.add_argument("--pid", type=int, default=0, help="fail early when this process exits")
    p.add_argument("--timeout", type=float, default=60.0)
    p.set_defaults(func=cmd_wait_ready)

    p = sub.add_parser("wait-mock", help="wait until the mock answers on its ports")
    p.add_argument("--port", type=int, default=18010)
    p.add_argument("--count", type=int, default=3)
    p.add_argument("--pid", type=int, default=0, help="fail early when this process exits")
    p.add_argument("--timeout", type=float, default=20.0)
    p.set_defaults(func=cmd_wait_mock)

    p = sub.add_parser("hotspots", help="summarize a py-spy raw profile")
    p.add_argument("profile")
    p.add_argument("--top", type=int, default=25)
    p.set_defaults(func=cmd_hotspots)

    p = sub.add_parser("run", help="measure and print the table")
    p.add_argument("--http", required=True, help="the sidecar's HTTP address, host:port")
    p.add_argument("--grpc", required=True, help="the sidecar's gRPC address, host:port")
    p.add_argument("--sidecar-pid", type=int, required=True)
    p.add_argument("--mock-port", type=int, default=18010)
    p.add_argument("--mock-pid", type=int, default=0, help="the nginx master (CPU accounting)")
    p.add_argument("--long-chunks", type=int, default=200, help="as given to mock_nginx.py")
    p.add_argument("-m", "--modes", default=",".join(MODES))
    p.add_argument(
        "-t", "--targets", default="", help="only these of http,grpc (and direct, always run)"
    )
    p.add_argument("-c", "--concurrency", default="1,16")
    p.add_argument("-r", "--rounds", type=int, default=2)
    p.add_argument("-d", "--duration", type=float, default=4.0, help="measured seconds per run")
    p.add_argument("-w", "--warmup", type=float, default=1.0, help="unrecorded seconds per run")
    p.add_argument("--prime", type=float, default=2.0, help="unrecorded seconds per surface/mode")
    p.add_argument("--pause", type=float, default=0.3)
    p.add_argument("--max-minutes", type=float, default=10.0)
    p.add_argument("--out", default="/tmp/anyllm-bench/results.json")
    p.set_defaults(func=cmd_run)

    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
