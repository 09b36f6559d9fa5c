"""Typed configuration: one YAML file, or the environment alone, validated once at start-up.

``load_config(path, environ)`` reads the YAML (``--config`` / ``ANYLLM_CONFIG``), resolves
``env:VAR`` and ``os.environ/VAR`` values, and converts the result into frozen msgspec structs,
so every wrong key or type fails at start with the file, the path inside it and what was
expected (``ConfigError``). Without a file it builds a configuration from ``OPENAI_API_KEY`` /
``OPENAI_BASE_URL`` / ``AZURE_OPENAI_ENDPOINT`` / ``ANTHROPIC_API_KEY`` (+ ``BIG_MODEL`` /
``SMALL_MODEL``), Vertex AI's ``GOOGLE_CLOUD_PROJECT`` (or ``ANTHROPIC_VERTEX_PROJECT_ID``) +
``CLOUD_ML_REGION``, and with nothing at all it serves from the built-in ``demo`` backend.

A chain is written either as a plain list of targets or as ``{targets: [...], policy: {...}}``;
chain policies are merged over the top-level ``policy`` here, so the engine sees one resolved
``Policy`` per chain.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import msgspec
import yaml

from sidecar.backends.registry import KINDS
from sidecar.backends.settings import BackendSettings, HttpSettings
from sidecar.engine.policy import Chain, Group, Policy, Routes, Step, Target


class ConfigError(Exception):
    """Bad configuration: the message names the source, the path inside it and the problem."""


class ServerConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    http: str = "127.0.0.1:8080"
    grpc: str = "127.0.0.1:50051"
    grace: float = 20.0  # seconds in-flight requests get to finish after SIGTERM
    max_body_bytes: int = 32 << 20
    max_message_bytes: int = 32 << 20
    max_concurrent_requests: int = 1024  # beyond it: overloaded_error, not a queue
    auth_tokens: tuple[str, ...] = ()  # when set, both surfaces require one of them
    # Listening beyond loopback without tokens must be asked for (e.g. in a pod whose
    # NetworkPolicy admits nobody else, so that kubelet probes reach the pod IP).
    allow_unauthenticated_non_loopback: bool = False
    # Name what translation dropped or approximated (x-anyllm-degradation, metadata, metric).
    report_degradations: bool = True
    tls: TlsConfig | None = None  # serve both listeners over TLS with this certificate
    # Readiness reflects the upstreams: not ready while every target of the default chain is
    # open in its breaker (see README, "Readiness").
    ready_requires_upstream: bool = False


class TlsConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    cert_file: str
    key_file: str


class LogConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    level: Literal["debug", "info", "warning", "error"] = "info"


class ChainSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    targets: list[Any]  # each a target or a group, converted one by one (see _step)
    policy: dict[str, Any] = {}


class StateConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Breaker and rate-limit state shared with every sidecar configured with the same Redis."""

    redis: str  # redis://host:port/db (rediss:// for TLS)
    key_prefix: str = "anyllm:"
    timeout: float = 0.05  # seconds, the bound of every Redis call

    def __post_init__(self) -> None:
        if not self.redis.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("`redis` must be a redis://, rediss:// or unix:// URL")
        if self.timeout <= 0:
            raise ValueError("`timeout` must be a positive number of seconds")

    def __repr__(self) -> str:  # the URL may hold a password
        return f"StateConfig(redis='***', key_prefix={self.key_prefix!r}, timeout={self.timeout})"


