"""A fake Google Vertex AI (Claude's rawPredict endpoints) with its own OAuth2 token endpoint.

Run it as ``python -m tests.upstream.vertex_server --port 0 --public-key KEY.pem`` from the
repository root. It prints ``READY port=NNNN`` once it listens on 127.0.0.1, serves until
SIGTERM / SIGINT (exit status 0) and exits by itself after ``--max-seconds`` (default 600).
Standard library only, except ``cryptography`` for checking the JWT signature (``--public-key``).

How it checks auth, as Google does
----------------------------------
``POST /token`` is the ``token_uri`` of the service-account JSON the test writes: it takes the
JWT-bearer grant google-auth sends (``grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer``,
``assertion=<RS256 JWT>``), verifies the signature with the public key, the ``aud`` (Google's
token endpoint, which google-auth always names) and the ``cloud-platform`` scope, and answers
``{"access_token": "ya29.fake-N-...", "expires_in": TTL, "token_type": "Bearer"}``. The model
endpoints accept only a token it issued, and only until it expires (TTL seconds of real time):
anything else is a 401 ``UNAUTHENTICATED`` in Google's error shape.

Endpoints (as Vertex serves Claude)
-----------------------------------
``POST /v1/projects/{p}/locations/{r}/publishers/anthropic/models/{model}:rawPredict``
    The Messages body without ``model``, with ``anthropic_version``; the answer is an Anthropic
    message (``tests.upstream.server``'s: ``echo: <last user text>``), its ``model`` the path's.
``POST ...:streamRawPredict``
    The same with ``"stream": true``; the answer is Anthropic's SSE events (chunked encoding).
``POST .../publishers/anthropic/models/count-tokens:rawPredict``
    ``{"input_tokens": N}`` (words of the messages); the body must name its ``model``.
A body with ``model`` (on the model endpoints), without ``anthropic_version``, or with a wrong
``stream`` flag is a 400 ``INVALID_ARGUMENT``.

Control API (JSON)
------------------
``POST /_control/script``  a list of behaviours, used in order, one per model request:
    ``{"status": 429}`` → that status with a Google error body (``RESOURCE_EXHAUSTED``...), or
    ``"body"`` as given; ``"headers"`` added; ``"times": N`` (default 1). ``"text"`` instead of
    ``status`` sets the answer's text.
``POST /_control/tokens``  ``{"expires_in": N}`` for tokens issued from now on (default 3600);
    ``{"revoke": true}`` makes every token issued so far invalid.
``POST /_control/reset``   empty the script and the log; tokens issued stay valid.
``GET  /_control/log``     ``{"requests": [...]}``: ``{"path", "status", "token", "body",
    "anthropic_beta", "issued"}`` per request (``token``: the bearer token it carried;
    ``issued``: the token the token endpoint issued).
"""

from __future__ import annotations

import argparse
import base64
import http.server
import json
import re
import secrets
import signal
import sys
import threading
import time
from typing import Any
from urllib.parse import parse_qs

from tests.upstream.server import Answer, anthropic_message, anthropic_stream_frames

Json = Any
SCOPE = "https://www.googleapis.com/auth/cloud-platform"
AUDIENCE = "https://oauth2.googleapis.com/token"  # what google-auth signs for, whatever token_uri
MODEL_PATH = re.compile(
    r"/v1/projects/(?P<project>[^/]+)/locations/(?P<region>[^/]+)/publishers/anthropic"
    r"/models/(?P<model>[^/:]+):(?P<method>rawPredict|streamRawPredict)"
)
GOOGLE_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def google_error(status: int, message: str) -> dict[str, Any]:
    return {
        "error": {
            "code": status,
            "message": message,
            "status": GOOGLE_STATUS.get(status, "UNKNOWN"),
        }
    }


def _b64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


