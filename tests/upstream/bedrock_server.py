"""A fake AWS Bedrock runtime (and STS) that checks SigV4 as AWS does: one process on 127.0.0.1.

Run it as ``python -m tests.upstream.bedrock_server --port 0 --access-key AKID --secret-key S``.
It prints ``READY port=NNNN`` once it listens, serves until SIGTERM (exit status 0) and exits by
itself after ``--max-seconds``. Only the standard library and botocore (to recompute signatures
with AWS's own algorithm) are used.

Bedrock (every request must be signed)
--------------------------------------
``POST /model/{modelId}/invoke``                     an Anthropic Messages answer (JSON)
``POST /model/{modelId}/invoke-with-response-stream`` the same answer as Anthropic stream events,
    each in an AWS event-stream ``chunk`` frame (prelude, headers, payload, CRC32s), the payload
    ``{"bytes": base64(event), "p": padding}``, as Bedrock sends them; the last event carries
    ``amazon-bedrock-invocationMetrics``.
``POST /model/{modelId}/count-tokens``               ``{"inputTokens": N}``

The signature is recomputed from the request as received (the raw path, the signed headers, the
body) with the secret of the access key: the one given on the command line, or one this fake's
STS issued (which must come with its session token, and not be expired). Failures answer as AWS
does: 403 with ``x-amzn-ErrorType`` ``InvalidSignatureException`` (``{"message": "The request
signature we calculated does not match..."}``), ``UnrecognizedClientException`` (unknown key),
``ExpiredTokenException``, ``MissingAuthenticationTokenException``. The body is checked like
Bedrock's Claude endpoint: a JSON object with ``anthropic_version``, ``max_tokens`` and
``messages``, and no ``model`` or ``stream`` (a 400 ``ValidationException`` otherwise).
The answer's text is ``"echo: <last user text>"``; token counts are words.

STS (unsigned, as AssumeRoleWithWebIdentity is)
-----------------------------------------------
``POST /`` with ``Action=AssumeRoleWithWebIdentity``: temporary credentials (``ASIA...``) valid
for ``--sts-lifetime`` seconds, in STS's XML. The web identity token must equal the contents of
``--web-identity-token-file`` when that is given.

Container credentials (EKS Pod Identity agent)
----------------------------------------------
``GET /v1/credentials`` with ``Authorization: <the contents of --web-identity-token-file>``:
``{"AccessKeyId", "SecretAccessKey", "Token", "Expiration"}`` valid for ``--sts-lifetime``
seconds, as the agent at ``169.254.170.23`` answers botocore's container provider
(``AWS_CONTAINER_CREDENTIALS_FULL_URI`` + ``AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE``).

Control (JSON, not signed, not logged)
--------------------------------------
``POST /_control/script``  a list of behaviours, appended to the queue; ``{"queued": n}``.
``POST /_control/reset``   empty queue and log.
``GET  /_control/log``     ``{"requests": [...]}``: ``seq``, ``service`` ("bedrock" | "sts" |
    "container"),
    ``action`` (invoke, invoke-with-response-stream, count-tokens, AssumeRoleWithWebIdentity),
    ``path`` (raw), ``model`` (decoded id), ``headers`` (lower-case), ``body`` (JSON; for
    count-tokens the decoded InvokeModel body under ``invoke_body``), ``access_key``, ``status``,
    ``error`` (the AWS error type sent, if any), ``behaviour``.

A behaviour is consumed by the next Bedrock request it matches (``action``: one action or a list;
default invoke and invoke-with-response-stream), ``times`` requests (default 1):
    ``{"error": "ThrottlingException", "status": 429, "message": "..."}``: an error response.
    ``{"exception": "throttlingException", "after": N, "message": "..."}``: in a stream, N
        Anthropic events, then an exception frame, then the end of the body.
    ``{"text": "..."}``: the answer's text.
    ``{"extra_events": [{...}]}``: Anthropic events sent after ``message_start``.
    ``{"other_frames": true}``: an event frame of an unknown type before the first chunk.
    ``{"bad_crc": true}``: the first frame's message CRC is wrong.
    ``{"cut_after": N}``: in a stream, N frames, then the connection is closed mid-body.
    ``{"frame_delay": seconds}``: a pause after each frame of a stream (so that content reaches
        the client in its own read before a later fault).
"""

from __future__ import annotations

import argparse
import base64
import datetime
import hmac
import json
import re
import secrets
import signal
import struct
import sys
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

