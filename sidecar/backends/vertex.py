"""Claude on Google Vertex AI: the Messages API relayed through Vertex's rawPredict endpoints.

How it works
------------
Vertex serves Anthropic's own Messages API under a model resource::

    POST {host}/v1/projects/{project}/locations/{region}/publishers/anthropic/models/{model}:METHOD

    rawPredict        the whole answer (Anthropic's JSON message)
    streamRawPredict  SSE, Anthropic's stream events
    and .../publishers/anthropic/models/count-tokens:rawPredict for the exact token count

The body is the Messages body without ``model`` (it is in the path), with ``anthropic_version``
(the configured one, unless the body has its own) and, for the streaming call, ``"stream":
true`` — what anthropic's ``AnthropicVertex`` sends. A request that came over HTTP is built from
the caller's own bytes, so fields this sidecar does not model still reach Claude. The caller's
``anthropic-*`` headers pass through — ``anthropic-beta`` is how Vertex takes betas, as the
official client sends them — except ``anthropic-version``, which Vertex takes in the body (with
values of its own). Answers and events come back byte for byte, read by ``anthropic_wire`` as
for Anthropic itself.

The host is ``https://{region}-aiplatform.googleapis.com``; ``global`` is
``https://aiplatform.googleapis.com`` and the multi-regions ``us`` / ``eu`` are
``https://aiplatform.{us,eu}.rep.googleapis.com``. ``base_url`` replaces the host and may end in
``/v1``, as the official client's ``base_url`` does.

Auth is a Google OAuth2 access token (``gcp_auth.GoogleTokens``: a service-account key file or
Application Default Credentials, refreshed before expiry in a worker thread) sent as
``authorization: Bearer`` by ``gcp_auth.GoogleAuthSession``, which also owns the 401 rule: the
token is refreshed and the request sent once more; a second 401 is this target's failure
(``FailureKind.AUTH``, the chain moves on). Errors in Google's shape and in Anthropic's are both
mapped (``translate.google_errors``).

Models of other publishers, named ``publisher/model`` as Vertex names them
(``google/gemini-2.5-flash``), go to Vertex's OpenAI-compatible endpoint
(``.../endpoints/openapi/chat/completions``) through the OpenAI backend — translated, as for any
Chat Completions upstream — on the same connection pool with the same tokens.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any
from urllib.parse import quote

import msgspec
import orjson

from sidecar.model import Answer, Call, CountCall, StreamItem, TokenCount, json_encoder
from sidecar.translate.google_errors import error_from_google

from .anthropic_wire import read_message, read_token_count, sse_events
from .gcp_auth import GoogleAuthSession, GoogleTokens, load_credentials
from .http import Session, UpstreamSession
from .openai import OpenAIBackend
from .settings import OpenAISettings, VertexSettings

MULTI_REGION_HOSTS = {
    "global": "https://aiplatform.googleapis.com",
    "us": "https://aiplatform.us.rep.googleapis.com",
    "eu": "https://aiplatform.eu.rep.googleapis.com",
}
# The caller's anthropic-* headers pass (anthropic-beta is how Vertex takes betas), except the
# version: Vertex takes it in the body, and its values are its own.
HELD_BACK_HEADERS = frozenset({"anthropic-version"})


def vertex_host(region: str, base_url: str = "") -> str:
    """The scheme and host (and any path prefix) that ``/v1/projects/...`` is appended to."""
    if base_url:
        host = base_url.rstrip("/")
        return host.removesuffix("/v1")
    return MULTI_REGION_HOSTS.get(region, f"https://{region}-aiplatform.googleapis.com")


def model_path(project: str, region: str, model: str, *, stream: bool) -> str:
    """The path of a model's rawPredict (or streamRawPredict) method."""
    method = "streamRawPredict" if stream else "rawPredict"
    return f"{_publisher(project, region)}/models/{quote(model, safe='@')}:{method}"


def openapi_prefix(project: str, region: str) -> str:
    """Vertex's OpenAI-compatible endpoint (``/chat/completions`` follows)."""
    return f"/v1/projects/{quote(project, safe='')}/locations/{region}/endpoints/openapi"


