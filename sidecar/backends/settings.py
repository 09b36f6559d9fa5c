"""How one backend is configured: the ``backends.NAME`` mapping of the YAML, one type per kind.

``BackendSettings`` is a tagged union on ``kind``: each kind's settings are their own frozen
struct that rejects unknown keys, so a wrong key names its path at start-up. What every HTTP
backend shares (extra headers, pool size, TLS) is ``HttpSettings``; a kind adds its own fields.
The composition root converts the YAML into these structs and hands one to the kind's
constructor (``registry.py``); backends never read configuration files themselves.

A new kind: a struct here (added to ``BackendSettings``), a module, one line in the registry.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar, Literal
from urllib.parse import urlsplit

import msgspec


class HttpSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What every backend that talks HTTP to an upstream shares."""

    # Whether the kind has no usable default ``base_url`` (config says so at start-up).
    requires_base_url: ClassVar[bool] = True

    base_url: str = ""
    headers: dict[str, str] = {}
    # The pool of upstream connections. 0 = unbounded per host: the sidecar's concurrency
    # limit (server.max_concurrent_requests) is then the only cap.
    max_connections: int = 0
    # TLS to the upstream: a private CA, and a client certificate for mutual TLS.
    ca_file: str | None = None
    client_cert: str | None = None
    client_key: str | None = None

    @property
    def kind(self) -> str:
        return str(type(self).__struct_config__.tag)

    def __repr__(self) -> str:  # never print a key
        return f"{type(self).__name__}(base_url={self.base_url!r})"


class OpenAISettings(HttpSettings, frozen=True, tag="openai", tag_field="kind"):
    api_key: str = ""
    # OpenAI-compatible dialect switches (driven by config rather than guessed from names).
    max_completion_tokens: bool = False  # send max_completion_tokens (o-series) not max_tokens
    system_role: Literal["system", "developer"] = "system"
    drop_sampling: bool = False  # drop temperature / top_p for models that reject them
    supports_top_k: bool = False  # pass top_k (vLLM accepts it)
    stream_usage: bool = True  # ask for usage in streams (stream_options.include_usage)
    # Send reasoning_effort for thinking: only reasoning models take it (OpenAI and LiteLLM
    # reject it for others), so it is asked for rather than assumed.
    reasoning_effort: bool = False


class AnthropicSettings(HttpSettings, frozen=True, tag="anthropic", tag_field="kind"):
    api_key: str = ""
    anthropic_version: str = "2023-06-01"  # sent when the caller sent none


class AzureSettings(OpenAISettings, frozen=True, tag="azure", tag_field="kind"):
    """Azure OpenAI: ``base_url`` is the resource endpoint (``https://NAME.openai.azure.com``).

    With ``api_version`` the deployments API is called (the target's ``model`` is the
    deployment); without it the v1 API. Exactly one way to authenticate: ``api_key`` (sent as
    ``api-key``), a static Microsoft Entra ID ``azure_ad_token``, or ``auth: workload_identity``
    (AKS: the federated token file exchanged at Entra ID; the four ``AZURE_*`` variables the
    webhook injects, each overridable here). ``auth`` may also name the key or token explicitly.
    """

    api_version: str = ""
    azure_ad_token: str = ""
    auth: Literal["api_key", "azure_ad_token", "workload_identity"] | None = None
    # Workload identity; empty: AZURE_CLIENT_ID / AZURE_TENANT_ID / AZURE_AUTHORITY_HOST /
    # AZURE_FEDERATED_TOKEN_FILE from the environment (the authority defaults to Azure public).
    client_id: str = ""
    tenant_id: str = ""
    authority_host: str = ""
    federated_token_file: str = ""
    token_scope: str = "https://cognitiveservices.azure.com/.default"

    def __post_init__(self) -> None:
        given = [name for name in ("api_key", "azure_ad_token") if getattr(self, name)]
        if self.auth is None:
            if len(given) != 1:
                raise ValueError(
                    "exactly one of `api_key`, `azure_ad_token` or `auth: workload_identity` "
                    f"is required (got {', '.join(given) or 'none'})"
                )
        elif given != ([] if self.auth == "workload_identity" else [self.auth]):
            raise ValueError(
                f"`auth: {self.auth}` contradicts the credentials given "
                f"({', '.join(given) or 'none'}): set exactly the one it names"
            )

    @property
    def workload_identity(self) -> bool:
        return self.auth == "workload_identity"

    def check_environment(self, environ: Mapping[str, str]) -> str | None:
        """What workload identity is missing from config and ``environ``, as ``key: problem``."""
        if not self.workload_identity:
            return None
        for key, var in WORKLOAD_IDENTITY_ENV.items():
            if key != "authority_host" and not (getattr(self, key) or environ.get(var)):
                return f"{key}: auth: workload_identity needs it, or {var} in the environment"
        try:
            authority_url(self.authority_host or environ.get("AZURE_AUTHORITY_HOST", ""))
        except ValueError as exc:
            return f"authority_host: {exc}"
        return None


