"""Configuration: the documented shape loads; every mistake names the file, path and problem."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sidecar.config import ConfigError, build_config, load_config
from sidecar.engine.policy import Group, Target

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
    *(
        pytest.param(
            {"backends": {"p": {"kind": "demo"}, "q": {"kind": "demo"}}, **doc},
            expected,
            id=name,
        )
        for name, doc, expected in [
            (
                "group-unknown-backend",
                {"chains": {"default": [{"group": [{"backend": "p"}, {"backend": "zz"}]}]}},
                "chains.default[0].group[1].backend: unknown backend 'zz'",
            ),
            (
                "group-unknown-key",
                {"chains": {"default": [{"group": [{"backend": "p"}], "stratgy": "x"}]}},
                "chains.default[0]: Object contains unknown field `stratgy`",
            ),
            (
                "group-bad-strategy",
                {"chains": {"default": [{"group": [{"backend": "p"}], "strategy": "random"}]}},
                "chains.default[0].strategy",
            ),
            (
                "group-empty",
                {"chains": {"default": [{"group": []}]}},
                "a group needs at least one target",
            ),
            (
                "group-member-unknown-key",
                {"chains": {"default": {"targets": [{"group": [{"backend": "p", "wieght": 2}]}]}}},
                "chains.default.targets[0].group[0]: Object contains unknown field `wieght`",
            ),
            (
                "weight-not-positive",
                {"chains": {"default": [{"group": [{"backend": "p", "weight": 0}]}]}},
                "`weight` must be a positive number",
            ),
            (
                "rpm-zero",
                {"chains": {"default": [{"backend": "p", "rpm": 0}]}},
                "chains.default[0]: `rpm` must be at least 1",
            ),
            (
                "hedge-budget-out-of-range",
                {
                    "chains": {
                        "default": {"targets": [{"backend": "p"}], "policy": {"hedge_budget": 0}}
                    }
                },
                "chains.default.policy: `hedge_budget` must be in (0, 1]",
            ),
            (
                "hedge-after-negative",
                {"policy": {"hedge_after": -1}},
                "policy: `hedge_after` must be a positive number of seconds",
            ),
            ("state-unknown-key", {"state": {"redis": "redis://x", "prefix": "a"}}, "state"),
            ("state-bad-url", {"state": {"redis": "http://x"}}, "`redis` must be a redis://"),
            (
                "state-timeout",
                {"state": {"redis": "redis://127.0.0.1:1", "timeout": 0}},
                "`timeout` must be a positive",
            ),
            ("server-unknown-key", {"server": {"ready_requires_upstreams": True}}, "server"),
        ]
    ),
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
    pytest.param(
        {"GOOGLE_CLOUD_PROJECT": "p", "CLOUD_ML_REGION": "us-east5"}, {"vertex"}, False, id="vertex"
    ),
    pytest.param(
        {"ANTHROPIC_VERTEX_PROJECT_ID": "p", "CLOUD_ML_REGION": "global", "ANTHROPIC_API_KEY": "k"},
        {"anthropic", "vertex"},
        False,
        id="anthropic-and-vertex",
    ),
    pytest.param({"GOOGLE_CLOUD_PROJECT": "p"}, {"demo"}, True, id="vertex-needs-a-region"),
]


@pytest.mark.parametrize(("env", "backends", "demo"), ENV)
def test_zero_config_from_environment(env: dict[str, str], backends: set[str], demo: bool) -> None:
    config = load_config(None, env)
    assert set(config.backends) == backends
    assert config.demo is demo
    assert [t.backend for t in config.routes.chains["default"].targets] == sorted(
        backends, key=["openai", "azure", "anthropic", "bedrock", "vertex", "demo"].index
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


def test_groups_limits_hedging_and_state_load() -> None:
    doc = {
        "server": {"ready_requires_upstream": True},
        "backends": {"eu": {"kind": "demo"}, "us": {"kind": "demo"}, "last": {"kind": "demo"}},
        "state": {"redis": "redis://:hunter2@127.0.0.1:6379/0"},
        "chains": {
            "default": {
                "targets": [
                    {"group": [{"backend": "eu"}, {"backend": "us", "weight": 2, "rpm": 60}]},
                    {"backend": "last", "tpm": 1000},
                ],
                "policy": {"hedge_after": 1.5},
            },
            "latency": [{"group": [{"backend": "eu"}, {"backend": "us"}], "strategy": "latency"}],
        },
    }
    config = build_config(doc, "conf.yaml", {})
    chain = config.routes.chains["default"]
    group, last = chain.targets
    assert isinstance(group, Group) and group.strategy == "weighted"
    assert [(t.backend, t.weight, t.rpm) for t in group.group] == [
        ("eu", 1.0, None),
        ("us", 2.0, 60),
    ]
    assert isinstance(last, Target) and last.tpm == 1000
    assert [t.backend for t in chain.members()] == ["eu", "us", "last"]
    assert (chain.policy.hedge_after, chain.policy.hedge_budget) == (1.5, 0.1)
    assert config.server.ready_requires_upstream is True
    assert config.state is not None
    assert (config.state.key_prefix, config.state.timeout) == ("anyllm:", 0.05)
    assert "hunter2" not in repr(config.state)
    assert config.routes.chains["latency"].targets[0].strategy == "latency"  # type: ignore[union-attr]


def test_the_traffic_example_loads() -> None:
    env = {k: "x" for k in ("VLLM_KEY", "EU_KEY", "US_KEY", "ANTHROPIC_API_KEY")}
    config = load_config(str(Path(__file__).parent.parent / "config" / "traffic.yaml"), env)
    chain = config.routes.chains["default"]
    assert [type(step).__name__ for step in chain.targets] == ["Group", "Group", "Target"]
    assert len(chain.members()) == 6 and chain.policy.hedge_after == 1.5
    assert config.state is not None and config.server.ready_requires_upstream
