"""A fake Azure OpenAI upstream and Entra ID token endpoint, around ``tests.upstream.server``.

Run it as ``python -m tests.upstream.azure_server --port 0 --api-key KEY --token-secret S ...``;
it prints ``READY port=NNNN`` like the scripted fake it wraps, keeps that fake's control API
(``/_control/script``, ``/_control/log``...) and behaviours, and answers Chat Completions the
same way, on Azure's paths and with Azure's checks in front:

Azure OpenAI
------------
``POST /openai/deployments/{deployment}/chat/completions?api-version=V``
    ``api-version`` is required (missing: 404 ``Resource not found``; not one of
    ``--api-versions``: 400 ``API version not supported``).
``POST /openai/v1/chat/completions``
    The v1 API: no ``api-version`` needed; the deployment is the body's ``model`` (required).
    With ``--deployments``, an unknown deployment is a 404 ``DeploymentNotFound`` on both paths.
Auth, as Azure checks it: an ``api-key`` header equal to ``--api-key``; or ``Authorization:
Bearer`` with a token this fake's Entra endpoint issued (HMAC-signed with ``--token-secret``, so
several processes sharing the secret — two "regions" — accept each other's tokens) and not
expired; on the v1 path the API key is also accepted as the bearer (the openai SDK's ``OpenAI``
client sends it so). Anything else is a 401 with Azure's body. The log entry of each request
says which auth was used (``"auth": "api-key" | "bearer-key" | "entra-token" | null``).
Answers look like Azure's: streams begin with a chunk with ``"choices": []`` and
``prompt_filter_results``, choices carry ``content_filter_results``, a whole answer has
``prompt_filter_results``. ``content_filter_400()`` and ``rate_limited()`` are behaviours for
Azure's content-filter refusal and 429 (``retry-after-ms`` and ``x-ratelimit-*``).
Behaviours without ``path`` apply to both Azure paths (as to ``/v1/chat/completions``).

Microsoft Entra ID
------------------
``GET /{tenant}/v2.0/.well-known/openid-configuration``: where the token endpoint is (MSAL,
and so azure-identity, reads it first; they insist on https: ``--tls-cert`` / ``--tls-key``).
``POST /{tenant}/oauth2/v2.0/token`` (form): the client-credentials grant of workload identity.
It checks the tenant (``--tenant``), ``client_id`` (``--client-id``), the scope
(``https://cognitiveservices.azure.com/.default``), ``client_assertion_type`` (jwt-bearer) and
that ``client_assertion`` equals the content of ``--federated-token-file`` *as it is now* (read
per request, so a test can rotate it), answering Entra's error bodies (``AADSTS...``) otherwise;
a good request gets a token valid for ``--token-lifetime`` seconds. Its log entry has
``"assertion_matched"``. Behaviours scoped to the token path (``{"path": "/TENANT/oauth2/v2.0/
token", "status": 503}``) replace the answer.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import re
import secrets
import sys
import time
from typing import Any
from urllib.parse import parse_qs, unquote

from tests.upstream.server import Behaviour, Connection, Request, Upstream, _dumps, serve

DEPLOYMENTS_PATH = re.compile(r"^/openai/deployments/([^/]+)/chat/completions$")
V1_PATH = "/openai/v1/chat/completions"
TOKEN_PATH = re.compile(r"^/([^/]+)/oauth2/v2\.0/token$")
DISCOVERY_PATH = re.compile(r"^/([^/]+)/v2\.0/\.well-known/openid-configuration$")
SCOPE = "https://cognitiveservices.azure.com/.default"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
API_VERSIONS = ("2024-10-21", "2024-06-01", "2025-04-01-preview")

KEY_MISSING = {
    "error": {
        "code": "401",
        "message": "Access denied due to missing subscription key. Make sure to include "
        "subscription key when making requests to an API.",
    }
}
KEY_INVALID = {
    "error": {
        "code": "401",
        "message": "Access denied due to invalid subscription key or wrong API endpoint. Make "
        "sure to provide a valid key for an active subscription and use a correct regional API "
        "endpoint for your resource.",
    }
}
TOKEN_INVALID = {
    "error": {
        "code": "401",
        "message": "Unauthorized. Access token is missing, invalid, audience is incorrect "
        "(https://cognitiveservices.azure.com), or have expired.",
    }
}
NOT_FOUND = {"error": {"code": "404", "message": "Resource not found"}}


def content_filter_400(**extra: Any) -> Behaviour:
    """Azure's refusal of a prompt by its content filter."""
    body = {
        "error": {
            "message": "The response was filtered due to the prompt triggering Azure OpenAI's "
            "content management policy. Please modify your prompt and retry.",
            "type": None,
            "param": "prompt",
            "code": "content_filter",
            "status": 400,
            "innererror": {
                "code": "ResponsibleAIPolicyViolation",
                "content_filter_result": {
                    "hate": {"filtered": False, "severity": "safe"},
                    "violence": {"filtered": True, "severity": "high"},
                },
            },
        }
    }
    return {"status": 400, "body": body, **extra}