_AUTH = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/"
    r"(?P<service>[^/]+)/aws4_request, ?SignedHeaders=(?P<signed>[^,]+), ?"
    r"Signature=(?P<signature>[0-9a-f]{64})$"
)
_PATH = re.compile(
    r"^/model/(?P<model>[^/]+)/(?P<action>invoke|invoke-with-response-stream|count-tokens)$"
)
MISMATCH = (
    "The request signature we calculated does not match the signature you provided. Check your "
    "AWS Secret Access Key and signing method. Consult the service documentation for details."
)
PADDING = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0"


class AwsError(Exception):
    def __init__(self, status: int, error_type: str, message: str) -> None:
        super().__init__(message)
        self.status, self.error_type, self.message = status, error_type, message


class State:
    def __init__(self, args: argparse.Namespace) -> None:
        self.lock = threading.Lock()
        self.region: str = args.region
        self.lifetime: float = args.sts_lifetime
        self.keys: dict[str, tuple[str, str | None, float | None]] = {}
        if args.access_key:
            self.keys[args.access_key] = (args.secret_key, args.session_token, None)
        self.identity_token: str | None = None
        if args.web_identity_token_file:
            with open(args.web_identity_token_file, encoding="utf-8") as f:
                self.identity_token = f.read().strip()
        self.queue: list[dict[str, Any]] = []
        self.log: list[dict[str, Any]] = []
        self.seq = 0

    def next_behaviour(self, action: str) -> dict[str, Any] | None:
        with self.lock:
            for i, behaviour in enumerate(self.queue):
                wanted = behaviour.get("action", ["invoke", "invoke-with-response-stream"])
                if action == wanted or (isinstance(wanted, list) and action in wanted):
                    left = int(behaviour.get("times", 1)) - 1
                    if left <= 0:
                        self.queue.pop(i)
                    else:
                        self.queue[i] = {**behaviour, "times": left}
                    return behaviour
        return None

    def record(self, entry: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            self.seq += 1
            entry["seq"] = self.seq
            self.log.append(entry)
        return entry


# --------------------------------------------------------------------------- event-stream


def frame(headers: dict[str, str], payload: bytes) -> bytes:
    """One AWS event-stream message: prelude (lengths + CRC), string headers, payload, CRC."""
    encoded = b"".join(
        bytes([len(name)])
        + name.encode()
        + b"\x07"
        + struct.pack(">H", len(value))
        + value.encode()
        for name, value in headers.items()
    )
    prelude = struct.pack(">II", 12 + len(encoded) + len(payload) + 4, len(encoded))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    message = prelude + encoded + payload
    return message + struct.pack(">I", zlib.crc32(message))


def chunk_frame(event: dict[str, Any], n: int) -> bytes:
    data = base64.b64encode(json.dumps(event).encode()).decode()
    payload = json.dumps({"bytes": data, "p": PADDING[: 5 + n % 40]}).encode()
    headers = {
        ":event-type": "chunk",
        ":content-type": "application/json",
        ":message-type": "event",
    }
    return frame(headers, payload)


def exception_frame(name: str, message: str) -> bytes:
    headers = {
        ":exception-type": name,
        ":content-type": "application/json",
        ":message-type": "exception",
    }
    return frame(headers, json.dumps({"message": message}).encode())


# --------------------------------------------------------------------------- answers


def _words(value: Any) -> int:
    if isinstance(value, str):
        return len(value.split())
    if isinstance(value, list):
        return sum(_words(item.get("text", "")) for item in value if isinstance(item, dict))
    return 0


def _last_user_text(body: dict[str, Any]) -> str:
    for message in reversed(body.get("messages", [])):
        if message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            return content
        texts = [
            b.get("text", "") for b in content if isinstance(b, dict) and b.get("type") == "text"
        ]
        if texts:
            return " ".join(texts)
    return ""


def input_tokens(body: dict[str, Any]) -> int:
    count = _words(body.get("system", "")) + sum(
        _words(m.get("content", "")) for m in body.get("messages", [])
    )
    return max(count, 1)


def answer_events(body: dict[str, Any], model: str, seq: int, text: str) -> list[dict[str, Any]]:
    words = text.split(" ")
    usage_in = input_tokens(body)
    events: list[dict[str, Any]] = [
        {
            "type": "message_start",
            "message": {
                "id": f"msg_bdrk_{seq:04d}",
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": usage_in, "output_tokens": 1},
            },
        },
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    ]
    for i, word in enumerate(words):
        piece = word if i == len(words) - 1 else word + " "
        events.append(
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": piece},
            }
        )
    events += [
        {"type": "content_block_stop", "index": 0},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": len(words)},
        },
        {
            "type": "message_stop",
            "amazon-bedrock-invocationMetrics": {
                "inputTokenCount": usage_in,
                "outputTokenCount": len(words),
                "invocationLatency": 12,
                "firstByteLatency": 5,
            },
        },
    ]
    return events


