"""A scripted, fault-injecting fake LLM upstream: one real HTTP/1.1 server process on 127.0.0.1.

Run it as ``python -m tests.upstream.server --port 0`` (or ``python tests/upstream/server.py``).
It prints one line ``READY port=NNNN`` on stdout once it listens (and one line per upstream request
on stderr, unless ``--quiet``), serves until SIGTERM / SIGINT (exit status 0), and exits by itself
after ``--max-seconds`` (default 600) so a forgotten process never leaks.
Only the standard library is used, so the file also runs outside the project's virtualenv.

How it works
------------
The server is written on raw asyncio streams, with no HTTP framework, so that it controls every
byte: it can reset a connection (``SO_LINGER`` 0, then close → TCP RST), close it in the middle of
a chunked body, or stall forever. A connection is served keep-alive; each request's head and body
(``Content-Length`` or chunked) are read in full before answering. While an answer is being
produced, a watcher reads the socket: end-of-file there means the client went away, and the answer
is cancelled and the request is logged as ``disconnected`` with the time it happened. That is how
``hang``, ``stall_after``, ``delay`` and slow streams observe a client's timeout or cancellation.

Upstream API (no script: valid, deterministic answers)
------------------------------------------------------
``POST /v1/chat/completions``
    OpenAI Chat Completions. The answer's text is ``"echo: <last user text>"``. With
    ``"stream": true`` it is SSE: a role-only first chunk
    (``{"role": "assistant", "content": ""}``), one content chunk per word, a chunk with
    ``finish_reason`` and an empty delta, a usage chunk with ``"choices": []`` (after the finish
    chunk, as OpenAI sends it), then ``data: [DONE]``.
``POST /v1/messages``
    Anthropic Messages, JSON or SSE (``event:`` lines; message_start, content_block_start, ping,
    content_block_delta..., content_block_stop, message_delta, message_stop).
``POST /v1/messages/count_tokens``
    ``{"input_tokens": N}``.
``GET /v1/models``
    OpenAI's list format, or Anthropic's when the request has an ``anthropic-version`` header.

Token counts are words: ``prompt_tokens`` / ``input_tokens`` is the number of whitespace-separated
words in the request's messages (and system prompt), at least 1; completion tokens are the words of
the answer's text plus one per tool call. Ids are ``chatcmpl-fake-<seq>`` / ``msg_fake_<seq>``,
where ``seq`` is the request's number in the log. The response ``model`` is the request's model.

Control API (JSON, same port; control requests are not logged)
--------------------------------------------------------------
``POST /_control/script``  body: a list of behaviours, or ``{"behaviours": [...]}``. They are
    appended to the queue; answers ``{"queued": <queue length>}``; 400 on an unknown key or type.
``GET  /_control/script``  ``{"pending": [...]}``: behaviours not consumed yet.
``POST /_control/reset``   empty the queue and the log (request numbers restart at 1).
``GET  /_control/log``     ``{"requests": [...]}``, oldest first; ``?since=N`` gives those with
    ``seq > N``. Each entry::

        {"seq": 1, "method": "POST", "path": "/v1/chat/completions", "query": "",
         "headers": {"lower-case-name": "value", ...},  # repeated headers joined with ", "
         "body": <parsed JSON, or null>, "raw_body": <text, only when body is not JSON>,
         "stream": <the body's "stream" flag>, "behaviour": <the behaviour applied, or null>,
         "status": <status sent, or null>, "events_sent": <SSE events written>,
         "outcome": "pending" | "completed" | "disconnected" | "reset" | "cut" | "dropped",
         "disconnected": <the client went away before the answer was complete>,
         "received_at": <time.time()>, "disconnected_at": <time.time() or null>,
         "finished_at": <time.time() or null>}

    ``reset``, ``cut`` and ``dropped`` are the server's own doing (``disconnected`` stays
    false); ``hang`` and ``stall_after`` end as ``disconnected`` once the client gives up.
``GET  /_control/health``  ``{"ok": true}``.

Behaviours
----------
One JSON object each; the keys compose. Each matching request consumes the first matching
behaviour in the queue; with the queue empty (or nothing matching) the default answer is given.

Scope and count:
    ``path``: the request path it applies to (exact, e.g. ``"/v1/messages/count_tokens"``), or
    ``"*"`` for any path. Without it a behaviour matches only the two generation endpoints
    (``POST /v1/chat/completions`` and ``POST /v1/messages``).
    ``times``: how many matching requests it serves before it is used up (default 1).
Before the answer:
    ``delay``: seconds to wait before anything (headers included) is sent.
    ``reset``: true → close the socket with a TCP RST instead of answering. The fault belongs
    to the request, as when a request crashes its server: the same request sent again (same
    ``x-request-id``, ``authorization`` and body: a client's retry on a new connection, not a
    fallback to another target) is reset again, without taking another behaviour from the queue.
    ``hang``: true → never answer; wait until the client goes away (logged ``disconnected``).
    ``drop``: true → close the connection (FIN) without a byte of answer (logged ``dropped``):
    what a client sees when it sends on a keep-alive connection the server has just closed.
After the answer:
    ``close``: true → close the connection once the answer is sent, without saying so (no
    ``connection: close`` header), as servers that drop keep-alive connections after an error
    do; the client finds out when it reuses the connection.
Literal answers:
    ``status``: the HTTP status. With ``status >= 400`` or with ``body``, the answer is literal:
    ``body`` (JSON, or a string sent as ``text/plain``) or, when absent, an error body in the path's
    format (OpenAI ``{"error": {...}}``, Anthropic ``{"type": "error", "error": {...}}``).
    Below 400 without ``body``, the generated answer is sent with that status.
    ``headers``: extra response headers, on any answer (e.g. ``{"retry-after": "1"}``).
Generated content:
    ``text``: the answer text. ``chunks``: its streamed pieces (``text`` defaults to their join).
    ``tool_calls``: ``[{"id": ..., "name": ..., "arguments": <JSON string or object>}]`` (``id``
    optional) → a tool-call answer (``finish_reason`` ``tool_calls`` / stop_reason ``tool_use``;
    text only when ``text`` / ``chunks`` is given). Streamed, each call's ``arguments`` arrive as
    three fragments over several chunks, calls one after another with indices 0, 1, ...
    ``finish_reason``: e.g. ``"length"``. On ``/v1/messages`` OpenAI values are mapped
    (stop→end_turn, length→max_tokens, tool_calls→tool_use, content_filter→refusal); any other value
    is sent as the ``stop_reason`` as is.
    ``usage``: keys merged over the generated usage, in the path's own format (OpenAI
    ``prompt_tokens`` / ``completion_tokens`` / ``total_tokens``, ``total_tokens`` recomputed unless
    given; Anthropic ``input_tokens`` / ``output_tokens`` / ``cache_*``).
    ``model``: the response's model name. ``id``: the response's id.
Streams (SSE) — an event is one ``data:`` frame (with its ``event:`` line on /v1/messages); the
OpenAI ``[DONE]`` line is not counted as an event:
    ``chunk_delay``: seconds between events.
    ``stream_cut_after``: N → send N events, then close the connection (FIN) without the
    chunked-encoding terminator or ``[DONE]``: the body is incomplete.
    ``stall_after``: N → send N events, then send nothing more until the client goes away.
    ``role_only_then_stall``: true → same as ``stall_after: 1`` (the role chunk / message_start).
    ``inband_error``: an error object → after ``inband_error_after`` events (default 2), send
    ``data: {"error": <object>}`` (OpenAI) or ``event: error`` with
    ``{"type": "error", "error": <object>}`` (Anthropic) and end the stream (OpenAI: then
    ``[DONE]`` unless ``no_done``, as vLLM does). ``{}`` gets a default error object.
    ``malformed``: true → a JSON answer's body is truncated invalid JSON; a stream gets a garbage
    frame ``data: {not json`` inserted after ``malformed_after`` events (default 1).
    ``no_done``: true → OpenAI stream ends after the last chunk without ``[DONE]``;
    Anthropic stream ends without ``message_stop``. The HTTP body itself ends properly.
    ``no_finish``: true → no chunk carries a ``finish_reason`` (JSON: ``null``); Anthropic: no
    ``message_delta`` event (a JSON answer's ``stop_reason`` is ``null``).
    ``usage_chunk``: false → no OpenAI usage chunk (default: always sent).
    ``events``: a literal stream: each object is sent as one event as it is (Anthropic: with
    ``event: <its type>``; OpenAI: a ``data:`` chunk, then ``[DONE]`` unless ``no_done``), for
    answers in shapes the generator does not make (new block, delta and event types...). The
    stream options above (cuts, stalls, delays, in-band errors) apply to it too.
    For a JSON (non-stream) answer, ``stream_cut_after`` / ``stall_after`` (any N) send the head
    and the first half of the body, then cut / stall.

Example: ``[{"status": 429, "headers": {"retry-after": "0"}}, {"stream_cut_after": 3}]`` — the first
generation request gets a 429, the second a stream cut after three events, later ones the default.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http
import json
import re
import signal
import socket
import ssl
import struct
import sys
import time
from typing import Any
from urllib.parse import parse_qs

Json = Any  # a decoded JSON value
Behaviour = dict[str, Any]

MAX_HEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = 64 * 1024 * 1024
GENERATION_PATHS = frozenset({"/v1/chat/completions", "/v1/messages"})

# key → accepted JSON types (bool is never accepted where an int or a float is wanted).
_SCHEMA: dict[str, tuple[type, ...]] = {
    "path": (str,),
    "times": (int,),
    "delay": (int, float),
    "reset": (bool,),
    "hang": (bool,),
    "drop": (bool,),
    "close": (bool,),
    "status": (int,),
    "headers": (dict,),
    "body": (dict, list, str, int, float, bool, type(None)),
    "text": (str,),
    "chunks": (list,),
    "tool_calls": (list,),
    "finish_reason": (str,),
    "usage": (dict,),
    "model": (str,),
    "id": (str,),
    "chunk_delay": (int, float),
    "stream_cut_after": (int,),
    "stall_after": (int,),
    "role_only_then_stall": (bool,),
    "inband_error": (dict,),
    "inband_error_after": (int,),
    "malformed": (bool,),
    "malformed_after": (int,),
    "no_done": (bool,),
    "no_finish": (bool,),
    "usage_chunk": (bool,),
    "events": (list,),
}

_ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}
_OPENAI_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "invalid_request_error",
    404: "invalid_request_error",
    429: "rate_limit_exceeded",
}
_STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "content_filter": "refusal",
}


def validate_behaviour(raw: Json) -> Behaviour:
    """Check one behaviour against the schema; raise ``ValueError`` naming the bad key."""
    if not isinstance(raw, dict):
        raise ValueError(f"a behaviour must be a JSON object, got {raw!r}")
    for key, value in raw.items():
        types = _SCHEMA.get(key)
        if types is None:
            raise ValueError(f"unknown behaviour key {key!r} (known: {', '.join(sorted(_SCHEMA))})")
        bad_bool = isinstance(value, bool) and bool not in types
        if bad_bool or not isinstance(value, types):
            names = "/".join(t.__name__ for t in types)
            raise ValueError(f"behaviour key {key!r} wants {names}, got {value!r}")
    for call in raw.get("tool_calls", []):
        if not isinstance(call, dict) or not isinstance(call.get("name"), str):
            raise ValueError(f"each tool call needs a string 'name', got {call!r}")
    if "chunks" in raw and not all(isinstance(c, str) for c in raw["chunks"]):
        raise ValueError("'chunks' must be a list of strings")
    if raw.get("times", 1) < 1:
        raise ValueError("'times' must be at least 1")
    return dict(raw)


# --------------------------------------------------------------------------- HTTP framing


class ClientGone(Exception):
    """The client closed or reset the connection."""


class Request:
    """One parsed HTTP request."""

    def __init__(self, method: str, target: str, headers: dict[str, str], raw_body: bytes) -> None:
        self.method = method
        self.path, _, self.query = target.partition("?")
        self.headers = headers
        self.raw_body = raw_body
        self.body: Json = None
        self.body_is_json = False
        if raw_body:
            try:
                self.body = json.loads(raw_body)
                self.body_is_json = True
            except ValueError:
                pass


class Connection:
    """Byte-level reading and writing for one client connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.buf = bytearray()
        self.eof = False

    async def _fill(self) -> bool:
        if self.eof:
            return False
        try:
            data = await self.reader.read(65536)
        except (ConnectionError, OSError):
            data = b""
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    async def read_until(self, sep: bytes, limit: int) -> bytes | None:
        """Bytes before ``sep`` (consumed with it); None at a clean EOF before any byte."""
        while True:
            i = self.buf.find(sep)
            if i >= 0:
                out = bytes(self.buf[:i])
                del self.buf[: i + len(sep)]
                return out
            if len(self.buf) > limit:
                raise ValueError("header section too large")
            if not await self._fill():
                if self.buf:
                    raise ClientGone("connection closed mid-request")
                return None

    async def read_exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not await self._fill():
                raise ClientGone("connection closed mid-body")
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    async def read_request(self) -> Request | None:
        head = await self.read_until(b"\r\n\r\n", MAX_HEAD_BYTES)
        if head is None:
            return None
        lines = head.decode("latin-1").split("\r\n")
        method, target, _version = lines[0].split(" ", 2)
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            key = name.strip().lower()
            value = value.strip()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        if "chunked" in headers.get("transfer-encoding", "").lower():
            body = bytearray()
            while True:
                size_line = await self.read_until(b"\r\n", 1024)
                if size_line is None:
                    raise ClientGone("connection closed mid-body")
                size = int(size_line.split(b";")[0], 16)
                if size == 0:
                    while await self.read_until(b"\r\n", MAX_HEAD_BYTES):  # trailers
                        pass
                    break
                body += await self.read_exact(size)
                await self.read_exact(2)
                if len(body) > MAX_BODY_BYTES:
                    raise ValueError("body too large")
            raw = bytes(body)
        else:
            length = int(headers.get("content-length", "0") or "0")
            if length > MAX_BODY_BYTES:
                raise ValueError("body too large")
            raw = await self.read_exact(length)
        return Request(method, target, headers, raw)

    async def wait_eof(self) -> None:
        """Return once the client has closed its side (bytes it sends meanwhile are kept)."""
        while await self._fill():
            pass

    async def write(self, data: bytes) -> None:
        if self.writer.is_closing():
            raise ClientGone("connection closed")
        try:
            self.writer.write(data)
            await self.writer.drain()
        except (ConnectionError, OSError) as exc:
            raise ClientGone(str(exc)) from exc

    async def send_head(self, status: int, headers: dict[str, str], body: bytes = b"") -> None:
        """The status line and headers (and, in the same write, ``body`` when given)."""
        try:
            phrase = http.HTTPStatus(status).phrase
        except ValueError:
            phrase = {529: "Site Overloaded"}.get(status, "Unknown")
        lines = [f"HTTP/1.1 {status} {phrase}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        await self.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)

    async def send_chunk(self, data: bytes) -> None:
        await self.write(b"%x\r\n%s\r\n" % (len(data), data))

    def reset(self) -> None:
        """Close with a TCP RST (SO_LINGER on, timeout 0) and drop any unsent bytes."""
        sock = self.writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()

    def close(self) -> None:
        """Close with a FIN once the bytes already written are flushed."""
        self.writer.close()


def _merge_headers(base: dict[str, str], extra: dict[str, Any] | None) -> dict[str, str]:
    out = dict(base)
    for key, value in (extra or {}).items():
        for existing in [k for k in out if k.lower() == key.lower()]:
            del out[existing]
        out[key] = str(value)
    return out


def _completed(entry: dict[str, Any], status: int) -> None:
    """Mark ``entry`` complete just before its last bytes are written, so that a client that has
    read the whole answer always finds it complete in the log (a failed write turns it into
    ``disconnected`` afterwards)."""
    entry["status"] = status
    entry["outcome"] = "completed"
    entry["finished_at"] = time.time()


def _dumps(value: Json) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


# --------------------------------------------------------------------------- content


def _words(text: str) -> int:
    return len(text.split())


def _texts(value: Json) -> list[str]:
    """Every text in a message ``content`` (a string, or a list of parts/blocks)."""
    if isinstance(value, str):
        return [value]
    out: list[str] = []
    if isinstance(value, list):
        for part in value:
            if isinstance(part, dict):
                if isinstance(part.get("text"), str):
                    out.append(part["text"])
                elif part.get("type") == "tool_result":
                    out += _texts(part.get("content"))
    return out


def count_input_words(body: Json) -> int:
    if not isinstance(body, dict):
        return 1
    total = sum(_words(t) for t in _texts(body.get("system")))
    for message in body.get("messages") or []:
        if isinstance(message, dict):
            total += sum(_words(t) for t in _texts(message.get("content")))
    return max(total, 1)


def echo_text(body: Json) -> str:
    """``"echo: <text of the last user message>"``."""
    last = ""
    if isinstance(body, dict):
        for message in body.get("messages") or []:
            if isinstance(message, dict) and message.get("role") == "user":
                last = " ".join(_texts(message.get("content")))
    return f"echo: {last}"


def split_text(text: str) -> list[str]:
    """Stream pieces, one per word with its spaces: ``"echo: a b"`` → ``echo: ``, ``a ``, ``b``."""
    return re.findall(r"\s*\S+\s*", text) or [text]


def split_fragments(s: str, parts: int = 3) -> list[str]:
    """``s`` cut in ``parts`` non-empty pieces (fewer when ``s`` is shorter)."""
    if len(s) < parts:
        return [s] if s else [""]
    step = -(-len(s) // parts)
    return [s[i : i + step] for i in range(0, len(s), step)]


class Answer:
    """The content of one generated answer, independent of the wire format."""

    def __init__(self, seq: int, body: Json, b: Behaviour) -> None:
        body = body if isinstance(body, dict) else {}
        self.seq = seq
        self.model: str = b.get("model") or str(body.get("model") or "fake-model")
        self.tool_calls: list[dict[str, Any]] = []
        for i, call in enumerate(b.get("tool_calls", [])):
            args = call.get("arguments", {})
            self.tool_calls.append(
                {
                    "id": call.get("id"),
                    "index": i,
                    "name": call["name"],
                    "arguments": args if isinstance(args, str) else json.dumps(args),
                }
            )
        if "chunks" in b:
            self.chunks: list[str] = list(b["chunks"])
            self.text: str | None = b.get("text", "".join(self.chunks))
        elif "text" in b:
            self.text = b["text"]
            self.chunks = split_text(b["text"])
        elif self.tool_calls:
            self.text, self.chunks = None, []
        else:
            self.text = echo_text(body)
            self.chunks = split_text(self.text)
        default_finish = "tool_calls" if self.tool_calls else "stop"
        self.finish: str | None = (
            None if b.get("no_finish") else b.get("finish_reason", default_finish)
        )
        self.input_tokens = count_input_words(body)
        self.output_tokens = _words(self.text or "") + len(self.tool_calls)
        self.usage_override: dict[str, Any] = b.get("usage", {})
        self.id_override: str | None = b.get("id")


# --------------------------------------------------------------------------- OpenAI format


def openai_usage(a: Answer) -> dict[str, Any]:
    usage: dict[str, Any] = {
        "prompt_tokens": a.input_tokens,
        "completion_tokens": a.output_tokens,
    }
    usage.update(a.usage_override)
    if "total_tokens" not in a.usage_override:
        usage["total_tokens"] = int(usage.get("prompt_tokens") or 0) + int(
            usage.get("completion_tokens") or 0
        )
    return usage


def openai_completion(a: Answer) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": a.text, "refusal": None}
    if a.tool_calls:
        message["tool_calls"] = [
            {
                "id": c["id"] or f"call_fake_{a.seq}_{c['index']}",
                "type": "function",
                "function": {"name": c["name"], "arguments": c["arguments"]},
            }
            for c in a.tool_calls
        ]
    return {
        "id": a.id_override or f"chatcmpl-fake-{a.seq}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": a.model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": a.finish}],
        "usage": openai_usage(a),
        "system_fingerprint": None,
    }


def openai_stream_frames(a: Answer, b: Behaviour, request_body: Json) -> list[bytes]:
    chunk_id = a.id_override or f"chatcmpl-fake-{a.seq}"
    created = int(time.time())
    include_usage = isinstance(request_body, dict) and bool(
        (request_body.get("stream_options") or {}).get("include_usage")
    )

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        obj: dict[str, Any] = {
            "id": chunk_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": a.model,
            "system_fingerprint": None,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if include_usage:
            obj["usage"] = None
        return b"data: " + _dumps(obj) + b"\n\n"

    frames = [chunk({"role": "assistant", "content": ""})]
    frames += [chunk({"content": piece}) for piece in a.chunks]
    for c in a.tool_calls:
        first = {
            "index": c["index"],
            "id": c["id"] or f"call_fake_{a.seq}_{c['index']}",
            "type": "function",
            "function": {"name": c["name"], "arguments": ""},
        }
        frames.append(chunk({"tool_calls": [first]}))
        for fragment in split_fragments(c["arguments"]):
            delta = {"index": c["index"], "function": {"arguments": fragment}}
            frames.append(chunk({"tool_calls": [delta]}))
    if a.finish is not None:
        frames.append(chunk({}, a.finish))
    if b.get("usage_chunk", True):
        obj = {
            "id": chunk_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": a.model,
            "system_fingerprint": None,
            "choices": [],
            "usage": openai_usage(a),
        }
        frames.append(b"data: " + _dumps(obj) + b"\n\n")
    return frames


def openai_error(status: int, message: str) -> dict[str, Any]:
    kind = _OPENAI_ERROR_TYPES.get(status, "server_error")
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}


# --------------------------------------------------------------------------- Anthropic format


def anthropic_stop_reason(a: Answer) -> str | None:
    return None if a.finish is None else _STOP_REASONS.get(a.finish, a.finish)


def anthropic_usage(a: Answer) -> dict[str, Any]:
    usage: dict[str, Any] = {"input_tokens": a.input_tokens, "output_tokens": a.output_tokens}
    usage.update(a.usage_override)
    return usage


def _tool_input(arguments: str) -> Json:
    try:
        return json.loads(arguments)
    except ValueError:
        return arguments


def _tool_id(a: Answer, c: dict[str, Any]) -> str:
    return str(c["id"] or f"toolu_fake_{a.seq}_{c['index']}")


def anthropic_message(a: Answer) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    if a.text is not None:
        content.append({"type": "text", "text": a.text})
    for c in a.tool_calls:
        content.append(
            {
                "type": "tool_use",
                "id": _tool_id(a, c),
                "name": c["name"],
                "input": _tool_input(c["arguments"]),
            }
        )
    return {
        "id": a.id_override or f"msg_fake_{a.seq}",
        "type": "message",
        "role": "assistant",
        "model": a.model,
        "content": content,
        "stop_reason": anthropic_stop_reason(a),
        "stop_sequence": None,
        "usage": anthropic_usage(a),
    }


def anthropic_frame(event: str, data: dict[str, Any]) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + _dumps(data) + b"\n\n"


def anthropic_stream_frames(a: Answer, b: Behaviour) -> list[bytes]:
    usage = anthropic_usage(a)
    start_usage = dict(usage, output_tokens=1)
    message: dict[str, Any] = {
        "id": a.id_override or f"msg_fake_{a.seq}",
        "type": "message",
        "role": "assistant",
        "model": a.model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": start_usage,
    }
    frames = [anthropic_frame("message_start", {"type": "message_start", "message": message})]
    index = 0
    pinged = False

    def block_start(block: dict[str, Any]) -> None:
        nonlocal pinged
        data = {"type": "content_block_start", "index": index, "content_block": block}
        frames.append(anthropic_frame("content_block_start", data))
        if not pinged:
            frames.append(anthropic_frame("ping", {"type": "ping"}))
            pinged = True

    def delta(d: dict[str, Any]) -> None:
        data = {"type": "content_block_delta", "index": index, "delta": d}
        frames.append(anthropic_frame("content_block_delta", data))

    def block_stop() -> None:
        data = {"type": "content_block_stop", "index": index}
        frames.append(anthropic_frame("content_block_stop", data))

    if a.text is not None:
        block_start({"type": "text", "text": ""})
        for piece in a.chunks:
            delta({"type": "text_delta", "text": piece})
        block_stop()
        index += 1
    for c in a.tool_calls:
        block_start({"type": "tool_use", "id": _tool_id(a, c), "name": c["name"], "input": {}})
        for fragment in split_fragments(c["arguments"]):
            delta({"type": "input_json_delta", "partial_json": fragment})
        block_stop()
        index += 1
    if not b.get("no_finish"):
        data = {
            "type": "message_delta",
            "delta": {"stop_reason": anthropic_stop_reason(a), "stop_sequence": None},
            "usage": {"output_tokens": usage["output_tokens"]},
        }
        frames.append(anthropic_frame("message_delta", data))
    if not b.get("no_done"):
        frames.append(anthropic_frame("message_stop", {"type": "message_stop"}))
    return frames


def anthropic_error(status: int, message: str) -> dict[str, Any]:
    kind = _ANTHROPIC_ERROR_TYPES.get(status, "api_error")
    return {"type": "error", "error": {"type": kind, "message": message}}


# --------------------------------------------------------------------------- the server


class Upstream:
    """Server state: the behaviour queue, the request log, the open connections."""

    def __init__(self, quiet: bool = False) -> None:
        self.queue: list[Behaviour] = []  # each with a private "_left" count
        self.resets: dict[tuple[str, str, bytes], Behaviour] = {}  # a request -> its reset
        self.entries: list[dict[str, Any]] = []
        self.seq = 0
        self.quiet = quiet
        self.tasks: set[asyncio.Task[None]] = set()

    # -- connection loop

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        conn = Connection(reader, writer)
        try:
            while True:
                try:
                    request = await conn.read_request()
                except ValueError as exc:
                    await self._send_json(conn, 400, {"error": {"message": str(exc)}}, close=True)
                    return
                if request is None:
                    return
                if request.path.startswith("/_control/"):
                    await self._control(conn, request)
                    keep = True
                else:
                    keep = await self._serve(conn, request)
                if not keep or request.headers.get("connection", "").lower() == "close":
                    return
        except ClientGone:
            return
        finally:
            self.tasks.discard(task)
            if not writer.is_closing():
                writer.close()

    async def _send_json(
        self,
        conn: Connection,
        status: int,
        value: Json,
        headers: dict[str, Any] | None = None,
        close: bool = False,
        entry: dict[str, Any] | None = None,
    ) -> None:
        body = _dumps(value)
        base = {"content-type": "application/json", "content-length": str(len(body))}
        if close:
            base["connection"] = "close"
        if entry is not None:
            _completed(entry, status)
        await conn.send_head(status, _merge_headers(base, headers), body)

    # -- control API

    async def _control(self, conn: Connection, request: Request) -> None:
        route = (request.method, request.path)
        if route == ("POST", "/_control/script"):
            body = request.body
            items = body.get("behaviours") if isinstance(body, dict) else body
            if not isinstance(items, list):
                await self._send_json(conn, 400, {"error": "expected a list of behaviours"})
                return
            try:
                checked = [validate_behaviour(item) for item in items]
            except ValueError as exc:
                await self._send_json(conn, 400, {"error": str(exc)})
                return
            for b in checked:
                b["_left"] = b.get("times", 1)
            self.queue += checked
            await self._send_json(conn, 200, {"queued": len(self.queue)})
        elif route == ("GET", "/_control/script"):
            pending = [{k: v for k, v in b.items() if k != "_left"} for b in self.queue]
            await self._send_json(conn, 200, {"pending": pending})
        elif route == ("POST", "/_control/reset"):
            self.queue.clear()
            self.resets.clear()
            self.entries.clear()
            self.seq = 0
            await self._send_json(conn, 200, {"ok": True})
        elif route == ("GET", "/_control/log"):
            since = int((parse_qs(request.query).get("since") or ["0"])[0])
            entries = [e for e in self.entries if e["seq"] > since]
            await self._send_json(conn, 200, {"requests": entries})
        elif route == ("GET", "/_control/health"):
            await self._send_json(conn, 200, {"ok": True})
        else:
            await self._send_json(conn, 404, {"error": f"no control route {route}"})

    def _take(self, request: Request) -> Behaviour | None:
        request_id = request.headers.get("x-request-id")
        same = (request_id or "", request.headers.get("authorization", ""), request.raw_body)
        if request_id is not None and same in self.resets:
            return dict(self.resets[same])
        taken = self._take_queued(request)
        if taken is not None and taken.get("reset") and request_id is not None:
            if len(self.resets) > 10_000:
                self.resets.clear()
            self.resets[same] = taken
        return taken

    def _take_queued(self, request: Request) -> Behaviour | None:
        for i, b in enumerate(self.queue):
            scope = b.get("path")
            if (
                scope == "*"
                or scope == request.path
                or (scope is None and request.method == "POST" and request.path in GENERATION_PATHS)
            ):
                b["_left"] -= 1
                if b["_left"] <= 0:
                    del self.queue[i]
                return {k: v for k, v in b.items() if k != "_left"}
        return None

    # -- upstream API

    async def _serve(self, conn: Connection, request: Request) -> bool:
        """Answer one upstream request; return whether the connection may be reused."""
        self.seq += 1
        behaviour = self._take(request)
        entry: dict[str, Any] = {
            "seq": self.seq,
            "method": request.method,
            "path": request.path,
            "query": request.query,
            "headers": request.headers,
            "body": request.body,
            "stream": bool(isinstance(request.body, dict) and request.body.get("stream")),
            "behaviour": behaviour,
            "status": None,
            "events_sent": 0,
            "outcome": "pending",
            "disconnected": False,
            "received_at": time.time(),
            "disconnected_at": None,
            "finished_at": None,
        }
        if request.raw_body and not request.body_is_json:
            entry["raw_body"] = request.raw_body.decode("utf-8", "replace")
        self.entries.append(entry)

        answer = asyncio.ensure_future(self._answer(conn, request, entry, behaviour or {}))
        watcher = asyncio.ensure_future(conn.wait_eof())
        try:
            await asyncio.wait({answer, watcher}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            watcher.cancel()
            if not answer.done():
                answer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        keep = False
        gone = True
        if answer.done() and not answer.cancelled():
            exc = answer.exception()
            if exc is None:
                keep, gone = answer.result() and not (behaviour or {}).get("close"), False
            elif not isinstance(exc, ClientGone):
                raise exc
        else:  # the watcher saw the client leave first
            answer.cancel()
            with contextlib.suppress(asyncio.CancelledError, ClientGone):
                await answer
        if gone:
            entry["outcome"] = "disconnected"
            entry["disconnected"] = True
            entry["disconnected_at"] = time.time()
        elif entry["outcome"] == "pending":
            entry["outcome"] = "completed"
        if entry["finished_at"] is None or gone:
            entry["finished_at"] = time.time()
        if not self.quiet:
            print(
                f"#{entry['seq']} {request.method} {request.path} status={entry['status']} "
                f"events={entry['events_sent']} outcome={entry['outcome']}",
                file=sys.stderr,
                flush=True,
            )
        return keep and not conn.eof

    async def _answer(
        self, conn: Connection, request: Request, entry: dict[str, Any], b: Behaviour
    ) -> bool:
        if b.get("delay"):
            await asyncio.sleep(b["delay"])
        if b.get("reset"):
            entry["outcome"] = "reset"
            conn.reset()
            return False
        if b.get("hang"):
            await asyncio.Future()  # until the watcher sees the client leave
        if b.get("drop"):
            entry["outcome"] = "dropped"
            conn.close()
            return False
        anthropic = request.path.startswith("/v1/messages")
        status = b.get("status", 200)
        extra = b.get("headers")
        if status >= 400 or "body" in b:
            body: Json = b.get("body")
            if body is None and "body" not in b:
                message = f"fake upstream error (status {status})"
                body = (
                    anthropic_error(status, message) if anthropic else openai_error(status, message)
                )
            entry["status"] = status
            if isinstance(body, str):
                raw = body.encode()
                base = {
                    "content-type": "text/plain; charset=utf-8",
                    "content-length": str(len(raw)),
                }
                _completed(entry, status)
                await conn.send_head(status, _merge_headers(base, extra), raw)
            else:
                await self._send_json(conn, status, body, extra, entry=entry)
            return True

        route = (request.method, request.path)
        if route == ("GET", "/v1/models"):
            entry["status"] = status
            await self._send_json(conn, status, self._models(request), extra, entry=entry)
            return True
        if route == ("POST", "/v1/messages/count_tokens"):
            entry["status"] = status
            value = {"input_tokens": count_input_words(request.body)}
            await self._send_json(conn, status, value, extra, entry=entry)
            return True
        if request.method != "POST" or request.path not in GENERATION_PATHS:
            entry["status"] = 404
            message = f"no route {request.method} {request.path}"
            error = anthropic_error(404, message) if anthropic else openai_error(404, message)
            await self._send_json(conn, 404, error, extra, entry=entry)
            return True
        if not request.body_is_json or not isinstance(request.body, dict):
            entry["status"] = 400
            message = "request body is not a JSON object"
            error = anthropic_error(400, message) if anthropic else openai_error(400, message)
            await self._send_json(conn, 400, error, extra, entry=entry)
            return True

        if entry["stream"] and "events" in b:  # a literal stream, in any shape the API has
            frames = [
                anthropic_frame(str(e.get("type", "")), e)
                if anthropic
                else b"data: " + _dumps(e) + b"\n\n"
                for e in b["events"]
            ]
            done = None if anthropic or b.get("no_done") else b"data: [DONE]\n\n"
            return await self._stream(conn, entry, status, frames, done, anthropic, b)
        answer = Answer(entry["seq"], request.body, b)
        if entry["stream"]:
            if anthropic:
                frames = anthropic_stream_frames(answer, b)
                done = None
            else:
                frames = openai_stream_frames(answer, b, request.body)
                done = None if b.get("no_done") else b"data: [DONE]\n\n"
            return await self._stream(conn, entry, status, frames, done, anthropic, b)
        value = anthropic_message(answer) if anthropic else openai_completion(answer)
        return await self._json_answer(conn, entry, status, value, b)

    def _models(self, request: Request) -> dict[str, Any]:
        names = ["fake-model", "fake-model-large"]
        if "anthropic-version" in request.headers:
            data = [
                {
                    "type": "model",
                    "id": n,
                    "display_name": n,
                    "created_at": "2025-01-01T00:00:00Z",
                }
                for n in names
            ]
            return {"data": data, "has_more": False, "first_id": names[0], "last_id": names[-1]}
        models = [
            {"id": n, "object": "model", "created": 1735689600, "owned_by": "fake"} for n in names
        ]
        return {"object": "list", "data": models}

    async def _json_answer(
        self, conn: Connection, entry: dict[str, Any], status: int, value: Json, b: Behaviour
    ) -> bool:
        body = _dumps(value)
        if b.get("malformed"):
            body = body[: max(len(body) // 2, 1)] + b"<<garbage"
        base = {"content-type": "application/json", "content-length": str(len(body))}
        entry["status"] = status
        await conn.send_head(status, _merge_headers(base, b.get("headers")))
        if "stream_cut_after" in b or "stall_after" in b or b.get("role_only_then_stall"):
            await conn.write(body[: len(body) // 2])
            if "stream_cut_after" in b:
                entry["outcome"] = "cut"
                conn.close()
                return False
            await asyncio.Future()  # stall until the client leaves
        _completed(entry, status)
        await conn.write(body)
        return True

    async def _stream(
        self,
        conn: Connection,
        entry: dict[str, Any],
        status: int,
        frames: list[bytes],
        done: bytes | None,
        anthropic: bool,
        b: Behaviour,
    ) -> bool:
        if b.get("malformed"):
            frames.insert(min(b.get("malformed_after", 1), len(frames)), b"data: {not json\n\n")
        if "inband_error" in b:
            error = b["inband_error"] or (
                {"type": "overloaded_error", "message": "fake in-band error"}
                if anthropic
                else {"message": "fake in-band error", "type": "server_error", "code": None}
            )
            if anthropic:
                frame = anthropic_frame("error", {"type": "error", "error": error})
            else:
                frame = b"data: " + _dumps({"error": error}) + b"\n\n"
            frames = [*frames[: b.get("inband_error_after", 2)], frame]
        cut: int | None = b.get("stream_cut_after")
        stall: int | None = 1 if b.get("role_only_then_stall") else b.get("stall_after")
        delay = float(b.get("chunk_delay", 0))

        base = {
            "content-type": "text/event-stream; charset=utf-8",
            "cache-control": "no-cache",
            "transfer-encoding": "chunked",
        }
        entry["status"] = status
        await conn.send_head(status, _merge_headers(base, b.get("headers")))
        for sent, frame in enumerate(frames):
            if (cut is not None and sent >= cut) or (stall is not None and sent >= stall):
                break
            if delay and sent:
                await asyncio.sleep(delay)
            entry["events_sent"] = sent + 1
            await conn.send_chunk(frame)
        if cut is not None:
            entry["outcome"] = "cut"
            conn.close()
            return False
        if stall is not None:
            await asyncio.Future()  # until the client leaves
        if done is not None and delay:
            await asyncio.sleep(delay)
        _completed(entry, status)
        await conn.write((b"%x\r\n%s\r\n" % (len(done), done) if done else b"") + b"0\r\n\r\n")
        return True


async def serve(
    port: int,
    max_seconds: float,
    quiet: bool,
    tls: tuple[str, str] | None = None,
    upstream: Upstream | None = None,  # a subclass, for wrappers (tests.upstream.azure_server)
) -> None:
    upstream = upstream if upstream is not None else Upstream(quiet=quiet)
    context = None
    if tls is not None:  # HTTPS, for tests of upstream CA / client certificate settings
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(*tls)
    server = await asyncio.start_server(
        upstream.handle, "127.0.0.1", port, backlog=1024, ssl=context
    )
    bound = server.sockets[0].getsockname()[1]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"READY port={bound}", flush=True)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), max_seconds)
    server.close()
    for task in list(upstream.tasks):
        task.cancel()
    await asyncio.gather(*upstream.tasks, return_exceptions=True)
    await server.wait_closed()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free one)")
    parser.add_argument("--max-seconds", type=float, default=600.0, help="exit after this long")
    parser.add_argument("--quiet", action="store_true", help="no per-request line on stderr")
    parser.add_argument("--tls-cert", help="serve HTTPS with this certificate (PEM)")
    parser.add_argument("--tls-key", help="... and this key (PEM)")
    args = parser.parse_args(argv)
    tls = (args.tls_cert, args.tls_key) if args.tls_cert else None
    asyncio.run(serve(args.port, args.max_seconds, args.quiet, tls))
    return 0


if __name__ == "__main__":
    sys.exit(main())
