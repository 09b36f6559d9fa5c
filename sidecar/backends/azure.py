"""Azure OpenAI: the OpenAI Chat Completions backend with Azure's URLs, auth and errors.

How it works
------------
Requests, answers and streams are translated exactly as for OpenAI (this class is an
``OpenAIBackend``); what differs is three seams of that class and the error mapping:

``_path``
    With ``api_version`` set, the deployments API:
    ``{endpoint}/openai/deployments/{deployment}/chat/completions?api-version=V``, where the
    deployment is the target's ``model`` (percent-encoded). Without it, the v1 API:
    ``{endpoint}/openai/v1/chat/completions`` with the model (the deployment name) in the body.
    An endpoint given with a trailing ``/openai`` or ``/openai/v1`` is not doubled.
auth
    ``api_key`` → an ``api-key`` header on the pooled session; ``azure_ad_token`` → a static
    ``Authorization: Bearer``; ``auth: workload_identity`` → a bearer token from
    ``entra.WorkloadIdentityTokens``, asked for per request (``_headers``) and refreshed there
    before it expires without holding requests up; a 401 drops it, so the next request
    exchanges the federated token again.
``to_error``
    ``translate.upstream_errors.error_from_azure``: the content-filter 400 says that the
    content filter refused the request (a 400: the chain stops), ``retry-after-ms`` /
    ``retry-after`` and, for a 429 without them, ``x-ratelimit-reset-*`` give the wait.

Azure's stream specifics need nothing here: the chunk without ``choices`` that carries
``prompt_filter_results`` is read as an empty chunk by the stream translator (the commit point
is the first content, so it does not commit the stream), and ``finish_reason:
content_filter`` is stop reason ``refusal`` in both the whole answer and the stream.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from urllib.parse import quote

import msgspec

from sidecar.errors import UpstreamError
from sidecar.model import Call
from sidecar.translate.upstream_errors import error_from_azure

from .entra import WorkloadIdentityTokens
from .http import ErrorMapper
from .openai import OpenAIBackend
from .settings import WORKLOAD_IDENTITY_ENV, AzureSettings, OpenAISettings


def endpoint_of(base_url: str) -> str:
    """The resource endpoint, without a trailing ``/``, ``/openai`` or ``/openai/v1``."""
    endpoint = base_url.rstrip("/")
    for suffix in ("/openai/v1", "/openai"):
        if endpoint.endswith(suffix):
            return endpoint[: -len(suffix)]
    return endpoint


class AzureBackend(OpenAIBackend):
    kind = "azure"
    to_error: ErrorMapper = staticmethod(error_from_azure)

    def __init__(
        self, name: str, config: AzureSettings, environ: Mapping[str, str] | None = None
    ) -> None:
        env = os.environ if environ is None else environ
        self._api_version = config.api_version
        self._query = f"?api-version={quote(config.api_version, safe='')}"
        self._tokens: WorkloadIdentityTokens | None = None
        if config.workload_identity:

            def setting(key: str) -> str:
                return str(getattr(config, key) or env.get(WORKLOAD_IDENTITY_ENV[key], ""))

            self.to_error = self._error_dropping_token
            self._tokens = WorkloadIdentityTokens(
                name,
                authority=setting("authority_host"),
                tenant_id=setting("tenant_id"),
                client_id=setting("client_id"),
                token_file=setting("federated_token_file"),
                scope=config.token_scope,
            )
        super().__init__(
            name, msgspec.structs.replace(config, base_url=endpoint_of(config.base_url))
        )

    def _session_headers(self, config: OpenAISettings) -> dict[str, str]:
        assert isinstance(config, AzureSettings)
        if config.api_key:
            return {"api-key": config.api_key}
        if config.azure_ad_token:
            return {"authorization": f"Bearer {config.azure_ad_token}"}
        return {}  # workload identity: a fresh token per request

    def _path(self, model: str) -> str:
        if self._api_version:
            deployment = quote(model, safe="")
            return f"/openai/deployments/{deployment}/chat/completions{self._query}"
        return "/openai/v1/chat/completions"

    def _error_dropping_token(
        self, status: int, body: bytes, headers: Mapping[str, str]
    ) -> UpstreamError:
        if status == 401 and self._tokens is not None:
            self._tokens.invalidate()  # revoked or expired early: exchange again next time
        return error_from_azure(status, body, headers)

    async def _headers(self, call: Call) -> dict[str, str]:
        headers = {"x-request-id": call.request_id}
        if self._tokens is not None:
            headers["authorization"] = "Bearer " + await self._tokens.token()
        return headers

    async def aclose(self) -> None:
        if self._tokens is not None:
            await self._tokens.aclose()
        await super().aclose()
