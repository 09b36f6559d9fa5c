"""Configuration: the documented shape loads; every mistake names the file, path and problem."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sidecar.config import ConfigError, build_config, load_config

GOOD = """
server: {http: "127.0.0.1:8080", grpc: "127.0.0.1:50051"}
policy: {timeout: 60, ttft_timeout: 5}
backends:
  primary:   {kind: openai, base_url: "http://127.0.0.1:9001/v1", api_key: "env:PRIMARY_KEY"}
  secondary: {kind: anthropic, base_url: "https://api.anthropic.com", api_key: "os.environ/ANT"}
chains:
  default:
    - {backend: primary, model: gpt-4o}
    - {backend: secondary}
  batch:
    targets: [{backend: primary}]
    policy: {ttft_timeout: 60}
routes:
  - {match: "claude-*haiku*", chain: batch}
"""


def test_documented_shape_loads(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(GOOD)
    config = load_config(str(path), {"PRIMARY_KEY": "sk-1", "ANT": "sk-2"})
    assert config.backends["primary"].api_key == "sk-1"
    assert config.backends["secondary"].api_key == "sk-2"
    assert config.routes.chain_for("claude-3-5-haiku-latest").name == "batch"
    assert config.routes.chain_for("claude-sonnet-4").name == "default"
    assert config.routes.chain_for("batch").name == "batch"
    batch = config.routes.chains["batch"].policy
    assert (batch.timeout, batch.ttft_timeout) == (60, 60)  # chain policy over the top level
    assert config.routes.chains["default"].policy.ttft_timeout == 5
    assert "sk-1" not in repr(config.backends["primary"])
    assert not config.demo


BAD = [
    pytest.param(
        {"backends": {"p": {"kind": "openai"}}}, "backends.p.base_url: required", id="no-base-url"
    ),
    pytest.param({"backends": {"p": {"kind": "nope"}}}, "backends.p.kind", id="unknown-kind"),
    pytest.param(
        {"backends": {"p": {"kind": "demo", "colour": 1}}}, "colour", id="unknown-backend-key"
    ),
    pytest.param({"bogus": 1}, "bogus", id="unknown-top-level-key"),
    pytest.param(
        {"backends": {"p": {"kind": "demo"}}, "chains": {"default": [{"backend": "q"}]}},
        "chains.default[0].backend: unknown backend 'q'",
        id="unknown-backend-in-chain",
    ),
    pytest.param(
        {"backends": {"p": {"kind": "demo"}}, "chains": {"x": [{"backend": "p"}]}},
        "a chain named `default` is required",
        id="no-default-chain",
    ),
    pytest.param(
        {"backends": {"p": {"kind": "demo"}}, "routes": [{"match": "*", "chain": "zz"}]},
        "routes[0].chain: unknown chain 'zz'",
        id="route-to-unknown-chain",
    ),
    pytest.param(
        {"backends": {"p": {"kind": "demo", "api_key": "env:MISSING_VAR"}}},
        "backends.p.api_key: environment variable MISSING_VAR is not set",
        id="missing-env",
    ),
    pytest.param(
        {"backends": {"p": {"kind": "demo"}}, "policy": {"timeout": "soon"}},
        "policy.timeout",
        id="policy-type",
    ),
    pytest.param(
        {"backends": {"p": {"kind": "demo"}}, "policy": {"retires": 2}},
        "retires",
        id="policy-unknown-key",
    ),
    pytest.param(
        {"backends": {"p": {"kind": "demo"}}, "policy": {"timeout": -1}},
        "timeout",
        id="policy-negative",
    ),
    pytest.param({"backends": {}}, "at least one backend", id="no-backends"),
]


@pytest.mark.parametrize(("doc", "expected"), BAD)
def test_bad_config_names_the_path(doc: object, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        build_config(doc, "conf.yaml", {})
    assert str(info.value).startswith("conf.yaml: ")
    assert expected in str(info.value)


def test_unreadable_and_invalid_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(str(tmp_path / "missing.yaml"), {})
    bad = tmp_path / "bad.yaml"
    bad.write_text("backends: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(str(bad), {})


ENV = [
    pytest.param({}, {"demo"}, True, id="nothing-demo"),
    pytest.param({"OPENAI_API_KEY": "sk"}, {"openai"}, False, id="openai"),
    pytest.param({"ANTHROPIC_API_KEY": "sk"}, {"anthropic"}, False, id="anthropic"),
    pytest.param(
        {"OPENAI_BASE_URL": "http://127.0.0.1:1/v1", "ANTHROPIC_API_KEY": "k"},
        {"openai", "anthropic"},
        False,
        id="both",
    ),
    pytest.param(
        {"AZURE_OPENAI_ENDPOINT": "https://n.openai.azure.com", "AZURE_OPENAI_API_KEY": "k"},
        {"azure"},
        False,
        id="azure",
    ),
    pytest.param(
        {
            "AZURE_OPENAI_ENDPOINT": "https://n.openai.azure.com",
            "AZURE_OPENAI_AD_TOKEN": "t",
            "OPENAI_API_KEY": "sk",
            "ANTHROPIC_API_KEY": "k",
        },
        {"openai", "azure", "anthropic"},
        False,
        id="all-three",
    ),
    pytest.param(
        {"AWS_REGION": "us-east-1", "BEDROCK_MODEL": "us.anthropic.claude-sonnet-4-v1:0"},
        {"bedrock"},
        False,
        id="bedrock",
    ),
    pytest.param({"AWS_REGION": "us-east-1"}, {"demo"}, True, id="aws-region-alone-is-not-bedrock"),
    pytest.param(
        {"ANTHROPIC_API_KEY": "k", "AWS_DEFAULT_REGION": "eu-west-1", "BEDROCK_MODEL": "m"},
        {"anthropic", "bedrock"},
        False,
        id="anthropic-then-bedrock",
    ),
]


@pytest.mark.parametrize(("env", "backends", "demo"), ENV)
def test_zero_config_from_environment(env: dict[str, str], backends: set[str], demo: bool) -> None:
    config = load_config(None, env)
    assert set(config.backends) == backends
    assert config.demo is demo
    assert [t.backend for t in config.routes.chains["default"].targets] == sorted(
        backends, key=["openai", "azure", "anthropic", "bedrock", "demo"].index
    )


def test_bedrock_from_the_environment() -> None:
    env = {
        "OPENAI_API_KEY": "sk",
        "BIG_MODEL": "gpt-4o",
        "AWS_REGION": "us-west-2",
        "BEDROCK_MODEL": "global.anthropic.claude-x-v1:0",
        "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": "https://vpce.example",
    }
    config = load_config(None, env)
    bedrock = config.backends["bedrock"]
    assert (bedrock.region, bedrock.endpoint) == ("us-west-2", "https://vpce.example")  # type: ignore[union-attr]
    for name in ("default", "small"):
        last = config.routes.chains[name].targets[-1]
        assert (last.backend, last.model) == ("bedrock", "global.anthropic.claude-x-v1:0")


def test_big_and_small_model() -> None:
    env = {"OPENAI_API_KEY": "sk", "BIG_MODEL": "gpt-4o", "SMALL_MODEL": "gpt-4o-mini"}
    config = load_config(None, env)
    assert config.routes.chain_for("claude-3-haiku").targets[0].model == "gpt-4o-mini"
    assert config.routes.chain_for("claude-sonnet-4").targets[0].model == "gpt-4o"


AZURE_ENV = [
    pytest.param(
        {"AZURE_OPENAI_API_KEY": "k", "OPENAI_API_VERSION": "2024-10-21"},
        {"api_key": "k", "api_version": "2024-10-21", "auth": None},
        id="key-deployments",
    ),
    pytest.param(
        {"AZURE_OPENAI_AD_TOKEN": "t"}, {"azure_ad_token": "t", "api_version": ""}, id="token-v1"
    ),
    pytest.param(
        {
            "AZURE_FEDERATED_TOKEN_FILE": "/var/run/secrets/azure/tokens/azure-identity-token",
            "AZURE_CLIENT_ID": "c",
            "AZURE_TENANT_ID": "t",
        },
        {"auth": "workload_identity", "api_key": ""},
        id="aks-workload-identity",
    ),
]


@pytest.mark.parametrize(("env", "expected"), AZURE_ENV)
def test_zero_config_azure(env: dict[str, str], expected: dict[str, Any]) -> None:
    env = {"AZURE_OPENAI_ENDPOINT": "https://n.openai.azure.com", "BIG_MODEL": "gpt-4o", **env}
    config = load_config(None, env)
    azure = config.backends["azure"]
    for key, value in expected.items():
        assert getattr(azure, key) == value
    assert config.routes.chain_for("claude-sonnet-4").targets[0].model == "gpt-4o"


def test_zero_config_azure_without_credentials_names_them() -> None:
    with pytest.raises(ConfigError, match=r"environment: backends\.azure: exactly one of"):
        load_config(None, {"AZURE_OPENAI_ENDPOINT": "https://n.openai.azure.com"})


def test_the_example_configuration_loads() -> None:
    root = Path(__file__).resolve().parent.parent
    config = load_config(
        str(root / "config" / "example.yaml"), {"VLLM_KEY": "k", "ANTHROPIC_API_KEY": "a"}
    )
    assert config.routes.chain_for("claude-3-5-haiku").name == "fast"
    assert config.routes.chains["fast"].policy.retries == 2


LISTEN = [
    pytest.param(
        {"http": "0.0.0.0:8080"}, "server.http: 0.0.0.0 is not a loopback", id="any-no-token"
    ),
    pytest.param({"grpc": "10.1.2.3:50051"}, "server.grpc: 10.1.2.3", id="pod-ip-no-token"),
    pytest.param({"http": "0.0.0.0:8080", "auth_tokens": ["t"]}, None, id="any-with-token"),
    pytest.param(
        {"http": "0.0.0.0:8080", "allow_unauthenticated_non_loopback": True}, None, id="opt-in"
    ),
    pytest.param({"http": "localhost:8080", "grpc": "[::1]:1"}, None, id="loopback-names"),
]


@pytest.mark.parametrize(("server", "error"), LISTEN)
def test_listening_beyond_loopback_needs_tokens_or_an_opt_in(
    server: dict[str, object], error: str | None
) -> None:
    doc = {"server": server, "backends": {"d": {"kind": "demo"}}}
    if error is None:
        build_config(doc, "c.yaml", {})
        return
    with pytest.raises(ConfigError, match=error):
        build_config(doc, "c.yaml", {})
