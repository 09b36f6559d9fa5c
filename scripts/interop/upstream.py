"""Drive the fake upstream (tests/upstream/server.py) around one interop check. Stdlib only.

    upstream.py URL before CHECK          reset the upstream, queue the check's behaviours
    upstream.py URL after CHECK LANG      assert what the upstream saw (PASS/FAIL; exit 1 on FAIL)

``URL`` is the upstream's base URL (``http://127.0.0.1:PORT``). The behaviours below are the
single source of what each check (in every language's example) expects from the upstream.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.request
from typing import Any

BEHAVIOURS: dict[str, list[dict[str, Any]]] = {
    "unary": [],
    "tools": [
        {
            "tool_calls": [
                {"id": "call_1", "name": "get_weather", "arguments": {"city": "Paris", "days": 3}}
            ]
        }
    ],
    "fallback": [{"status": 503}],
    "stream": [],
    "deadline": [{"delay": 5}],
    "invalid": [
        {"status": 400, "body": {"error": {"message": "bad", "type": "invalid_request_error"}}}
    ],
    "exhausted": [{"status": 503, "times": 2, "headers": {"retry-after": "2"}}],
    "chain": [{"status": 503}],
    "cancel": [{"stall_after": 3}],
    "count": [],
    # An Anthropic-protocol answer in today's shapes: server-tool blocks, a block type no proto
    # knows, a new stop reason, new usage fields. Every client reads it typed or by its raw JSON.
    "servertools": [
        {
            "path": "/v1/messages",
            "body": {
                "id": "msg_srv_1",
                "type": "message",
                "role": "assistant",
                "model": "claude-upstream",
                "content": [
                    {
                        "type": "server_tool_use",
                        "id": "srvtoolu_1",
                        "name": "web_search",
                        "input": {"query": "weather in Paris"},
                    },
                    {
                        "type": "web_search_tool_result",
                        "tool_use_id": "srvtoolu_1",
                        "content": [
                            {
                                "type": "web_search_result",
                                "url": "https://example.com/paris",
                                "title": "Paris weather",
                                "encrypted_content": "EnC",
                                "page_age": None,
                            }
                        ],
                    },
                    {"type": "future_block", "answer": 42},
                    {"type": "text", "text": "Sunny.", "citations": None},
                ],
                "stop_reason": "model_context_window_exceeded",
                "stop_sequence": None,
                "usage": {
                    "input_tokens": 10,
                    "output_tokens": 3,
                    "server_tool_use": {"web_search_requests": 1, "web_fetch_requests": 0},
                    "service_tier": "standard",
                },
            },
        }
    ],
}

# How long after the client gave up the upstream must see its connection closed. The sidecar's
# own idle/first-token timeouts in the interop config are far longer, so only a propagated
# cancellation can close it this soon.
DISCONNECT_WITHIN = 3.0


def _request(url: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    method = "GET" if body is None else "POST"
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("content-type", "application/json")
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.loads(resp.read() or b"null")


def _generation_requests(base: str) -> list[dict[str, Any]]:
    log = _request(f"{base}/_control/log")["requests"]
    return [r for r in log if r["path"] in ("/v1/chat/completions", "/v1/messages")]


def before(base: str, check: str) -> None:
    _request(f"{base}/_control/reset", {})
    if BEHAVIOURS[check]:
        _request(f"{base}/_control/script", BEHAVIOURS[check])


def _report(lang: str, name: str, ok: bool, detail: object) -> bool:
    print(f"{'PASS' if ok else 'FAIL'} {lang} {name} (upstream) -- {detail}", flush=True)
    return ok


def _first_request_ok(req: dict[str, Any]) -> tuple[bool, str]:
    body = req.get("body") or {}
    messages = body.get("messages") or []
    tools = body.get("tools") or []
    fn = tools[0].get("function", {}) if tools else {}
    params = fn.get("parameters") or {}
    ok = (
        body.get("model") == "gpt-primary"
        and req["headers"].get("authorization") == "Bearer sk-test"
        and messages[:1] == [{"role": "system", "content": "You are a weather bot."}]
        and fn.get("name") == "get_weather"
        and params.get("properties", {}).get("city", {}).get("type") == "string"
        and params.get("required") == ["city"]
    )
    detail = {"model": body.get("model"), "messages": messages, "tools": tools}
    return ok, json.dumps(detail)[:400]


def _escape_hatch_ok(req: dict[str, Any]) -> tuple[bool, str]:
    """The client's extra top-level field and unknown block reached the Anthropic upstream."""
    body = req.get("body") or {}
    content = (body.get("messages") or [{}])[0].get("content") or []
    ok = (
        req["path"] == "/v1/messages"
        and body.get("model") == "claude-upstream"
        and body.get("speed") == "fast"
        and {"type": "tool_reference", "tool_name": "get_weather"} in content
    )
    return ok, json.dumps({"speed": body.get("speed"), "content": content})[:400]


def after(base: str, check: str, lang: str) -> bool:
    if check == "servertools":
        reqs = _generation_requests(base)
        if not reqs:
            return _report(lang, "escape hatch reaches upstream", False, "no request logged")
        ok, detail = _escape_hatch_ok(reqs[0])
        return _report(lang, "escape hatch reaches upstream", ok, detail)
    if check == "unary":
        reqs = _generation_requests(base)
        if not reqs:
            return _report(lang, "request translated", False, "no request logged")
        ok, detail = _first_request_ok(reqs[0])
        return _report(lang, "request translated", ok, detail)
    if check in ("deadline", "cancel"):
        deadline = time.monotonic() + DISCONNECT_WITHIN
        while True:
            reqs = _generation_requests(base)
            last = reqs[-1] if reqs else None
            if last is not None and last["disconnected"]:
                waited = last["disconnected_at"] - last["received_at"]
                return _report(lang, f"{check} cancels upstream", True, f"after {waited:.2f}s")
            if time.monotonic() > deadline:
                outcome = last and last["outcome"]
                return _report(lang, f"{check} cancels upstream", False, f"outcome={outcome}")
            time.sleep(0.05)
    return True


def main(argv: list[str]) -> int:
    if len(argv) >= 3 and argv[1] == "before":
        before(argv[0], argv[2])
        return 0
    if len(argv) >= 4 and argv[1] == "after":
        return 0 if after(argv[0], argv[2], argv[3]) else 1
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
