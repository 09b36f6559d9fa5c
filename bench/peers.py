"""The sidecar beside the gateways users would pick instead: LiteLLM's proxy and Portkey's gateway.

``run.sh --peers`` (``make bench-peers``) installs the peers (``peers.sh``), starts them pinned on
the sidecar's cpu beside the sidecar, on the same nginx mock, and runs this. Every contestant
gets the same OpenAI ``chat.completions`` request (what all of them accept) for the same mock
port, one after another inside each cell, rotated between rounds:

    direct    the mock itself (the baseline)
    sidecar   the OpenAI door, ``POST /v1/chat/completions``, relayed to the openai backend
    portkey   ``POST /v1/chat/completions`` with ``x-portkey-provider: openai`` and
              ``x-portkey-custom-host`` = the mock (Portkey routes per request, by headers)
    litellm   ``POST /v1/chat/completions``, model ``mock-MODE`` of the config peers.sh writes

Modes: ``nonstream`` (JSON), ``stream`` (12 content events), ``long`` (200); the per-extra-chunk
cost is (long - stream) / 190. CPU is each contestant's process tree (utime + stime from
/proc) over the run, warm-up included, divided by the requests completed.

Subcommands: ``run`` (measure, print the table and the ratios), ``litellm-config`` (write the
LiteLLM config for the mock's ports), ``portkey-patch`` (see ``patch_portkey``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import shapes

import bench
from bench import CHAIN, MOCK_OFFSET, HttpTarget

MODES = ("nonstream", "stream", "long")
CONTESTANTS = ("direct", "sidecar", "portkey", "litellm")


def _body(model: str, stream: bool) -> bytes:
    body: dict[str, Any] = {
        "model": model,
        "max_tokens": 256,
        "messages": [{"role": "user", "content": bench.PROMPT}],
    }
    if stream:
        body |= {"stream": True, "stream_options": {"include_usage": True}}
    return json.dumps(body).encode()


def target(args: argparse.Namespace, who: str, mode: str) -> tuple[int, HttpTarget]:
    """The pid whose CPU counts (0: none) and the request for one contestant and mode."""
    stream = mode != "nonstream"
    mock = args.mock_port + MOCK_OFFSET[mode]
    expect = b"[DONE]" if stream else b'"choices"'
    auth = ("Authorization", "Bearer sk-mock")
    if who == "direct":
        pid, (host, port), model, headers = 0, ("127.0.0.1", mock), "mock-model", (auth,)
    elif who == "sidecar":
        pid, (host, port), model, headers = (
            args.sidecar_pid,
            bench._split_address(args.http),
            CHAIN[mode],
            (auth,),
        )
    elif who == "portkey":
        pid, (host, port), model = args.portkey_pid, ("127.0.0.1", args.portkey_port), "mock-model"
        headers = (
            auth,
            ("x-portkey-provider", "openai"),
            ("x-portkey-custom-host", f"http://127.0.0.1:{mock}/v1"),
        )
    else:
        pid, model = args.litellm_pid, f"mock-{mode}"
        host, port = "127.0.0.1", args.litellm_port
        headers = (auth,)
    return pid, HttpTarget(
        url_host=host,
        port=port,
        path="/v1/chat/completions",
        headers=headers,
        body=_body(model, stream),
        expect=expect,
        reject=b'{"error"',
    )


async def run(args: argparse.Namespace) -> int:
    who_all = [w for w in args.contestants.split(",") if w]
    concs = [int(c) for c in args.concurrency.split(",") if c]
    rows: list[dict[str, Any]] = []
    for mode in MODES:
        for who in who_all:  # prime: imports, pools, JIT
            pid, t = target(args, who, mode)
            await shapes.run_http(pid or args.sidecar_pid, t, 4, args.prime, 0.0)
        for conc in concs:
            rounds: dict[str, list[dict[str, Any]]] = {w: [] for w in who_all}
            for rnd in range(args.rounds):
                order = who_all[rnd % len(who_all) :] + who_all[: rnd % len(who_all)]
                for who in order:
                    pid, t = target(args, who, mode)
                    r = await shapes.run_http(
                        pid or args.sidecar_pid, t, conc, args.warmup, args.duration
                    )
                    if not pid:
                        r["cpu_ms_per_req"] = 0.0
                    rounds[who].append(r)
                    print(f"  {mode:9s} C={conc:<3d} r{rnd} {who:8s} {r}", flush=True)
            for who in who_all:
                rs = rounds[who]
                rows.append(
                    {
                        "mode": mode,
                        "concurrency": conc,
                        "contestant": who,
                        "rps": statistics.median(r["rps"] for r in rs),
                        "p50_ms": statistics.median(r["p50_ms"] for r in rs),
                        "cpu_ms_per_req": statistics.median(r["cpu_ms_per_req"] for r in rs),
                        "errors": sum(r["errors"] for r in rs),
                        "error_sample": next((r["error_sample"] for r in rs if r["errors"]), ""),
                    }
                )
    table, notes = render(rows, who_all, concs)
    print()
    print(table)
    print("\n".join(notes))
    doc = {"rows": rows, "table": table, "notes": notes}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1))  # noqa: ASYNC240 (the run is over)
    print(f"\nraw results: {out}")
    return 1 if any(r["errors"] for r in rows) else 0


def render(
    rows: list[dict[str, Any]], who_all: list[str], concs: list[int]
) -> tuple[str, list[str]]:
    by = {(r["mode"], r["concurrency"], r["contestant"]): r for r in rows}
    peers = [w for w in who_all if w not in ("direct", "sidecar")]
    lines = [
        "| mode | C | contestant | rps | p50 ms | CPU ms/req | x sidecar CPU | errors |",
        "|---|---|---|---|---|---|---|---|",
    ]
    notes: list[str] = []
    for r in rows:
        ours = by.get((r["mode"], r["concurrency"], "sidecar"), {}).get("cpu_ms_per_req")
        ratio = (
            f"{r['cpu_ms_per_req'] / ours:.1f}x"
            if ours and r["contestant"] not in ("direct", "sidecar")
            else ""
        )
        lines.append(
            f"| {r['mode']} | {r['concurrency']} | {r['contestant']} | {r['rps']:.0f} |"
            f" {r['p50_ms']:.3f} | {r['cpu_ms_per_req']:.3f} | {ratio} | {r['errors']} |"
        )
    need = {"portkey": 5.0, "litellm": 60.0}
    for conc in concs:
        for mode in MODES:
            ours = by.get((mode, conc, "sidecar"))
            for peer in peers:
                theirs = by.get((mode, conc, peer))
                if not ours or not theirs or not ours["cpu_ms_per_req"]:
                    continue
                ratio = theirs["cpu_ms_per_req"] / ours["cpu_ms_per_req"]
                limit = need.get(peer, 1.0)
                mark = "ok" if ratio >= limit and ours["rps"] >= theirs["rps"] else "SHORT"
                notes.append(
                    f"- {mode} C={conc}: {peer} uses {ratio:.1f}x the sidecar's CPU (target >="
                    f" {limit:g}x), rps {theirs['rps']:.0f} vs {ours['rps']:.0f} {mark}"
                )
        extra = {}
        for who in ("sidecar", *peers):
            short, long = by.get(("stream", conc, who)), by.get(("long", conc, who))
            if short and long:
                extra[who] = (long["cpu_ms_per_req"] - short["cpu_ms_per_req"]) / 190 * 1000
        if extra:
            notes.append(
                f"- C={conc}, per extra upstream chunk: "
                + ", ".join(f"{w} {us:.1f} µs" for w, us in extra.items())
            )
    return "\n".join(lines), notes


def litellm_config(args: argparse.Namespace) -> None:
    models = "\n".join(
        f"  - model_name: mock-{mode}\n    litellm_params:\n      model: openai/gpt-4o-mini\n"
        f"      api_base: http://127.0.0.1:{args.mock_port + MOCK_OFFSET[mode]}/v1\n"
        "      api_key: sk-mock"
        for mode in MODES
    )
    # A priced upstream model: with an unknown one LiteLLM spends CPU on a cost diagnostic.
    text = (
        "# generated by bench/peers.py litellm-config -- LiteLLM's proxy on the bench mock\n"
        f"model_list:\n{models}\n"
        "litellm_settings: {telemetry: false, drop_params: true, set_verbose: false,"
        " turn_off_message_logging: true, request_timeout: 60, num_retries: 0}\n"
        "general_settings: {disable_spend_logs: true, disable_error_logs: true}\n"
        "router_settings: {disable_cooldowns: true}\n"
    )
    Path(args.out).write_text(text)


# Portkey 1.15.2 on Node 20 fails every OpenAI-format stream ("TypeError: immutable"): it wraps
# the upstream fetch() Response in a new Response that keeps the upstream's immutable Headers
# until materialised, then appends to them. The copy retries once after materialising it.
PORTKEY_OLD = "updateHeaders(e,t,a){return e.headers.append("
PORTKEY_NEW = (
    "updateHeaders(e,t,a){try{return this.__benchUh(e,t,a)}catch(x){if(x&&x.message==="
    '"immutable"){void e.type;return this.__benchUh(e,t,a)}throw x}}'
    "__benchUh(e,t,a){return e.headers.append("
)


def patch_portkey(args: argparse.Namespace) -> None:
    """Write a patched copy of Portkey's start-server.js (the installed file is left as it is)."""
    text = Path(args.src).read_text(encoding="utf-8")
    if text.count(PORTKEY_OLD) != 1:
        raise SystemExit("peers: Portkey's build changed; the streaming patch no longer applies")
    Path(args.out).write_text(text.replace(PORTKEY_OLD, PORTKEY_NEW), encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run")
    p.add_argument("--http", required=True, help="the sidecar's HTTP address")
    p.add_argument("--sidecar-pid", type=int, required=True)
    p.add_argument("--mock-port", type=int, default=18010)
    p.add_argument("--portkey-port", type=int, default=18787)
    p.add_argument("--portkey-pid", type=int, default=0)
    p.add_argument("--litellm-port", type=int, default=18400)
    p.add_argument("--litellm-pid", type=int, default=0)
    p.add_argument("--contestants", default=",".join(CONTESTANTS))
    p.add_argument("-c", "--concurrency", default="16")
    p.add_argument("-r", "--rounds", type=int, default=2)
    p.add_argument("-d", "--duration", type=float, default=4.0)
    p.add_argument("-w", "--warmup", type=float, default=1.0)
    p.add_argument("--prime", type=float, default=2.0)
    p.add_argument("--out", default="/tmp/anyllm-bench/peers.json")
    p = sub.add_parser("litellm-config")
    p.add_argument("--mock-port", type=int, default=18010)
    p.add_argument("--out", required=True)
    p = sub.add_parser("portkey-patch")
    p.add_argument("src")
    p.add_argument("out")
    args = parser.parse_args()
    if args.command == "litellm-config":
        litellm_config(args)
    elif args.command == "portkey-patch":
        patch_portkey(args)
    else:
        bench._install_uvloop()
        sys.exit(asyncio.run(run(args)))


if __name__ == "__main__":
    main()