class Route(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    match: str
    chain: str


class RawConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    server: ServerConfig = ServerConfig()
    log: LogConfig = LogConfig()
    policy: dict[str, Any] = {}
    backends: dict[str, dict[str, Any]] = {}
    chains: dict[str, list[Any] | ChainSpec | Any] = {}
    routes: list[Route] = []
    state: StateConfig | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Config:
    server: ServerConfig
    log: LogConfig
    backends: dict[str, BackendSettings]
    routes: Routes
    source: str  # where it came from, for the start-up log
    demo: bool = False  # True when no real upstream is configured
    state: StateConfig | None = None  # shared state through Redis; None: per-pod

    def with_server(self, server: ServerConfig) -> Config:
        return dataclasses.replace(self, server=server)


_ENV_PREFIXES = ("env:", "os.environ/")


def _resolve_env(value: Any, path: str, environ: Mapping[str, str]) -> Any:
    if isinstance(value, dict):
        return {
            k: _resolve_env(v, f"{path}.{k}" if path else str(k), environ) for k, v in value.items()
        }
    if isinstance(value, list):
        return [_resolve_env(v, f"{path}[{i}]", environ) for i, v in enumerate(value)]
    if isinstance(value, str):
        for prefix in _ENV_PREFIXES:
            if value.startswith(prefix):
                var = value[len(prefix) :]
                if var not in environ:
                    raise ConfigError(f"{path}: environment variable {var} is not set")
                return environ[var]
    return value


def _msgspec_path(err: msgspec.ValidationError) -> tuple[str, str]:
    """msgspec says "... - at `$.backends.primary.kind`": the path and the problem, apart."""
    text = str(err)
    match = re.search(r" - at `\$(.*)`$", text)
    if match is None:
        return "", text
    return match.group(1), text[: match.start()]


def build_config(data: Any, source: str, environ: Mapping[str, str] | None = None) -> Config:
    """Validate a parsed YAML document into a ``Config`` (errors name ``source`` and the path)."""
    env = os.environ if environ is None else environ
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level")
    try:
        raw = msgspec.convert(_resolve_env(data, "", env), RawConfig)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    except msgspec.ValidationError as exc:
        path, problem = _msgspec_path(exc)
        raise ConfigError(f"{source}: {path.lstrip('.') or '(top level)'}: {problem}") from None

    _policy(raw.policy, f"{source}: policy")  # errors in the top-level policy name it
    if not raw.backends:
        raise ConfigError(f"{source}: backends: at least one backend is required")
    # Converted one by one so that an error names the entry (msgspec says `[...]` for dict keys).
    backends = {
        name: _backend(doc, f"{source}: backends.{name}", env) for name, doc in raw.backends.items()
    }

    chains: dict[str, Chain] = {}
    specs = raw.chains or {"default": [Target(backend=name) for name in raw.backends]}
    for name, doc in specs.items():
        where = f"{source}: chains.{name}"
        spec = _convert(doc, list[Any] | ChainSpec, where)
        docs = spec.targets if isinstance(spec, ChainSpec) else spec
        overrides = spec.policy if isinstance(spec, ChainSpec) else {}
        if not docs:
            raise ConfigError(f"{where}: a chain needs at least one target")
        at = f"{where}.targets" if isinstance(spec, ChainSpec) else where
        targets = [_step(step, f"{at}[{i}]", backends) for i, step in enumerate(docs)]
        merged = {**raw.policy, **overrides}
        if isinstance(raw.policy.get("breaker"), dict) and isinstance(
            overrides.get("breaker"), dict
        ):
            merged["breaker"] = {**raw.policy["breaker"], **overrides["breaker"]}
        policy = _policy(merged, f"{source}: chains.{name}.policy")
        chains[name] = Chain(name=name, targets=tuple(targets), policy=policy)
    if "default" not in chains:
        raise ConfigError(f"{source}: chains: a chain named `default` is required")

    for name, chain in chains.items():
        overflow = chain.policy.on_context_overflow
        if overflow is not None and overflow not in chains:
            raise ConfigError(
                f"{source}: chains.{name}.policy.on_context_overflow: unknown chain {overflow!r}"
            )
    server = raw.server
    for what in ("http", "grpc"):
        host, _ = parse_address(getattr(server, what), what)
        loopback = host in ("localhost", "::1") or host.startswith("127.")
        if (
            not loopback
            and not server.auth_tokens
            and not server.allow_unauthenticated_non_loopback
        ):
            raise ConfigError(
                f"{source}: server.{what}: {host} is not a loopback address; set "
                "server.auth_tokens, or server.allow_unauthenticated_non_loopback: true "
                "if something else (e.g. a NetworkPolicy) keeps other callers out"
            )
    if server.tls is not None:
        for key in ("cert_file", "key_file"):
            if not Path(getattr(server.tls, key)).is_file():
                raise ConfigError(f"{source}: server.tls.{key}: no such file")
    if server.max_concurrent_requests < 1:
        raise ConfigError(f"{source}: server.max_concurrent_requests: must be at least 1")
    for i, route in enumerate(raw.routes):
        if route.chain not in chains:
            raise ConfigError(f"{source}: routes[{i}].chain: unknown chain {route.chain!r}")

    demo = all(b.kind == "demo" for b in backends.values())
    return Config(
        server=raw.server,
        log=raw.log,
        backends=backends,
        routes=Routes([(r.match, r.chain) for r in raw.routes], chains),
        source=source,
        demo=demo,
        state=raw.state,
    )


def _step(doc: Any, where: str, backends: Mapping[str, Any]) -> Step:
    """One chain step: a target ``{backend: ...}`` or a group ``{group: [...], strategy: ...}``."""
    step: Step = _convert(doc, Group if isinstance(doc, dict) and "group" in doc else Target, where)
    members = step.group if isinstance(step, Group) else (step,)
    for j, target in enumerate(members):
        if target.backend not in backends:
            known = ", ".join(sorted(backends))
            path = f"{where}.group[{j}]" if isinstance(step, Group) else where
            raise ConfigError(
                f"{path}.backend: unknown backend {target.backend!r} (configured: {known})"
            )
    return step


def _backend(doc: dict[str, Any], where: str, environ: Mapping[str, str]) -> BackendSettings:
    """One backend's settings, checked: the kind exists, then its own keys and files."""
    kind = doc.get("kind")
    if kind not in KINDS:
        raise ConfigError(f"{where}.kind: expected one of {', '.join(sorted(KINDS))}, got {kind!r}")
    backend: BackendSettings = _convert(doc, BackendSettings, where)
    if backend.requires_base_url and not getattr(backend, "base_url", ""):
        raise ConfigError(f"{where}.base_url: required for kind {kind}")
    # A kind whose credentials come from the pod's environment says what is missing, here.
    check = getattr(backend, "check_environment", None)
    problem = check(environ) if check is not None else None
    if problem:
        raise ConfigError(f"{where}.{problem}")
    if isinstance(backend, HttpSettings):
        for key in ("ca_file", "client_cert", "client_key", "credentials_file"):
            file = getattr(backend, key, None)
            if file is not None and not Path(file).is_file():
                raise ConfigError(f"{where}.{key}: no such file {file!r}")
        if (backend.client_cert is None) != (backend.client_key is None):
            raise ConfigError(f"{where}: client_cert and client_key go together")
        if backend.max_connections < 0:
            raise ConfigError(f"{where}.max_connections: must be 0 (unbounded) or more")
    return backend


def _policy(data: dict[str, Any], where: str) -> Policy:
    policy: Policy = _convert(data, Policy, where)
    return policy


def _convert(data: Any, into: Any, where: str) -> Any:
    try:
        return msgspec.convert(data, into)
    except msgspec.ValidationError as exc:
        path, problem = _msgspec_path(exc)
        raise ConfigError(f"{where}{path}: {problem}") from None


def config_from_environment(environ: Mapping[str, str]) -> dict[str, Any]:
    """The zero-config mode: a configuration document built from well-known variables."""
    backends: dict[str, Any] = {}
    if environ.get("OPENAI_API_KEY") or environ.get("OPENAI_BASE_URL"):
        backends["openai"] = {
            "kind": "openai",
            "base_url": environ.get("OPENAI_BASE_URL", "https://api.openai.com/v1"),
            "api_key": "env:OPENAI_API_KEY" if environ.get("OPENAI_API_KEY") else "",
        }
    if environ.get("AZURE_OPENAI_ENDPOINT"):
        backends["azure"] = _azure_from_environment(environ)
    if environ.get("ANTHROPIC_API_KEY"):
        backends["anthropic"] = {
            "kind": "anthropic",
            "base_url": environ.get("ANTHROPIC_BASE_URL", "https://api.anthropic.com"),
            "api_key": "env:ANTHROPIC_API_KEY",
        }
    # Claude on Bedrock: a region and a model id (AWS_REGION alone is set in every EKS pod with
    # IRSA, so it does not mean "use Bedrock"); credentials from botocore's chain, and the
    # endpoint override botocore itself reads.
    region = environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION")
    bedrock_model = environ.get("BEDROCK_MODEL")
    if region and bedrock_model:
        backends["bedrock"] = {"kind": "bedrock", "region": region}
        if environ.get("AWS_ENDPOINT_URL_BEDROCK_RUNTIME"):
            backends["bedrock"]["base_url"] = environ["AWS_ENDPOINT_URL_BEDROCK_RUNTIME"]
    # The variables anthropic's AnthropicVertex (and Claude Code) read; the project may also
    # come from GOOGLE_CLOUD_PROJECT, as for every Google client. Credentials: ADC.
    project = environ.get("ANTHROPIC_VERTEX_PROJECT_ID") or environ.get("GOOGLE_CLOUD_PROJECT")
    if project and environ.get("CLOUD_ML_REGION"):
        backends["vertex"] = {"kind": "vertex", "project": project}
        backends["vertex"]["region"] = environ["CLOUD_ML_REGION"]
        backends["vertex"]["base_url"] = environ.get("ANTHROPIC_VERTEX_BASE_URL", "")
    if not backends:
        return {"backends": {"demo": {"kind": "demo"}}}
    doc: dict[str, Any] = {"backends": backends}
    big, small = environ.get("BIG_MODEL"), environ.get("SMALL_MODEL")
    first = next((name for name in ("openai", "azure") if name in backends), None)
    if first is not None and (big or small):
        # anyllm_proxy's simple mode: haiku-class requests to SMALL_MODEL, the rest to BIG_MODEL
        # (on Azure these are deployment names).
        rest = [{"backend": "anthropic"}] if "anthropic" in backends else []
        doc["chains"] = {
            "default": [{"backend": first, "model": big}, *rest]
            if big
            else [{"backend": first}, *rest],
            "small": [{"backend": first, "model": small or big}, *rest],
        }
        doc["routes"] = [{"match": "*haiku*", "chain": "small"}]
    if bedrock_model and "bedrock" in backends:  # the last fallback of every chain
        others = [{"backend": name} for name in backends if name != "bedrock"]
        for targets in doc.setdefault("chains", {"default": others}).values():
            targets.append({"backend": "bedrock", "model": bedrock_model})
    return doc


def _azure_from_environment(environ: Mapping[str, str]) -> dict[str, Any]:
    """Azure OpenAI from the variables the openai SDK's ``AzureOpenAI`` reads; on AKS without a
    key or token, the workload identity the webhook injected."""
    backend: dict[str, Any] = {"kind": "azure", "base_url": environ["AZURE_OPENAI_ENDPOINT"]}
    if environ.get("OPENAI_API_VERSION"):
        backend["api_version"] = environ["OPENAI_API_VERSION"]
    if environ.get("AZURE_OPENAI_API_KEY"):
        backend["api_key"] = "env:AZURE_OPENAI_API_KEY"
    elif environ.get("AZURE_OPENAI_AD_TOKEN"):
        backend["azure_ad_token"] = "env:AZURE_OPENAI_AD_TOKEN"
    elif environ.get("AZURE_FEDERATED_TOKEN_FILE"):
        backend["auth"] = "workload_identity"
    return backend


def load_config(path: str | None, environ: Mapping[str, str] | None = None) -> Config:
    """Load from ``path`` (or ``ANYLLM_CONFIG``), else from the environment alone."""
    env = os.environ if environ is None else environ
    path = path or env.get("ANYLLM_CONFIG") or None
    if path is None:
        return build_config(config_from_environment(env), "environment", env)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    return build_config(data, path, env)


def parse_address(value: str, what: str) -> tuple[str, int]:
    """``host:port`` (``[::1]:port`` for IPv6) into its parts."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ConfigError(f"server.{what}: expected host:port, got {value!r}")
    return host.strip("[]"), int(port)
