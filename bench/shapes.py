"""The real shapes of traffic: paced token streams, large conversations, the servers' floors.

``run.sh`` runs it after ``bench.py run`` (``--shapes-only`` alone, ``--no-shapes`` not at all);
it reuses bench.py's clients and CPU accounting. Three parts, each printing a table:

``paced``   N concurrent streams (``--paced-streams``, default 100 and 1000) whose upstream
            (``paced_mock.py``) sends ~50 events ``--interval-ms`` apart, each in its own write:
            the relayed Anthropic backend, through HTTP ``POST /v1/messages`` and gRPC
            ``StreamMessage``. The streams start spread over one interval and are all open at
            once; the sidecar's CPU over the whole batch is divided by the upstream events
            (N x events) and by N, and its RSS growth (peak VmRSS during the batch minus VmRSS
            before it) by N.
``sizes``   closed-loop non-streamed requests with 1 KB, 27 KB and 200 KB conversations (a
            Claude-Code-like request: a system prompt, tools with JSON schemas, alternating
            turns) at C=16 and C=64, over both surfaces, to the nginx mock (relayed Anthropic
            backend): CPU per request and per KB of request body.
``floor``   the same closed loops (C=16, unary and 12-event streams) against ``floor.py``:
            grpc.aio and uvicorn with a canned answer and nothing behind them, so each surface's
            overhead is reported above its own server's floor.

Usage (``run.sh`` fills in the addresses): ``python bench/shapes.py --http H:P --grpc H:P
--sidecar-pid PID --mock-port PORT --floor-http H:P --floor-grpc H:P --floor-pid PID``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import json_format, struct_pb2

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench
from bench import (
    HttpConnection,
    HttpTarget,
    Recorder,
    grpc_stream_worker,
    grpc_unary_worker,
    http_worker,
    pb,
    proc_cpu_seconds,
    spb,
    spb_grpc,
)

PACED_CHAIN = "bench-paced"
SIZES_CHAIN = "bench-anthropic-json"
SIZES_KB = (1, 27, 200)
FILLER = "the quick brown fox reads a file and edits a function then runs the tests again"
WORDS = FILLER.split()


def proc_system_seconds(pid: int) -> float:
    """stime of a process: the kernel's share (syscalls, the TCP stack) of its CPU."""
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    return int(stat[stat.rfind(")") + 2 :].split()[12]) / bench.CLK_TCK


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _text(n: int, seed: int) -> str:
    words = (WORDS[(seed + i) % len(WORDS)] for i in range(n // 5 + 1))
    return " ".join(words)[:n]


def conversation(kb: int) -> dict[str, Any]:
    """A Claude-Code-like request of about ``kb`` KB: system prompt, tools, many turns."""
    size = kb * 1024
    system = _text(min(4000, size // 4), 1)
    tools = [
        {
            "name": f"tool_{i}",
            "description": _text(300, i),
            "input_schema": {
                "type": "object",
                "properties": {
                    "path": {"type": "string", "description": _text(80, i + 1)},
                    "content": {"type": "string", "description": _text(80, i + 2)},
                },
                "required": ["path"],
            },
        }
        for i in range(min(12, size // 2000))
    ]
    body: dict[str, Any] = {
        "model": SIZES_CHAIN,
        "max_tokens": 1024,
        "system": system,
        "tools": tools,
        "messages": [],
    }
    turn = 0
    while len(json.dumps(body)) < size - 200:
        left = size - len(json.dumps(body))
        role = "user" if turn % 2 == 0 else "assistant"
        body["messages"].append(
            {"role": role, "content": _text(min(1500, max(10, left - 60)), turn)}
        )
        turn += 1
    if body["messages"][-1]["role"] != "user":
        body["messages"].append({"role": "user", "content": "go on"})
    return body


def grpc_conversation(body: dict[str, Any]) -> spb.CreateMessageRequest:
    """The same request as protobuf."""
    request = spb.CreateMessageRequest(
        model=body["model"], max_tokens=body["max_tokens"], system=body["system"]
    )
    for tool in body["tools"]:
        schema = struct_pb2.Struct()
        json_format.ParseDict(tool["input_schema"], schema)
        request.tools.append(
            pb.Tool(name=tool["name"], description=tool["description"], input_schema=schema)
        )
    for m in body["messages"]:
        role = pb.ROLE_USER if m["role"] == "user" else pb.ROLE_ASSISTANT
        block = pb.ContentBlock(text=pb.TextBlock(text=m["content"]))
        request.messages.append(pb.InputMessage(role=role, content=[block]))
    return request


def _channel(address: str) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(address, options=[("grpc.enable_http_proxy", 0)])


# --------------------------------------------------------------------------- closed loops


def tree_cpu_seconds(pid: int) -> float:
    """CPU of a process and its children (a peer may run workers)."""
    return bench.pids_cpu_seconds([pid, *bench.children_of(pid)])


async def closed_loop(
    pid: int,
    workers: Callable[[Recorder], Iterable[Awaitable[None]]],
    warmup: float,
    duration: float,
) -> dict[str, Any]:
    cpu0 = tree_cpu_seconds(pid)
    t0 = time.perf_counter()
    rec = Recorder(t_measure=t0 + warmup, t_stop=t0 + warmup + duration)
    await asyncio.wait_for(asyncio.gather(*workers(rec)), warmup + duration + 60)
    cpu = tree_cpu_seconds(pid) - cpu0
    totals = sorted(rec.totals)
    return {
        "rps": round(len(totals) / duration, 1) if duration else 0.0,
        "p50_ms": round(1000 * (bench.percentile(totals, 50) or 0), 3),
        "p99_ms": round(1000 * (bench.percentile(totals, 99) or 0), 3),
        "cpu_ms_per_req": round(1000 * cpu / max(1, rec.completed), 4),
        "errors": sum(rec.errors.values()),
        "error_sample": rec.error_sample,
    }


def http_body_target(address: tuple[str, int], path: str, body: bytes, stream: bool) -> HttpTarget:
    return HttpTarget(
        url_host=address[0],
        port=address[1],
        path=path,
        headers=(("anthropic-version", "2023-06-01"), ("x-api-key", "sk-caller")),
        body=body,
        expect=b"event: message_stop" if stream else b'"content"',
    )


async def run_http(
    pid: int, target: HttpTarget, conc: int, warmup: float, duration: float
) -> dict[str, Any]:
    return await closed_loop(
        pid, lambda rec: [http_worker(target, rec, 60.0) for _ in range(conc)], warmup, duration
    )


async def run_grpc(
    pid: int,
    address: str,
    request: spb.CreateMessageRequest,
    stream: bool,
    conc: int,
    warmup: float,
    duration: float,
) -> dict[str, Any]:
    channel = _channel(address)
    stub = spb_grpc.MessagesServiceStub(channel)

    async def unary(rec: Recorder) -> None:
        # grpc_unary_worker builds the small request; this one sends ``request``
        while time.perf_counter() < rec.t_stop:
            start = time.perf_counter()
            try:
                reply = await stub.CreateMessage(request, timeout=60.0)
            except grpc.aio.AioRpcError as exc:
                rec.completed += 1
                if start >= rec.t_measure:
                    rec.error(exc.code().name, exc.details() or "")
                continue
            end = time.perf_counter()
            rec.record(start, end, end, len(reply.content) > 0, "empty_message")

    def workers(rec: Recorder) -> list[Awaitable[None]]:
        if stream:
            return [grpc_stream_worker(stub, request.model, rec, 60.0) for _ in range(conc)]
        if request.messages and len(request.messages) == 1 and not request.tools:
            return [grpc_unary_worker(stub, request.model, rec, 60.0) for _ in range(conc)]
        return [unary(rec) for _ in range(conc)]

    try:
        return await closed_loop(pid, workers, warmup, duration)
    finally:
        await channel.close(None)


# --------------------------------------------------------------------------- paced streams


async def _sample_rss(pid: int, peak: list[int], stop: asyncio.Event) -> None:
    while not stop.is_set():
        peak[0] = max(peak[0], rss_kb(pid))
        await asyncio.sleep(0.05)


async def paced_batch(args: argparse.Namespace, surface: str, streams: int) -> dict[str, Any]:
    """``streams`` paced streams at once over one surface; the sidecar's CPU and RSS for them."""
    pid = args.sidecar_pid
    spread = args.interval_ms / 1000
    events_seen: list[int] = []
    errors: list[str] = []
    body = json.dumps(
        {
            "model": PACED_CHAIN,
            "max_tokens": 256,
            "stream": True,
            "messages": [{"role": "user", "content": bench.PROMPT}],
        }
    ).encode()
    if surface == "http floor":  # floor.py's relay of the same paced stream through uvicorn
        target = http_body_target(bench._split_address(args.floor_http), "/paced", body, True)
        pid = args.floor_pid
    elif surface == "raw floor":  # floor.py's relay with asyncio protocols only: no HTTP server
        raw = ("127.0.0.1", read_raw_port(args.floor_log))
        target = http_body_target(raw, "/paced", body, True)
        pid = args.floor_pid
    else:
        target = http_body_target(bench._split_address(args.http), "/v1/messages", body, True)
    payload = target.payload()
    loop = asyncio.get_running_loop()
    channels = [_channel(args.grpc) for _ in range(max(1, streams // 100))]
    stubs = [spb_grpc.MessagesServiceStub(c) for c in channels]
    request = bench.grpc_request(PACED_CHAIN)

    async def one_http(i: int) -> None:
        await asyncio.sleep(spread * i / streams)
        _, conn = await loop.create_connection(HttpConnection, target.url_host, target.port)
        try:
            await asyncio.wait_for(conn.request(payload), 120)
            data = bytes(conn.body)
            if conn.status != 200 or b"event: message_stop" not in data:
                errors.append(data[:200].decode(errors="replace"))
            events_seen.append(data.count(b"\n\n"))
        finally:
            if conn.transport is not None:
                conn.transport.close()

    async def one_grpc(i: int) -> None:
        await asyncio.sleep(spread * i / streams)
        count = 0
        last = None
        try:
            async for event in stubs[i % len(stubs)].StreamMessage(request, timeout=120):
                count += 1
                last = event.WhichOneof("event")
        except grpc.aio.AioRpcError as exc:
            errors.append(f"{exc.code().name}: {exc.details()}")
            return
        if last != "message_stop":
            errors.append(f"ended with {last}")
        events_seen.append(count)

    one = one_grpc if surface == "grpc" else one_http
    if surface == "grpc":  # connect the channels before the clock starts
        await asyncio.gather(*(c.channel_ready() for c in channels))
    idle0 = proc_cpu_seconds(pid)
    await asyncio.sleep(1.0)  # the sidecar's own background CPU (grpc's threads, timers)
    idle_rate = proc_cpu_seconds(pid) - idle0
    rss0 = rss_kb(pid)
    peak = [rss0]
    stop = asyncio.Event()
    sampler = asyncio.create_task(_sample_rss(pid, peak, stop))
    cpu0, sys0 = proc_cpu_seconds(pid), proc_system_seconds(pid)
    t0 = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(streams)), return_exceptions=False)
    wall = time.perf_counter() - t0
    cpu = proc_cpu_seconds(pid) - cpu0
    kernel = proc_system_seconds(pid) - sys0
    stop.set()
    await sampler
    for c in channels:
        await c.close(None)
    upstream_events = streams * args.events
    return {
        "surface": surface,
        "streams": streams,
        "upstream_events": upstream_events,
        "events_per_stream_received": round(statistics.mean(events_seen), 1) if events_seen else 0,
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 3),
        "cpu_pct": round(100 * cpu / wall, 1),
        "us_per_event": round(1e6 * cpu / upstream_events, 2),
        "us_per_event_above_idle": round(1e6 * (cpu - idle_rate * wall) / upstream_events, 2),
        "kernel_share": round(kernel / cpu, 2) if cpu else 0.0,
        "ms_per_stream": round(1e3 * cpu / streams, 3),
        "rss_kb_per_stream": round((peak[0] - rss0) / streams, 1),
        "errors": len(errors),
        "error_sample": errors[0] if errors else "",
    }


# --------------------------------------------------------------------------- the parts


def _median(rows: list[dict[str, Any]], key: str) -> float:
    return round(statistics.median(r[key] for r in rows), 4)


async def part_paced(args: argparse.Namespace) -> list[dict[str, Any]]:
    out = []
    for streams in [int(n) for n in args.paced_streams.split(",") if n]:
        surfaces = [s for s in args.paced_surfaces.split(",") if s]
        if not args.floor_pid:
            surfaces = [s for s in surfaces if not s.endswith(" floor")]
        for surface in surfaces:
            rounds = []
            for _ in range(args.rounds):
                r = await paced_batch(args, surface, streams)
                rounds.append(r)
                print(f"  paced {surface:4s} N={streams:<5d} {r}", flush=True)
                await asyncio.sleep(0.5)
            row = dict(rounds[0])
            keys = (
                "us_per_event",
                "us_per_event_above_idle",
                "kernel_share",
                "ms_per_stream",
                "rss_kb_per_stream",
                "cpu_pct",
            )
            for key in keys:
                row[key] = round(_median(rounds, key), 2)
            row["errors"] = sum(r["errors"] for r in rounds)
            row["spread_us_per_event"] = round(
                max(r["us_per_event"] for r in rounds) - min(r["us_per_event"] for r in rounds), 2
            )
            out.append(row)
    return out


async def part_sizes(args: argparse.Namespace) -> list[dict[str, Any]]:
    out = []
    http_addr = bench._split_address(args.http)
    for kb in SIZES_KB:
        body = conversation(kb)
        raw = json.dumps(body).encode()
        request = grpc_conversation(body)
        real_kb = len(raw) / 1024
        target = http_body_target(http_addr, "/v1/messages", raw, False)
        for conc in (16, 64):
            for surface in ("http", "grpc"):
                rounds = []
                for _ in range(args.rounds):
                    if surface == "http":
                        r = await run_http(
                            args.sidecar_pid, target, conc, args.warmup, args.duration
                        )
                    else:
                        r = await run_grpc(
                            args.sidecar_pid,
                            args.grpc,
                            request,
                            False,
                            conc,
                            args.warmup,
                            args.duration,
                        )
                    rounds.append(r)
                    print(f"  size {kb:>3d}KB C={conc:<3d} {surface:4s} {r}", flush=True)
                cpu = _median(rounds, "cpu_ms_per_req")
                out.append(
                    {
                        "kb": round(real_kb, 1),
                        "concurrency": conc,
                        "surface": surface,
                        "rps": _median(rounds, "rps"),
                        "p50_ms": _median(rounds, "p50_ms"),
                        "p99_ms": _median(rounds, "p99_ms"),
                        "cpu_ms_per_req": cpu,
                        "cpu_us_per_kb": round(1000 * cpu / real_kb, 2),
                        "errors": sum(r["errors"] for r in rounds),
                        "error_sample": next(
                            (r["error_sample"] for r in rounds if r["errors"]), ""
                        ),
                    }
                )
    return out


def read_variants(log: str) -> list[tuple[str, int]]:
    """The option variants floor.py serves (its ``variant NAME<TAB>PORT`` lines)."""
    if not log or not Path(log).exists():
        return []
    out = []
    for line in Path(log).read_text().splitlines():
        if line.startswith("variant "):
            name, _, port = line.removeprefix("variant ").rpartition("\t")
            out.append((name, int(port)))
    return out


def read_raw_port(log: str) -> int:
    """The port of floor.py's raw-protocol paced relay (its ``raw PORT`` line)."""
    for line in Path(log).read_text().splitlines():
        if line.startswith("raw "):
            return int(line.split()[1])
    raise SystemExit(f"shapes.py: no 'raw PORT' line in {log}")


async def part_floor(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Floors and the sidecar side by side, interleaved, at C=16: unary and 12-event streams."""
    out = []
    small = json.dumps(
        {
            "model": "bench-anthropic-json",
            "max_tokens": 256,
            "messages": [{"role": "user", "content": bench.PROMPT}],
        }
    ).encode()
    small_stream = json.dumps(
        {
            "model": "bench-anthropic-sse",
            "max_tokens": 256,
            "stream": True,
            "messages": [{"role": "user", "content": bench.PROMPT}],
        }
    ).encode()
    floor_http = bench._split_address(args.floor_http)
    http_addr = bench._split_address(args.http)
    for kind in ("unary", "stream"):
        stream = kind == "stream"
        cells: dict[str, tuple[int, Callable[[], Awaitable[dict[str, Any]]]]] = {
            "http floor (uvicorn)": (
                args.floor_pid,
                lambda s=stream: run_http(
                    args.floor_pid,
                    http_body_target(
                        floor_http,
                        "/v1/messages/stream" if s else "/v1/messages",
                        small_stream if s else small,
                        s,
                    ),
                    16,
                    args.warmup,
                    args.duration,
                ),
            ),
            "http sidecar": (
                args.sidecar_pid,
                lambda s=stream: run_http(
                    args.sidecar_pid,
                    http_body_target(http_addr, "/v1/messages", small_stream if s else small, s),
                    16,
                    args.warmup,
                    args.duration,
                ),
            ),
            "grpc floor (grpc.aio)": (
                args.floor_pid,
                lambda s=stream: run_grpc(
                    args.floor_pid,
                    args.floor_grpc,
                    bench.grpc_request("floor"),
                    s,
                    16,
                    args.warmup,
                    args.duration,
                ),
            ),
            "grpc sidecar": (
                args.sidecar_pid,
                lambda s=stream: run_grpc(
                    args.sidecar_pid,
                    args.grpc,
                    bench.grpc_request("bench-anthropic-sse" if s else "bench-anthropic-json"),
                    s,
                    16,
                    args.warmup,
                    args.duration,
                ),
            ),
        }
        if not stream:  # the grpc.aio options and the trailing metadata, on the unary floor
            for name, port in read_variants(args.floor_log):
                cells[f"grpc floor, {name}"] = (
                    args.floor_pid,
                    lambda p=port: run_grpc(
                        args.floor_pid,
                        f"127.0.0.1:{p}",
                        bench.grpc_request("floor"),
                        False,
                        16,
                        args.warmup,
                        args.duration,
                    ),
                )
        rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in cells}
        names = list(cells)
        for rnd in range(args.rounds):
            for name in names[rnd % len(names) :] + names[: rnd % len(names)]:
                r = await cells[name][1]()
                rounds[name].append(r)
                print(f"  floor {kind:6s} {name:22s} {r}", flush=True)
        for name in names:
            out.append(
                {
                    "kind": kind,
                    "server": name,
                    "rps": _median(rounds[name], "rps"),
                    "cpu_ms_per_req": _median(rounds[name], "cpu_ms_per_req"),
                    "errors": sum(r["errors"] for r in rounds[name]),
                }
            )
    return out


def render(
    paced: list[dict[str, Any]], sizes: list[dict[str, Any]], floor: list[dict[str, Any]]
) -> str:
    lines: list[str] = []
    if paced:
        lines += [
            "### Paced streams (relayed Anthropic backend, ~50 upstream events per stream, one per"
            " write)",
            "",
            "| surface | streams | events recv/stream | sidecar CPU µs/event | above idle |"
            " kernel share | ms/stream | CPU % | RSS KB/stream | errors | µs/event spread |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in paced:
            lines.append(
                f"| {r['surface']} | {r['streams']} | {r['events_per_stream_received']} |"
                f" {r['us_per_event']} | {r['us_per_event_above_idle']} | {r['kernel_share']} |"
                f" {r['ms_per_stream']} | {r['cpu_pct']} |"
                f" {r['rss_kb_per_stream']} | {r['errors']} | {r['spread_us_per_event']} |"
            )
        lines.append("")
    if sizes:
        lines += [
            "### Request size (non-streamed, relayed Anthropic backend)",
            "",
            "| body KB | C | surface | rps | p50 ms | p99 ms | sidecar CPU ms/req | µs/KB |"
            " errors |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in sizes:
            lines.append(
                f"| {r['kb']} | {r['concurrency']} | {r['surface']} | {r['rps']:.0f} |"
                f" {r['p50_ms']} | {r['p99_ms']} | {r['cpu_ms_per_req']} | {r['cpu_us_per_kb']} |"
                f" {r['errors']} |"
            )
        lines.append("")
    if floor:
        lines += [
            "### Floors (C=16; a canned answer, nothing behind the server)",
            "",
            "| kind | server | rps | CPU ms/req | errors |",
            "|---|---|---|---|---|",
        ]
        for r in floor:
            lines.append(
                f"| {r['kind']} | {r['server']} | {r['rps']:.0f} | {r['cpu_ms_per_req']} |"
                f" {r['errors']} |"
            )
        lines.append("")
    return "\n".join(lines)


def notes(
    paced: list[dict[str, Any]], sizes: list[dict[str, Any]], floor: list[dict[str, Any]]
) -> list[str]:
    out = []
    raw = {r["streams"]: r["us_per_event"] for r in paced if r["surface"] == "raw floor"}
    for r in paced:
        if r["surface"] not in ("http", "grpc"):
            continue
        limit = 15 if r["surface"] == "http" else 20
        mark = "ok" if r["us_per_event"] <= limit else "OVER"
        floor_note = ""
        if r["streams"] in raw:  # what no asyncio relay on this machine goes below
            floor_note = f"; raw asyncio relay floor {raw[r['streams']]}"
        out.append(
            f"- paced {r['surface']} N={r['streams']}: {r['us_per_event']} µs/event"
            f" (target <= {limit}{floor_note}) {mark}"
        )
    by = {(r["kb"], r["concurrency"], r["surface"]): r["cpu_ms_per_req"] for r in sizes}
    kbs = sorted({r["kb"] for r in sizes})
    for surface in ("http", "grpc"):
        mid = [kb for kb in kbs if 20 < kb < 40]
        big = [kb for kb in kbs if kb > 100]
        if mid and (mid[0], 16, surface) in by and (mid[0], 64, surface) in by:
            a, b = by[(mid[0], 16, surface)], by[(mid[0], 64, surface)]
            mark = "ok" if b <= 1.1 * a else "OVER"
            out.append(
                f"- {surface} {mid[0]} KB: C=64 / C=16 = {b / a:.2f} (target <= 1.10) {mark}"
            )
            if big and (big[0], 16, surface) in by:
                c = by[(big[0], 16, surface)]
                mark = "ok" if c <= 3 * a else "OVER"
                out.append(
                    f"- {surface} {big[0]} KB / {mid[0]} KB at C=16 = {c / a:.2f}"
                    f" (target <= 3) {mark}"
                )
    f = {(r["kind"], r["server"]): r["cpu_ms_per_req"] for r in floor}
    for kind, limit in (("unary", 1.25), ("stream", 1.5)):
        try:
            hf, hs = f[(kind, "http floor (uvicorn)")], f[(kind, "http sidecar")]
            gf, gs = f[(kind, "grpc floor (grpc.aio)")], f[(kind, "grpc sidecar")]
        except KeyError:
            continue
        mark = "ok" if gs <= limit * hs else "OVER"
        out.append(f"- {kind}: gRPC / HTTP sidecar CPU = {gs / hs:.2f} (target <= {limit}) {mark}")
        mark = "ok" if gs - gf <= hs - hf else "OVER"
        out.append(
            f"- {kind}: above the floor, gRPC {gs - gf:.4f} ms vs HTTP {hs - hf:.4f} ms {mark}"
        )
    return out


async def main_async(args: argparse.Namespace) -> int:
    parts = [p for p in args.parts.split(",") if p]
    paced = await part_paced(args) if "paced" in parts else []
    sizes = await part_sizes(args) if "sizes" in parts else []
    floor = await part_floor(args) if "floor" in parts and args.floor_pid else []
    table = render(paced, sizes, floor)
    checks = notes(paced, sizes, floor)
    print()
    print(table)
    print("\n".join(checks))
    doc = {"paced": paced, "sizes": sizes, "floor": floor, "table": table, "notes": checks}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1))  # noqa: ASYNC240 (the run is over)
    print(f"\nraw results: {args.out}")
    bad = sum(r["errors"] for r in (*paced, *sizes, *floor))
    return 1 if bad else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--http", required=True)
    parser.add_argument("--grpc", required=True)
    parser.add_argument("--sidecar-pid", type=int, required=True)
    parser.add_argument("--floor-http", default="")
    parser.add_argument("--floor-grpc", default="")
    parser.add_argument("--floor-pid", type=int, default=0)
    parser.add_argument("--floor-log", default="", help="floor.py's stdout (its variants)")
    parser.add_argument("--parts", default="paced,sizes,floor")
    parser.add_argument("--paced-streams", default="100,1000")
    parser.add_argument("--paced-surfaces", default="raw floor,http floor,http,grpc")
    parser.add_argument("--events", type=int, default=50, help="as given to paced_mock.py")
    parser.add_argument("--interval-ms", type=float, default=100.0, help="as paced_mock.py")
    parser.add_argument("-r", "--rounds", type=int, default=2)
    parser.add_argument("-d", "--duration", type=float, default=4.0)
    parser.add_argument("-w", "--warmup", type=float, default=1.0)
    parser.add_argument("--out", default="/tmp/anyllm-bench/shapes.json")
    args = parser.parse_args()
    bench._install_uvloop()
    sys.exit(asyncio.run(main_async(args)))


if __name__ == "__main__":
    main()