def rate_limited(retry_after_ms: int, **extra: Any) -> Behaviour:
    """Azure's 429, with its wait in ``retry-after-ms`` (and ``retry-after``, rounded up)."""
    body = {
        "error": {
            "code": "429",
            "message": "Requests to the ChatCompletions_Create Operation under Azure OpenAI API "
            "have exceeded token rate limit of your current tier.",
        }
    }
    headers = {
        "retry-after-ms": str(retry_after_ms),
        "retry-after": str(-(-retry_after_ms // 1000)),
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-remaining-tokens": "0",
    }
    return {"status": 429, "body": body, "headers": headers, **extra}


def mint_token(secret: str, lifetime: float, now: float | None = None) -> str:
    """An access token the fake accepts until ``now + lifetime`` (opaque to clients)."""
    expires = int(((time.time() if now is None else now) + lifetime) * 1000)  # milliseconds
    payload = f"{expires}.{secrets.token_hex(6)}"
    return f"fake-entra.{payload}.{_sign(secret, payload)}"


def token_valid(secret: str, token: str, now: float | None = None) -> bool:
    parts = token.split(".")
    if len(parts) != 4 or parts[0] != "fake-entra" or not secret:
        return False
    payload = f"{parts[1]}.{parts[2]}"
    if not hmac.compare_digest(parts[3], _sign(secret, payload)):
        return False
    return int(parts[1]) > (time.time() if now is None else now) * 1000


def _sign(secret: str, payload: str) -> str:
    digest = hmac.new(secret.encode(), payload.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def entra_error(error: str, code: int, description: str) -> dict[str, Any]:
    return {
        "error": error,
        "error_description": f"AADSTS{code}: {description}",
        "error_codes": [code],
        "timestamp": time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime()),
        "trace_id": "00000000-0000-0000-0000-000000000000",
        "correlation_id": "00000000-0000-0000-0000-000000000000",
    }


class AzureUpstream(Upstream):
    """The scripted fake with Azure OpenAI's routes and checks, and an Entra token endpoint."""

    def __init__(
        self,
        *,
        quiet: bool = False,
        api_key: str = "",
        token_secret: str = "",
        api_versions: tuple[str, ...] = API_VERSIONS,
        deployments: tuple[str, ...] = (),
        tenant: str = "",
        client_id: str = "",
        federated_token_file: str = "",
        token_lifetime: float = 3600.0,
    ) -> None:
        super().__init__(quiet=quiet)
        self.api_key = api_key
        self.token_secret = token_secret
        self.api_versions = api_versions
        self.deployments = deployments
        self.tenant = tenant
        self.client_id = client_id
        self.federated_token_file = federated_token_file
        self.token_lifetime = token_lifetime
        self.scheme = "http"  # https when served with a certificate

    @staticmethod
    def _generation(path: str) -> bool:
        return path == V1_PATH or DEPLOYMENTS_PATH.match(path) is not None

    def _take(self, request: Request) -> Behaviour | None:
        if not self._generation(request.path):
            return super()._take(request)
        original = request.path
        request.path = "/v1/chat/completions"  # scoped like the fake's own generation path
        try:
            return super()._take(request)
        finally:
            request.path = original

    async def _answer(
        self, conn: Connection, request: Request, entry: dict[str, Any], b: Behaviour
    ) -> bool:
        token = TOKEN_PATH.match(request.path)
        if token is not None and request.method == "POST":
            if b:  # a scripted answer replaces the token endpoint's
                return await super()._answer(conn, request, entry, b)
            status, body = self._token(token.group(1), request, entry)
            await self._send_json(conn, status, body, entry=entry)
            return True
        discovery = DISCOVERY_PATH.match(request.path)
        if discovery is not None and request.method == "GET":
            await self._send_json(
                conn, 200, self._discovery(discovery.group(1), request), entry=entry
            )
            return True
        problem = self._check(request, entry)
        if problem is not None:
            await self._send_json(conn, problem[0], problem[1], entry=entry)
            return True
        request.path = "/v1/chat/completions"  # answered by the scripted fake
        return await super()._answer(conn, request, entry, b)

    # -- Azure OpenAI

    def _check(self, request: Request, entry: dict[str, Any]) -> tuple[int, Any] | None:
        """What Azure would answer instead of a completion, or None when the request is good."""
        deployment_match = DEPLOYMENTS_PATH.match(request.path)
        if request.method != "POST" or not self._generation(request.path):
            return 404, NOT_FOUND
        auth = self._auth(request, v1=deployment_match is None)
        entry["auth"] = auth if not isinstance(auth, dict) else None
        if isinstance(auth, dict):
            return 401, auth
        if deployment_match is not None:
            versions = parse_qs(request.query).get("api-version")
            if not versions:
                return 404, NOT_FOUND
            if versions[0] not in self.api_versions:
                message = "API version not supported"
                return 400, {"error": {"code": "BadRequest", "message": message}}
            deployment = unquote(deployment_match.group(1))
        else:
            body = request.body if isinstance(request.body, dict) else {}
            deployment = body.get("model") or ""
            if not isinstance(deployment, str) or not deployment:
                message = "you must provide a model parameter"
                return 400, {"error": {"code": None, "message": message, "param": "model"}}
        entry["deployment"] = deployment
        if self.deployments and deployment not in self.deployments:
            message = (
                "The API deployment for this resource does not exist. If you created the "
                "deployment within the last 5 minutes, please wait a moment and try again."
            )
            return 404, {"error": {"code": "DeploymentNotFound", "message": message}}
        return None

    def _auth(self, request: Request, *, v1: bool) -> str | dict[str, Any]:
        """How the request authenticated, or the 401 body."""
        key = request.headers.get("api-key")
        authorization = request.headers.get("authorization", "")
        if key is not None:
            return "api-key" if self.api_key and key == self.api_key else KEY_INVALID
        if authorization.startswith("Bearer "):
            bearer = authorization.removeprefix("Bearer ")
            if v1 and self.api_key and bearer == self.api_key:
                return "bearer-key"
            if token_valid(self.token_secret, bearer):
                return "entra-token"
            return TOKEN_INVALID
        return KEY_MISSING

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
        first = {
            "choices": [],
            "created": 0,
            "id": "",
            "model": "",
            "object": "",
            "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": _SAFE}],
        }
        frames = [b"data: " + _dumps(first) + b"\n\n", *(_filtered(f) for f in frames)]
        return await super()._stream(conn, entry, status, frames, done, anthropic, b)

    async def _json_answer(
        self, conn: Connection, entry: dict[str, Any], status: int, value: Any, b: Behaviour
    ) -> bool:
        if isinstance(value, dict) and "choices" in value:
            value["prompt_filter_results"] = [{"prompt_index": 0, "content_filter_results": _SAFE}]
            for choice in value["choices"]:
                choice["content_filter_results"] = _SAFE
        return await super()._json_answer(conn, entry, status, value, b)

    # -- Microsoft Entra ID

    def _discovery(self, tenant: str, request: Request) -> dict[str, Any]:
        """The tenant's OpenID configuration, which MSAL reads to find the token endpoint."""
        base = f"{self.scheme}://{request.headers.get('host', '127.0.0.1')}/{tenant}"
        return {
            "issuer": f"{base}/v2.0",
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
            "jwks_uri": f"{base}/discovery/v2.0/keys",
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt"],
            "tenant_region_scope": "NA",
        }

    def _token(self, tenant: str, request: Request, entry: dict[str, Any]) -> tuple[int, Any]:
        form = {k: v[0] for k, v in parse_qs(request.raw_body.decode("utf-8", "replace")).items()}
        expected = ""
        if self.federated_token_file:
            with open(self.federated_token_file, encoding="utf-8") as f:
                expected = f.read().strip()
        entry["assertion_matched"] = bool(expected) and form.get("client_assertion") == expected
        entry["form"] = {k: v for k, v in form.items() if k != "client_assertion"}
        if tenant != self.tenant:
            return 400, entra_error("invalid_request", 90002, f"Tenant '{tenant}' not found.")
        if form.get("grant_type") != "client_credentials":
            return 400, entra_error(
                "unsupported_grant_type", 70003, "The app requested an unsupported grant type."
            )
        if form.get("client_id") != self.client_id:
            return 400, entra_error(
                "unauthorized_client",
                700016,
                f"Application with identifier '{form.get('client_id')}' was not found.",
            )
        if form.get("scope") != SCOPE:
            return 400, entra_error(
                "invalid_scope",
                70011,
                "The provided value for the input parameter 'scope' is not valid.",
            )
        if form.get("client_assertion_type") != ASSERTION_TYPE:
            return 400, entra_error("invalid_request", 50027, "Invalid client assertion type.")
        if not entry["assertion_matched"]:
            return 400, entra_error(
                "invalid_client",
                700213,
                "No matching federated identity record found for presented assertion subject.",
            )
        lifetime = int(self.token_lifetime)
        return 200, {
            "token_type": "Bearer",
            "expires_in": lifetime,
            "ext_expires_in": lifetime,
            "access_token": mint_token(self.token_secret, self.token_lifetime),
        }