def answer_message(body: dict[str, Any], model: str, seq: int, text: str) -> dict[str, Any]:
    return {
        "id": f"msg_bdrk_{seq:04d}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": input_tokens(body), "output_tokens": len(text.split(" "))},
    }


def check_body(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except ValueError:
        raise AwsError(
            400,
            "ValidationException",
            "Malformed input request, please reformat your input and try again.",
        ) from None
    if not isinstance(body, dict):
        raise AwsError(400, "ValidationException", "Malformed input request: expected an object")
    for key in ("model", "stream"):
        if key in body:
            raise AwsError(
                400,
                "ValidationException",
                f"Malformed input request: extraneous key [{key}] is not permitted, "
                "please reformat your input and try again.",
            )
    for key in ("anthropic_version", "max_tokens", "messages"):
        if key not in body:
            raise AwsError(
                400,
                "ValidationException",
                f"Malformed input request: #: required key [{key}] not found, "
                "please reformat your input and try again.",
            )
    return body


# --------------------------------------------------------------------------- HTTP


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeBedrock"
    state: State

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _read(self) -> bytes:
        length = int(self.headers.get("content-length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(
        self, status: int, body: bytes, content_type: str, extra: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body)))
        self.send_header("x-amzn-requestid", secrets.token_hex(8))
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, doc: Any, extra: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(doc).encode(), "application/json", extra)

    def _aws_error(self, error: AwsError) -> None:
        self._json(
            error.status,
            {"message": error.message},
            {
                "x-amzn-ErrorType": f"{error.error_type}:http://internal.amazon.com/coral/com.amazon.bedrock/"
            },
        )

    def do_GET(self) -> None:
        if self.path.startswith("/_control/log"):
            with self.state.lock:
                self._json(200, {"requests": list(self.state.log)})
        elif self.path == "/v1/credentials":
            self._container()
        elif self.path == "/_control/health":
            self._json(200, {"ok": True})
        else:
            self._json(404, {"message": "not found"})

    def do_POST(self) -> None:
        raw = self._read()
        path = self.path.split("?", 1)[0]
        if path == "/_control/script":
            behaviours = json.loads(raw or b"[]")
            with self.state.lock:
                self.state.queue.extend(behaviours)
                self._json(200, {"queued": len(self.state.queue)})
            return
        if path == "/_control/reset":
            with self.state.lock:
                self.state.queue.clear()
                self.state.log.clear()
                self.state.seq = 0
            self._json(200, {"ok": True})
            return
        if path == "/":
            self._sts(raw)
            return
        self._bedrock(path, raw)

    # ------------------------------------------------------------------ STS, container

    def _issue(self) -> tuple[str, str, str, float, str]:
        """New temporary credentials: key, secret, token, expiry, expiry as ISO 8601."""
        key = "ASIA" + secrets.token_hex(8).upper()
        secret, token = secrets.token_urlsafe(30), secrets.token_urlsafe(60)
        expires = time.time() + self.state.lifetime
        with self.state.lock:
            self.state.keys[key] = (secret, token, expires)
        stamp = datetime.datetime.fromtimestamp(expires, datetime.UTC)
        return key, secret, token, expires, stamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    def _container(self) -> None:
        entry = self.state.record({"service": "container", "path": self.path, "status": None})
        expected = self.state.identity_token
        if expected is not None and self.headers.get("authorization", "").strip() != expected:
            entry["status"] = 401
            self._json(401, {"message": "invalid authorization token"})
            return
        key, secret, token, expires, when = self._issue()
        entry.update(status=200, access_key=key, expires=expires)
        doc = {"AccessKeyId": key, "SecretAccessKey": secret, "Token": token, "Expiration": when}
        self._json(200, {**doc, "AccountId": "123456789012"})

    def _sts(self, raw: bytes) -> None:
        form = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
        entry = self.state.record(
            {
                "service": "sts",
                "action": form.get("Action"),
                "path": self.path,
                "body": {k: v for k, v in form.items() if k != "WebIdentityToken"},
                "status": None,
            }
        )
        if form.get("Action") != "AssumeRoleWithWebIdentity":
            entry["status"] = 400
            self._send(
                400,
                b"<ErrorResponse><Error><Code>InvalidAction</Code></Error></ErrorResponse>",
                "text/xml",
            )
            return
        if (
            self.state.identity_token is not None
            and form.get("WebIdentityToken") != self.state.identity_token
        ):
            entry["status"] = 400
            body = (
                '<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type>'
                "<Code>InvalidIdentityToken</Code>"
                "<Message>Invalid web identity token</Message></Error>"
                "<RequestId>1</RequestId></ErrorResponse>"
            )
            self._send(400, body.encode(), "text/xml")
            return
        key, secret, token, expires, when = self._issue()
        entry.update(status=200, access_key=key, expires=expires)
        body = f"""<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleWithWebIdentityResult>
    <SubjectFromWebIdentityToken>system:serviceaccount:default:app</SubjectFromWebIdentityToken>
    <Audience>sts.amazonaws.com</Audience>
    <AssumedRoleUser>
      <Arn>arn:aws:sts::123456789012:assumed-role/app/{form.get("RoleSessionName", "s")}</Arn>
      <AssumedRoleId>AROAEXAMPLE:{form.get("RoleSessionName", "s")}</AssumedRoleId>
    </AssumedRoleUser>
    <Credentials>
      <SessionToken>{token}</SessionToken>
      <SecretAccessKey>{secret}</SecretAccessKey>
      <Expiration>{when}</Expiration>
      <AccessKeyId>{key}</AccessKeyId>
    </Credentials>
    <Provider>arn:aws:iam::123456789012:oidc-provider/oidc.eks.example</Provider>
  </AssumeRoleWithWebIdentityResult>
  <ResponseMetadata><RequestId>{secrets.token_hex(8)}</RequestId></ResponseMetadata>
</AssumeRoleWithWebIdentityResponse>"""
        self._send(200, body.encode(), "text/xml")

    # ------------------------------------------------------------------ Bedrock

    def _verify(self, raw: bytes) -> str:
        """The access key of a correctly signed request; raises AwsError otherwise."""
        auth = self.headers.get("authorization")
        if not auth:
            raise AwsError(
                403, "MissingAuthenticationTokenException", "Missing Authentication Token"
            )
        found = _AUTH.match(auth)
        if found is None:
            raise AwsError(
                403,
                "IncompleteSignatureException",
                "Authorization header requires 'Credential', 'Signature' and 'SignedHeaders'.",
            )
        key = found["key"]
        with self.state.lock:
            known = self.state.keys.get(key)
        if known is None:
            raise AwsError(
                403,
                "UnrecognizedClientException",
                "The security token included in the request is invalid.",
            )
        secret, token, expires = known
        if token is not None and self.headers.get("x-amz-security-token") != token:
            raise AwsError(
                403,
                "UnrecognizedClientException",
                "The security token included in the request is invalid.",
            )
        if expires is not None and time.time() >= expires:
            raise AwsError(
                403,
                "ExpiredTokenException",
                "The security token included in the request is expired",
            )
        if found["region"] != self.state.region or found["service"] != "bedrock":
            raise AwsError(
                403,
                "InvalidSignatureException",
                f"Credential should be scoped to a valid region and service "
                f"({self.state.region}/bedrock).",
            )
        stamp = self.headers.get("x-amz-date", "")
        try:
            signed_at = datetime.datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(
                tzinfo=datetime.UTC
            )
        except ValueError:
            raise AwsError(
                403, "IncompleteSignatureException", "Missing or malformed X-Amz-Date"
            ) from None
        if abs(time.time() - signed_at.timestamp()) > 300 or stamp[:8] != found["date"]:
            raise AwsError(
                403,
                "InvalidSignatureException",
                "Signature expired: the request time is too far from the server's.",
            )
        names = found["signed"].split(";")
        if "host" not in names:
            raise AwsError(
                403,
                "InvalidSignatureException",
                "'Host' must be a 'SignedHeader' in the AWS Authorization.",
            )
        headers = {name: self.headers.get(name, "") for name in names}
        request = AWSRequest(
            method="POST", url=f"http://{headers['host']}{self.path}", data=raw, headers=headers
        )
        request.context["timestamp"] = stamp
        signer = SigV4Auth(Credentials(key, secret, token), "bedrock", self.state.region)
        canonical = signer.canonical_request(request)
        expected = signer.signature(signer.string_to_sign(request, canonical), request)
        if not hmac.compare_digest(expected, found["signature"]):
            raise AwsError(403, "InvalidSignatureException", MISMATCH)
        return key

    def _bedrock(self, path: str, raw: bytes) -> None:
        entry: dict[str, Any] = {
            "service": "bedrock",
            "path": self.path,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "status": None,
            "error": None,
            "behaviour": None,
        }
        found = _PATH.match(path)
        entry["action"] = found["action"] if found else None
        entry["model"] = unquote(found["model"]) if found else None
        try:
            entry["body"] = json.loads(raw)
        except ValueError:
            entry["body"] = None
        self.state.record(entry)
        try:
            entry["access_key"] = self._verify(raw)
            if found is None:
                raise AwsError(404, "UnknownOperationException", "not a Bedrock runtime operation")
            action, model = found["action"], entry["model"]
            if action == "count-tokens":
                self._count_tokens(raw, entry)
                return
            body = check_body(raw)
            behaviour = self.state.next_behaviour(action) or {}
            entry["behaviour"] = behaviour or None
            if "error" in behaviour:
                raise AwsError(
                    int(behaviour.get("status", 400)),
                    behaviour["error"],
                    behaviour.get("message", behaviour["error"]),
                )
            text = behaviour.get("text") or "echo: " + _last_user_text(body)
            if action == "invoke":
                entry["status"] = 200
                self._json(200, answer_message(body, str(model), entry["seq"], text))
            else:
                self._stream(body, str(model), entry, text, behaviour)
        except AwsError as error:
            entry.update(status=error.status, error=error.error_type)
            self._aws_error(error)

    def _count_tokens(self, raw: bytes, entry: dict[str, Any]) -> None:
        behaviour = self.state.next_behaviour("count-tokens") or {}
        entry["behaviour"] = behaviour or None
        if "error" in behaviour:
            raise AwsError(
                int(behaviour.get("status", 400)),
                behaviour["error"],
                behaviour.get("message", behaviour["error"]),
            )
        try:
            inner = base64.b64decode(json.loads(raw)["input"]["invokeModel"]["body"], validate=True)
        except (ValueError, KeyError, TypeError):
            raise AwsError(
                400, "ValidationException", "input.invokeModel.body: expected base64 of a JSON body"
            ) from None
        body = check_body(inner)
        entry["invoke_body"] = body
        entry["status"] = 200
        self._json(200, {"inputTokens": input_tokens(body)})

    def _stream(
        self,
        body: dict[str, Any],
        model: str,
        entry: dict[str, Any],
        text: str,
        behaviour: dict[str, Any],
    ) -> None:
        events = answer_events(body, model, entry["seq"], text)
        events[1:1] = behaviour.get("extra_events", [])
        frames = [chunk_frame(event, i) for i, event in enumerate(events)]
        if "exception" in behaviour:
            after = int(behaviour.get("after", 0))
            failure = behaviour.get("message", "stream failed")
            frames = [*frames[:after], exception_frame(behaviour["exception"], failure)]
        if behaviour.get("other_frames"):
            other = frame(
                {
                    ":event-type": "somethingNew",
                    ":content-type": "application/json",
                    ":message-type": "event",
                },
                b"{}",
            )
            frames.insert(0, other)
        if behaviour.get("bad_crc"):
            frames[0] = frames[0][:-4] + struct.pack(
                ">I", (struct.unpack(">I", frames[0][-4:])[0] + 1) & 0xFFFFFFFF
            )
        entry["status"] = 200
        self.send_response(200)
        self.send_header("content-type", "application/vnd.amazon.eventstream")
        self.send_header("x-amzn-requestid", secrets.token_hex(8))
        self.send_header("x-amzn-bedrock-content-type", "application/json")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        sent = 0
        cut = behaviour.get("cut_after")
        try:
            for data in frames:
                if cut is not None and sent >= int(cut):
                    self.close_connection = True  # no last chunk: the body is cut short
                    entry["frames_sent"] = sent
                    return
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()
                sent += 1
                if behaviour.get("frame_delay"):
                    time.sleep(float(behaviour["frame_delay"]))
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            entry["disconnected"] = True
        entry["frames_sent"] = sent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--access-key", default="")
    parser.add_argument("--secret-key", default="")
    parser.add_argument("--session-token", default=None)
    parser.add_argument("--sts-lifetime", type=float, default=3600.0)
    parser.add_argument("--web-identity-token-file", default=None)
    parser.add_argument("--max-seconds", type=float, default=600.0)
    args = parser.parse_args(argv)

    handler = type("BoundHandler", (Handler,), {"state": State(args)})
    server = ThreadingHTTPServer(("127.0.0.1", args.port), handler)
    server.daemon_threads = True

    def stop(*_: Any) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    timer = threading.Timer(args.max_seconds, stop)
    timer.daemon = True
    timer.start()
    print(f"READY port={server.server_address[1]}", flush=True)
    server.serve_forever(poll_interval=0.1)
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