# Settings key -> the variable the AKS workload identity webhook injects into the pod.
WORKLOAD_IDENTITY_ENV = {
    "client_id": "AZURE_CLIENT_ID",
    "tenant_id": "AZURE_TENANT_ID",
    "authority_host": "AZURE_AUTHORITY_HOST",
    "federated_token_file": "AZURE_FEDERATED_TOKEN_FILE",
}


PUBLIC_AUTHORITY = "https://login.microsoftonline.com"
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def authority_url(authority: str) -> str:
    """``AZURE_AUTHORITY_HOST`` as a base URL: https, or http for a loopback test endpoint."""
    authority = (authority or PUBLIC_AUTHORITY).rstrip("/")
    if "://" not in authority:
        authority = "https://" + authority
    parts = urlsplit(authority)
    if parts.scheme != "https" and not (parts.scheme == "http" and parts.hostname in _LOOPBACK):
        raise ValueError(f"the Entra authority must be an https URL, got {authority!r}")
    return authority


class BedrockSettings(HttpSettings, frozen=True, tag="bedrock", tag_field="kind"):
    """Claude on AWS Bedrock: SigV4-signed InvokeModel calls (``backends/bedrock.py``)."""

    # The endpoint follows from the region (``bedrock-runtime.{region}.amazonaws.com``).
    requires_base_url: ClassVar[bool] = False

    region: str
    # Credentials: botocore's default chain (environment, shared config / ``profile``, web
    # identity (IRSA), container credentials (EKS Pod Identity), IMDS), unless static keys are
    # given here (each may be ``env:VAR``).
    profile: str | None = None
    aws_access_key_id: str = ""
    aws_secret_access_key: str = ""
    aws_session_token: str = ""
    # What anthropic 2.15's AnthropicBedrock client sends when the caller sets none
    # (anthropic._constants.ANTHROPIC_API_VERSION); older SDKs sent "bedrock-2023-05-31".
    anthropic_version: str = "2026-10-21"

    def __post_init__(self) -> None:
        if not self.region:
            raise ValueError("`region` must be an AWS region such as us-east-1")
        if bool(self.aws_access_key_id) != bool(self.aws_secret_access_key):
            raise ValueError("`aws_access_key_id` and `aws_secret_access_key` go together")
        if self.aws_session_token and not self.aws_access_key_id:
            raise ValueError("`aws_session_token` needs `aws_access_key_id`")
        if self.profile and self.aws_access_key_id:
            raise ValueError("`profile` and static keys exclude each other")

    @property
    def endpoint(self) -> str:
        """``base_url``, or the region's Bedrock runtime endpoint."""
        return self.base_url or f"https://bedrock-runtime.{self.region}.amazonaws.com"

    def __repr__(self) -> str:  # never print a key
        return f"BedrockSettings(region={self.region!r}, endpoint={self.endpoint!r})"


class DemoSettings(
    msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag="demo", tag_field="kind"
):
    """The built-in backend that answers locally (no upstream)."""

    requires_base_url: ClassVar[bool] = False
    api_key: str = ""  # accepted and ignored, so a demo entry can stand in for a real one

    @property
    def kind(self) -> str:
        return "demo"


BackendSettings = (
    OpenAISettings | AzureSettings | AnthropicSettings | BedrockSettings | DemoSettings
)