_SAFE = {
    "hate": {"filtered": False, "severity": "safe"},
    "self_harm": {"filtered": False, "severity": "safe"},
    "sexual": {"filtered": False, "severity": "safe"},
    "violence": {"filtered": False, "severity": "safe"},
}


def _filtered(frame: bytes) -> bytes:
    """An OpenAI chunk frame with Azure's ``content_filter_results`` on each choice."""
    if not frame.startswith(b"data: {"):
        return frame
    chunk = json.loads(frame[6:])
    for choice in chunk.get("choices") or []:
        choice["content_filter_results"] = _SAFE if choice.get("delta", {}).get("content") else {}
    return b"data: " + _dumps(chunk) + b"\n\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--max-seconds", type=float, default=600.0)
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--api-key", default="", help="the resource's key (api-key header)")
    parser.add_argument("--token-secret", default="", help="signs and checks Entra tokens")
    parser.add_argument("--api-versions", default=",".join(API_VERSIONS))
    parser.add_argument("--deployments", default="", help="comma-separated; empty: any")
    parser.add_argument("--tenant", default="")
    parser.add_argument("--client-id", default="")
    parser.add_argument("--federated-token-file", default="")
    parser.add_argument("--token-lifetime", type=float, default=3600.0)
    parser.add_argument("--tls-cert", help="serve HTTPS with this certificate (PEM)")
    parser.add_argument("--tls-key", help="... and this key (PEM)")
    args = parser.parse_args(argv)
    upstream = AzureUpstream(
        quiet=args.quiet,
        api_key=args.api_key,
        token_secret=args.token_secret,
        api_versions=tuple(v for v in args.api_versions.split(",") if v),
        deployments=tuple(d for d in args.deployments.split(",") if d),
        tenant=args.tenant,
        client_id=args.client_id,
        federated_token_file=args.federated_token_file,
        token_lifetime=args.token_lifetime,
    )
    tls = (args.tls_cert, args.tls_key) if args.tls_cert else None
    upstream.scheme = "https" if tls else "http"
    asyncio.run(serve(args.port, args.max_seconds, args.quiet, tls, upstream=upstream))
    return 0


if __name__ == "__main__":
    sys.exit(main())