def is_openapi_model(model: str) -> bool:
    """``publisher/model`` ids (``google/gemini-2.5-flash``) are served by the OpenAI-compatible
    endpoint; Claude's ids on Vertex (``claude-sonnet-4-5@20250929``) have no ``/``."""
    return "/" in model


def count_tokens_path(project: str, region: str) -> str:
    return f"{_publisher(project, region)}/models/count-tokens:rawPredict"


def _publisher(project: str, region: str) -> str:
    return f"/v1/projects/{quote(project, safe='')}/locations/{region}/publishers/anthropic"


def request_body(call: Call, version: str, *, stream: bool) -> bytes:
    """The rawPredict body: the caller's Messages body without ``model``."""
    doc: dict[str, Any]
    if call.raw_body is not None:
        doc = orjson.loads(call.raw_body)
    else:
        doc = msgspec.to_builtins(call.request)
    doc.pop("model", None)
    if stream:
        doc["stream"] = True
    else:
        doc.pop("stream", None)
    doc.setdefault("anthropic_version", version)
    return orjson.dumps(doc)


class VertexBackend:
    kind = "vertex"

    def __init__(
        self,
        name: str,
        config: VertexSettings,
        *,
        tokens: GoogleTokens | None = None,
        session: Session | None = None,  # tests inject a scripted one
    ) -> None:
        self.name = name
        self._project = config.project
        self._region = config.region
        self._version = config.anthropic_version
        host = vertex_host(config.region, config.base_url)
        self._pool = session or UpstreamSession.for_backend(
            msgspec.structs.replace(config, base_url=host), {}
        )
        self._tokens = tokens or GoogleTokens(
            name, lambda: load_credentials(config.credentials_file)
        )
        self._client = GoogleAuthSession(self._pool, self._tokens)
        # Models of other publishers (``google/gemini-2.5-flash``): Vertex's OpenAI-compatible
        # endpoint, translated by the OpenAI backend, on the same pool with the same tokens.
        prefix = openapi_prefix(config.project, config.region)
        self._openai = OpenAIBackend(
            name,
            OpenAISettings(base_url=host + prefix),
            session=GoogleAuthSession(self._pool, self._tokens, prefix),
        )

    @staticmethod
    def _headers(call: Call | CountCall) -> dict[str, str]:
        headers = {"x-request-id": call.request_id}
        for key, value in call.passthrough_headers:
            if key.lower() not in HELD_BACK_HEADERS:
                headers[key] = value
        return headers

    async def create(
        self, call: Call, model: str, notes: list[str], *, connect_timeout: float
    ) -> Answer:
        if is_openapi_model(model):
            return await self._openai.create(call, model, notes, connect_timeout=connect_timeout)
        headers: list[tuple[str, str]] = []
        content = await self._client.post_json(
            self.name,
            model_path(self._project, self._region, model, stream=False),
            request_body(call, self._version, stream=False),
            self._headers(call),
            error_from_google,
            connect_timeout,
            headers_out=headers,
        )
        return read_message(self.name, content, tuple(headers))

    def stream(
        self, call: Call, model: str, notes: list[str], *, connect_timeout: float
    ) -> AsyncGenerator[list[StreamItem], None]:
        if is_openapi_model(model):
            return self._openai.stream(call, model, notes, connect_timeout=connect_timeout)
        headers: list[tuple[str, str]] = []
        frames = self._client.post_sse(
            self.name,
            model_path(self._project, self._region, model, stream=True),
            request_body(call, self._version, stream=True),
            self._headers(call),
            error_from_google,
            connect_timeout,
            headers_out=headers,
        )
        return sse_events(self.name, frames, headers)

    async def count_tokens(self, call: CountCall, model: str) -> TokenCount:
        if is_openapi_model(model):
            return await self._openai.count_tokens(call, model)
        # The caller's own count_tokens body (its fields all reach Vertex), with the model.
        if call.raw_body is not None:
            doc = orjson.loads(call.raw_body)
        else:
            doc = orjson.loads(json_encoder.encode(call.request))
        doc["model"] = model
        doc.setdefault("anthropic_version", self._version)
        content = await self._client.post_json(
            self.name,
            count_tokens_path(self._project, self._region),
            orjson.dumps(doc),
            self._headers(call),
            error_from_google,
        )
        return read_token_count(self.name, content)

    async def aclose(self) -> None:
        await self._pool.aclose()
