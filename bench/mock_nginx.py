"""Write the nginx configuration of the benchmark's mock upstream (OpenAI-compatible, canned).

Three ports on 127.0.0.1, each answering any POST with fixed bytes (the request is not read
beyond what nginx needs), plus ``GET /health`` and ``GET /status`` (nginx ``stub_status``: its
``accepts`` counter tells how many upstream connections the sidecar opened):

    BASE+0  ``chat.completion`` JSON
    BASE+1  ``chat.completion.chunk`` SSE: role chunk, 10 content chunks, finish chunk,
            usage chunk, ``data: [DONE]`` (13 ``data:`` lines)
    BASE+2  the same SSE with ``--long-chunks`` content chunks (default 200)
    BASE+3  an Anthropic ``message`` JSON (the sidecar's native backend, relayed)
    BASE+4  an Anthropic Messages SSE stream: message_start, a text block with 10 deltas,
            message_delta, message_stop (15 events)
    BASE+5  the same 15 events as Bedrock's InvokeModelWithResponseStream sends them: AWS
            event-stream frames (prelude, headers, CRCs), each a ``chunk`` with the event's JSON
            base64-encoded in ``bytes`` (served from the njs module: the frames are binary)

The sidecar routes to them by model name (one backend and chain per port, see ``bench.py``),
so neither nginx nor the sidecar has to look at ``"stream"`` to pick the answer. Bodies that
fit into one nginx config token (< 3.8 KB) are served with ``return``; the long stream is
served from the njs module (``libnginx-mod-http-js``), which ``run.sh`` installs. Everything
arrives in one write: the sidecar still parses and re-emits every event, but nothing is paced.

Usage: ``python bench/mock_nginx.py --run-dir DIR [--base-port 18010] [--long-chunks 200]``;
prints the path of the written ``nginx.conf``.
"""

from __future__ import annotations

import argparse
import base64
import json
import struct
import zlib
from pathlib import Path
from typing import Any

NJS_MODULE = Path("/usr/lib/nginx/modules/ngx_http_js_module.so")
MAX_RETURN_BYTES = 3800  # nginx parses config tokens in a 4 KB buffer
CREATED = 1700000000
MODEL = "mock-model"
PIECES = ["Hello", "!", " This", " is", " a", " canned", " mock", " reply", " from", " upstream."]


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


def _pieces(n: int) -> list[str]:
    return [PIECES[i % len(PIECES)] for i in range(n)]


def openai_json(n: int = 10) -> str:
    """A ``chat.completion`` whose text is ``n`` pieces long."""
    pieces = _pieces(n)
    return _dumps(
        {
            "id": "chatcmpl-bench0001",
            "object": "chat.completion",
            "created": CREATED,
            "model": MODEL,
            "system_fingerprint": "fp_bench",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "".join(pieces), "refusal": None},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 12, "completion_tokens": n, "total_tokens": 12 + n},
        }
    )


def openai_sse(n: int = 10) -> str:
    """A streamed chat completion: role chunk, ``n`` content chunks, finish, usage, [DONE]."""
    base = {
        "id": "chatcmpl-bench0001",
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": MODEL,
        "system_fingerprint": "fp_bench",
    }

    def choice(delta: dict[str, str], finish: str | None = None) -> list[dict[str, Any]]:
        return [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]

    events: list[dict[str, Any]] = [
        {**base, "choices": choice({"role": "assistant", "content": ""})}
    ]
    events += [{**base, "choices": choice({"content": p})} for p in _pieces(n)]
    events.append({**base, "choices": choice({}, "stop")})
    usage = {"prompt_tokens": 12, "completion_tokens": n, "total_tokens": 12 + n}
    events.append({**base, "choices": [], "usage": usage})
    return "".join(f"data: {_dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"


def anthropic_json(n: int = 10) -> str:
    """An Anthropic ``message`` whose text is ``n`` pieces long."""
    return _dumps(
        {
            "id": "msg_bench0001",
            "type": "message",
            "role": "assistant",
            "model": MODEL,
            "content": [{"type": "text", "text": "".join(_pieces(n))}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": 12, "output_tokens": n, "service_tier": "standard"},
        }
    )


def anthropic_sse(n: int = 10) -> str:
    """An Anthropic stream of one text block in ``n`` deltas."""
    start = {
        "id": "msg_bench0001",
        "type": "message",
        "role": "assistant",
        "model": MODEL,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": 12, "output_tokens": 1},
    }
    events: list[dict[str, Any]] = [
        {"type": "message_start", "message": start},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    ]
    events += [
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}}
        for p in _pieces(n)
    ]
    events += [
        {"type": "content_block_stop", "index": 0},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": n},
        },
        {"type": "message_stop"},
    ]
    return "".join(f"event: {e['type']}\ndata: {_dumps(e)}\n\n" for e in events)


