"""A fake Google Vertex AI (Claude's rawPredict endpoints) with its own OAuth2 token endpoint.

Run it as ``python -m tests.upstream.vertex_server --port 0 --public-key KEY.pem`` from the
repository root. It prints ``READY port=NNNN`` once it listens on 127.0.0.1, serves until
SIGTERM / SIGINT (exit status 0) and exits by itself after ``--max-seconds`` (default 600).
Standard library only, except ``cryptography`` for checking JWT signatures (``--public-key``).

How it works
------------
It is ``tests.upstream.server``'s scripted upstream (the same raw-asyncio server, behaviours,
faults and request log; see that module) with Vertex's front: the token endpoint, the bearer
token check and Vertex's paths and body rules. A model request that passes them is answered as
that server answers ``POST /v1/messages`` (or ``/v1/messages/count_tokens``), with the path's
model, so every behaviour there (``status``, ``reset``, ``hang``, ``stream_cut_after``,
``inband_error``...) works here too; a scripted error status gets a Google error body
(``{"error": {"code", "message", "status": "RESOURCE_EXHAUSTED"...}}``) unless it sets ``body``.

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
    The Messages body without ``model``, with ``anthropic_version``: an Anthropic message.
``POST ...:streamRawPredict``
    The same with ``"stream": true``: Anthropic's SSE events.
``POST .../publishers/anthropic/models/count-tokens:rawPredict``
    ``{"input_tokens": N}``; the body names its ``model``.
``POST /v1/projects/{p}/locations/{r}/endpoints/openapi/chat/completions``
    Vertex's OpenAI-compatible endpoint (Gemini): answered as the scripted upstream answers
    ``/v1/chat/completions``; the body's ``model`` must be ``publisher/model``.
A body with ``model`` (on the model endpoints), without ``anthropic_version``, or with a wrong
``stream`` flag is a 400 ``INVALID_ARGUMENT`` (no behaviour is used up).

Control API: that of ``tests.upstream.server`` (script, reset, log), plus
``POST /_control/tokens``: ``{"expires_in": N}`` for tokens issued from now on (default 3600);
``{"revoke": true}`` makes every token issued so far invalid. Log entries of model requests
add ``token`` (the bearer token sent) and ``anthropic_beta``; the token endpoint's entries are
``{"path": "/token", "status", "issued" | "problem"}``; refused requests are logged with their
status and ``outcome: "refused"``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import copy
import json
import re
import secrets
import signal
import sys
import time
from typing import Any
from urllib.parse import parse_qs

from tests.upstream.server import Behaviour, Connection, Json, Request, Upstream

SCOPE = "https://www.googleapis.com/auth/cloud-platform"
AUDIENCE = "https://oauth2.googleapis.com/token"  # what google-auth signs for, whatever token_uri
JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
MODEL_PATH = re.compile(
    r"/v1/projects/(?P<project>[^/]+)/locations/(?P<region>[^/]+)/publishers/anthropic"
    r"/models/(?P<model>[^/:]+):(?P<method>rawPredict|streamRawPredict)"
)
OPENAPI_PATH = re.compile(
    r"/v1/projects/(?P<project>[^/]+)/locations/(?P<region>[^/]+)/endpoints/openapi"
    r"/chat/completions"
)
GOOGLE_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    408: "DEADLINE_EXCEEDED",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def google_error(status: int, message: str) -> dict[str, Any]:
    name = GOOGLE_STATUS.get(status, "UNKNOWN")
    return {"error": {"code": status, "message": message, "status": name}}


def _b64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _bearer(request: Request) -> str:
    auth = request.headers.get("authorization", "")
    return auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else ""


class VertexUpstream(Upstream):
    """The scripted upstream behind Vertex's token check, paths and body rules."""

    def __init__(self, public_key_pem: bytes | None, quiet: bool = False) -> None:
        super().__init__(quiet=quiet)
        self.public_key: Any = None
        if public_key_pem is not None:
            from cryptography.hazmat.primitives.serialization import load_pem_public_key

            self.public_key = load_pem_public_key(public_key_pem)
        self.tokens: dict[str, float] = {}  # token -> expiry (time.time())
        self.expires_in = 3600
        self.issued = 0

    # -- the token endpoint

    def check_grant(self, form: dict[str, list[str]]) -> str | None:
        """The problem with a JWT-bearer grant, or None when it is good."""
        if form.get("grant_type") != [JWT_GRANT]:
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

    async def _token(self, conn: Connection, request: Request) -> bool:
        entry = self._log(request, status=400)
        problem = self.check_grant(parse_qs(request.raw_body.decode("latin-1")))
        if problem is not None:
            entry["problem"] = problem
            await self._send_json(
                conn, 400, {"error": "invalid_grant", "error_description": problem}
            )
            return True
        self.issued += 1
        token = f"ya29.fake-{self.issued}-{secrets.token_urlsafe(12)}"
        self.tokens[token] = time.time() + self.expires_in
        entry.update(status=200, issued=token)
        answer = {"access_token": token, "expires_in": self.expires_in, "token_type": "Bearer"}
        await self._send_json(conn, 200, answer)
        return True

    # -- Vertex's front

    def _log(self, request: Request, **fields: Any) -> dict[str, Any]:
        self.seq += 1
        entry = {"seq": self.seq, "method": request.method, "path": request.path, **fields}
        self.entries.append(entry)
        return entry

    def _refusal(self, request: Request) -> tuple[int, str] | None:
        """Why Vertex would refuse ``request`` before running the model, if it would."""
        expiry = self.tokens.get(_bearer(request))
        if expiry is None or time.time() >= expiry:
            return 401, "Request had invalid authentication credentials (an OAuth 2 access token)."
        match = MODEL_PATH.fullmatch(request.path)
        body = request.body
        openapi = OPENAPI_PATH.fullmatch(request.path) is not None
        if request.method != "POST" or (match is None and not openapi):
            return 404, f"no such method {request.method} {request.path}"
        if not isinstance(body, dict):
            return 400, "the body must be a JSON object"
        if openapi:  # Chat Completions; models are named publisher/model
            ok = "/" in str(body.get("model", ""))
            return None if ok else (400, "model: expected publisher/model, e.g. google/gemini")
        assert match is not None
        if "anthropic_version" not in body:
            return 400, "anthropic_version: Field required"
        if match["model"] == "count-tokens":
            ok = match["method"] == "rawPredict" and "model" in body
            return None if ok else (400, "count-tokens: rawPredict with a model")
        if "model" in body:
            return 400, "model: Extra inputs are not permitted"
        if (body.get("stream") is True) != (match["method"] == "streamRawPredict"):
            return 400, "stream must be true for streamRawPredict, and only there"
        return None

    @staticmethod
    def _as_inner(request: Request) -> Request:
        """The request as the scripted upstream serves it: Anthropic's own API for Claude's
        endpoints, OpenAI's for the OpenAI-compatible one."""
        inner = copy.copy(request)
        if OPENAPI_PATH.fullmatch(request.path):
            inner.path = "/v1/chat/completions"
            return inner
        match = MODEL_PATH.fullmatch(request.path)
        assert match is not None and isinstance(request.body, dict)
        if match["model"] == "count-tokens":
            inner.path = "/v1/messages/count_tokens"
        else:
            inner.path = "/v1/messages"
            inner.body = {**request.body, "model": match["model"]}
        return inner

    async def _serve(self, conn: Connection, request: Request) -> bool:
        if request.path == "/token" and request.method == "POST":
            return await self._token(conn, request)
        refusal = self._refusal(request)
        if refusal is not None:
            status, message = refusal
            self._log(request, status=status, token=_bearer(request), outcome="refused")
            await self._send_json(conn, status, google_error(status, message))
            return True
        return await super()._serve(conn, request)

    def _take(self, request: Request) -> Behaviour | None:
        behaviour = super()._take(self._as_inner(request))
        if behaviour and behaviour.get("status", 200) >= 400 and "body" not in behaviour:
            error = google_error(behaviour["status"], "scripted")
            # The OpenAI-compatible endpoint wraps Google's error in a list.
            behaviour["body"] = [error] if OPENAPI_PATH.fullmatch(request.path) else error
        return behaviour

    async def _answer(
        self, conn: Connection, request: Request, entry: dict[str, Any], b: Behaviour
    ) -> bool:
        entry["token"] = _bearer(request)
        entry["anthropic_beta"] = request.headers.get("anthropic-beta")
        return await super()._answer(conn, self._as_inner(request), entry, b)

    async def _control(self, conn: Connection, request: Request) -> None:
        if (request.method, request.path) != ("POST", "/_control/tokens"):
            await super()._control(conn, request)
            return
        value: Json = request.body if isinstance(request.body, dict) else {}
        if "expires_in" in value:
            self.expires_in = int(value["expires_in"])
        if value.get("revoke"):
            self.tokens.clear()
        await self._send_json(conn, 200, {"ok": True})


async def serve(port: int, max_seconds: float, public_key: bytes | None) -> None:
    upstream = VertexUpstream(public_key)
    server = await asyncio.start_server(upstream.handle, "127.0.0.1", port, backlog=1024)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"READY port={server.sockets[0].getsockname()[1]}", flush=True)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), max_seconds)
    server.close()
    for task in list(upstream.tasks):
        task.cancel()
    await asyncio.gather(*upstream.tasks, return_exceptions=True)
    await server.wait_closed()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--max-seconds", type=float, default=600.0)
    parser.add_argument("--public-key", help="PEM file: verify JWT grants with it")
    args = parser.parse_args(argv)
    key = None
    if args.public_key:
        with open(args.public_key, "rb") as file:
            key = file.read()
    asyncio.run(serve(args.port, args.max_seconds, key))
    return 0


if __name__ == "__main__":
    sys.exit(main())