class State:
    def __init__(self, public_key_pem: bytes | None) -> None:
        self.lock = threading.Lock()
        self.public_key: Any = None
        if public_key_pem is not None:
            from cryptography.hazmat.primitives.serialization import load_pem_public_key

            self.public_key = load_pem_public_key(public_key_pem)
        self.tokens: dict[str, float] = {}  # token -> expiry (time.time())
        self.expires_in = 3600
        self.issued = 0
        self.script: list[dict[str, Any]] = []
        self.log: list[dict[str, Any]] = []
        self.seq = 0

    def check_grant(self, form: dict[str, list[str]]) -> str | None:
        """The problem with a JWT-bearer grant, or None when it is good."""
        if form.get("grant_type") != ["urn:ietf:params:oauth:grant-type:jwt-bearer"]:
            return "unsupported grant_type"
        parts = (form.get("assertion") or [""])[0].split(".")
        if len(parts) != 3:
            return "the assertion is not a JWT"
        try:
            header, claims = json.loads(_b64(parts[0])), json.loads(_b64(parts[1]))
        except ValueError:
            return "the assertion is not a JWT"
        if header.get("alg") != "RS256":
            return "alg must be RS256"
        if self.public_key is not None:
            from cryptography.exceptions import InvalidSignature
            from cryptography.hazmat.primitives import hashes
            from cryptography.hazmat.primitives.asymmetric import padding

            try:
                signed = f"{parts[0]}.{parts[1]}".encode()
                self.public_key.verify(_b64(parts[2]), signed, padding.PKCS1v15(), hashes.SHA256())
            except (InvalidSignature, ValueError):
                return "Invalid JWT Signature."
        if claims.get("aud") != AUDIENCE:
            return f"aud must be {AUDIENCE}"
        if SCOPE not in str(claims.get("scope", "")).split():
            return "the cloud-platform scope is missing"
        if float(claims.get("exp", 0)) < time.time():
            return "the assertion has expired"
        return None

    def issue(self) -> dict[str, Any]:
        with self.lock:
            self.issued += 1
            token = f"ya29.fake-{self.issued}-{secrets.token_urlsafe(12)}"
            self.tokens[token] = time.time() + self.expires_in
            return {"access_token": token, "expires_in": self.expires_in, "token_type": "Bearer"}

    def valid(self, token: str) -> bool:
        with self.lock:
            expiry = self.tokens.get(token)
        return expiry is not None and time.time() < expiry

    def take(self) -> dict[str, Any] | None:
        with self.lock:
            if not self.script:
                return None
            behaviour = self.script[0]
            behaviour["_left"] = behaviour.get("_left", behaviour.get("times", 1)) - 1
            if behaviour["_left"] <= 0:
                self.script.pop(0)
            return behaviour


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Server

    def log_message(self, format: str, *args: Any) -> None:  # one line per request, on stderr
        sys.stderr.write(f"{self.command} {self.path} {args[1] if len(args) > 1 else ''}\n")

    def _send(self, status: int, value: Json, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(value).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        for key, val in (headers or {}).items():
            self.send_header(key, val)
        self.end_headers()
        self.wfile.write(data)

    def _record(self, **entry: Any) -> dict[str, Any]:
        state = self.server.state
        with state.lock:
            state.seq += 1
            entry = {"seq": state.seq, "path": self.path, **entry}
            state.log.append(entry)
        return entry

    def do_GET(self) -> None:
        state = self.server.state
        if self.path.startswith("/_control/log"):
            with state.lock:
                self._send(200, {"requests": list(state.log)})
        else:
            self._send(404, google_error(404, "not found"))

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length)
        if self.path == "/token":
            self._token(raw)
        elif self.path.startswith("/_control/"):
            self._control(raw)
        else:
            self._model(raw)

    def _token(self, raw: bytes) -> None:
        state = self.server.state
        problem = state.check_grant(parse_qs(raw.decode()))
        if problem is not None:
            self._record(status=400, problem=problem)
            self._send(400, {"error": "invalid_grant", "error_description": problem})
            return
        answer = state.issue()
        self._record(status=200, issued=answer["access_token"])
        self._send(200, answer)

    def _control(self, raw: bytes) -> None:
        state = self.server.state
        value = json.loads(raw or b"null")
        with state.lock:
            if self.path == "/_control/script":
                state.script.extend(value)
            elif self.path == "/_control/tokens":
                if "expires_in" in value:
                    state.expires_in = int(value["expires_in"])
                if value.get("revoke"):
                    state.tokens.clear()
            elif self.path == "/_control/reset":
                state.script.clear()
                state.log.clear()
                state.seq = 0
            else:
                self._send(404, {"error": "unknown control path"})
                return
        self._send(200, {"ok": True})

    def _model(self, raw: bytes) -> None:
        state = self.server.state
        auth = self.headers.get("authorization", "")
        token = auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else ""
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        entry = self._record(
            token=token, body=body, anthropic_beta=self.headers.get("anthropic-beta"), status=None
        )
        if not state.valid(token):
            entry["status"] = 401
            message = (
                "Request had invalid authentication credentials. Expected OAuth 2 access token."
            )
            self._send(401, google_error(401, message))
            return
        match = MODEL_PATH.fullmatch(self.path)
        problem = self._problem(match, body)
        if problem is not None:
            entry["status"] = 400
            self._send(400, google_error(400, problem))
            return
        assert match is not None and isinstance(body, dict)
        behaviour = state.take() or {}
        entry["status"] = status = int(behaviour.get("status", 200))
        headers = behaviour.get("headers") or {}
        if status >= 400:
            self._send(status, behaviour.get("body", google_error(status, "scripted")), headers)
        elif match["model"] == "count-tokens":
            self._send(200, {"input_tokens": Answer(entry["seq"], body, {}).input_tokens}, headers)
        else:
            answer = Answer(entry["seq"], {**body, "model": match["model"]}, behaviour)
            if match["method"] == "rawPredict":
                self._send(200, anthropic_message(answer), headers)
            else:
                self._stream(anthropic_stream_frames(answer, behaviour), headers)

    @staticmethod
    def _problem(match: re.Match[str] | None, body: Json) -> str | None:
        if match is None:
            return "unknown method or resource"
        if not isinstance(body, dict):
            return "the body must be a JSON object"
        if "anthropic_version" not in body:
            return "anthropic_version: Field required"
        if match["model"] == "count-tokens":
            return None if match["method"] == "rawPredict" and "model" in body else "model required"
        if "model" in body:
            return "model: Extra inputs are not permitted"
        if (body.get("stream") is True) != (match["method"] == "streamRawPredict"):
            return "stream must be true for streamRawPredict only"
        return None

    def _stream(self, frames: list[bytes], headers: dict[str, str]) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("transfer-encoding", "chunked")
        for key, val in headers.items():
            self.send_header(key, val)
        self.end_headers()
        for frame in frames:
            self.wfile.write(f"{len(frame):x}\r\n".encode() + frame + b"\r\n")
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int, state: State) -> None:
        super().__init__(("127.0.0.1", port), Handler)
        self.state = state


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--max-seconds", type=float, default=600.0)
    parser.add_argument("--public-key", help="PEM file: verify JWT grants with it")
    args = parser.parse_args(argv)
    key = None
    if args.public_key:
        with open(args.public_key, "rb") as file:
            key = file.read()
    server = Server(args.port, State(key))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    print(f"READY port={server.server_port}", flush=True)
    stop.wait(args.max_seconds)
    server.shutdown()
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