def _event_stream_frame(headers: dict[str, str], payload: bytes) -> bytes:
    """One AWS event-stream message: prelude (lengths, CRC32), string headers, payload, CRC32."""
    encoded = b"".join(
        bytes([len(k)]) + k.encode() + b"\x07" + struct.pack(">H", len(v)) + v.encode()
        for k, v in headers.items()
    )
    prelude = struct.pack(">II", 12 + len(encoded) + len(payload) + 4, len(encoded))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    message = prelude + encoded + payload
    return message + struct.pack(">I", zlib.crc32(message))


def bedrock_event_stream(n: int = 10) -> bytes:
    """``anthropic_sse(n)``'s events as Bedrock streams them."""
    headers = {
        ":event-type": "chunk",
        ":content-type": "application/json",
        ":message-type": "event",
    }
    out = b""
    for block in anthropic_sse(n).split("\n\n"):
        for line in block.splitlines():
            if line.startswith("data: "):
                data = base64.b64encode(line[6:].encode()).decode()
                out += _event_stream_frame(headers, _dumps({"bytes": data}).encode())
    return out


def _literal(body: str) -> str:
    """An nginx single-quoted string."""
    if "$" in body or "'" in body:
        raise ValueError("a canned body must contain neither $ nor '")
    return "'" + body.replace("\\", "\\\\").replace("\n", "\\n") + "'"


def _server(port: int, content_type: str, body: str | None, njs_function: str) -> str:
    """A port answering every POST with ``body`` (or, when it is None or too long for one
    config token, with what the njs function returns)."""
    if body is not None and len(body) <= MAX_RETURN_BYTES:
        content = f"default_type {content_type};\n            return 200 {_literal(body)};"
    else:
        content = f"js_content mock.{njs_function};"
    return f"""
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location = /health {{ default_type text/plain; return 200 'ok'; }}
        location = /status {{ stub_status; }}
        location / {{
            add_header Cache-Control no-cache;
            {content}
        }}
    }}"""


def write_config(run_dir: Path, base_port: int, long_chunks: int) -> Path:
    run_dir = run_dir.resolve()
    for sub in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (run_dir / "tmp" / sub).mkdir(parents=True, exist_ok=True)
    long_sse = openai_sse(long_chunks)
    needs_njs = True  # the Bedrock stream is binary: only njs serves it
    if needs_njs and not NJS_MODULE.exists():
        raise SystemExit(
            f"mock_nginx: the {len(long_sse)} B long stream needs the njs module ({NJS_MODULE}); "
            "apt-get install libnginx-mod-http-js"
        )
    frames = base64.b64encode(bedrock_event_stream()).decode()
    js = "\n".join(
        [
            f"var LONG_SSE = {json.dumps(long_sse)};",
            f"var BEDROCK = Buffer.from({json.dumps(frames)}, 'base64');",
            "function longSse(r) {",
            "  r.headersOut['Content-Type'] = 'text/event-stream';",
            "  r.return(200, LONG_SSE);",
            "}",
            "function bedrock(r) {",
            "  r.headersOut['Content-Type'] = 'application/vnd.amazon.eventstream';",
            "  r.return(200, BEDROCK);",
            "}",
            "export default { longSse, bedrock };",
            "",
        ]
    )
    (run_dir / "mock.js").write_text(js)
    njs_load = f"load_module {NJS_MODULE};" if needs_njs else "# njs not needed"
    njs_import = f"js_import mock from {run_dir}/mock.js;" if needs_njs else ""
    conf = f"""# generated by bench/mock_nginx.py -- do not edit
{njs_load}
worker_processes 1;
daemon off;
pid {run_dir}/nginx.pid;
error_log {run_dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    server_tokens off;
    tcp_nodelay on;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    client_body_buffer_size 1m;
    client_body_temp_path {run_dir}/tmp/client_body;
    proxy_temp_path {run_dir}/tmp/proxy;
    fastcgi_temp_path {run_dir}/tmp/fastcgi;
    uwsgi_temp_path {run_dir}/tmp/uwsgi;
    scgi_temp_path {run_dir}/tmp/scgi;
    {njs_import}
{_server(base_port, "application/json", openai_json(), "json")}
{_server(base_port + 1, "text/event-stream", openai_sse(), "sse")}
{_server(base_port + 2, "text/event-stream", long_sse, "longSse")}
{_server(base_port + 3, "application/json", anthropic_json(), "json")}
{_server(base_port + 4, "text/event-stream", anthropic_sse(), "sse")}
{_server(base_port + 5, "application/vnd.amazon.eventstream", None, "bedrock")}
}}
"""
    path = run_dir / "nginx.conf"
    path.write_text(conf)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run-dir", type=Path, required=True)
    parser.add_argument("--base-port", type=int, default=18010)
    parser.add_argument("--long-chunks", type=int, default=200)
    args = parser.parse_args()
    print(write_config(args.run_dir, args.base_port, args.long_chunks))


if __name__ == "__main__":
    main()
