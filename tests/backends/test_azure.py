"""The Azure OpenAI backend in-process: its config, the URLs of both API styles, the headers of
each auth mode, Azure's answers and errors — against the fake Azure upstream
(``tests.upstream.azure_server``) served on the test's own event loop (the token source itself:
``test_entra.py``)."""

from __future__ import annotations

from typing import Any

import pytest

from sidecar.backends import build_backend
from sidecar.backends.azure import AzureBackend, endpoint_of
from sidecar.backends.settings import AzureSettings, authority_url
from sidecar.config import ConfigError, build_config
from sidecar.engine.classify import Verdict, classify
from sidecar.engine.policy import Policy
from sidecar.errors import FailureKind, UpstreamError
from sidecar.model import (
    Call,
    ContentBlockDelta,
    InputMessage,
    MessageDelta,
    MessagesRequest,
    MessageStart,
    MessageStop,
    StreamEvent,
    TextDelta,
)
from tests.backends.azure_fake import KEY, SECRET, Fake, fake
from tests.upstream.azure_server import content_filter_400, mint_token, rate_limited

__all__ = ["fake"]  # the fixture


def call(text: str = "hello azure") -> Call:
    request = MessagesRequest(
        model="claude-x", max_tokens=16, messages=[InputMessage(role="user", content=text)]
    )
    return Call(request=request, request_id="req-az-1")


def backend(fake: Fake, env: dict[str, str] | None = None, **settings: Any) -> AzureBackend:
    if not {"api_key", "azure_ad_token", "auth"} & set(settings):
        settings["api_key"] = KEY
    config = AzureSettings(base_url=fake.url, **settings)
    return AzureBackend("az", config, environ=env or {})


async def events_of(b: AzureBackend, model: str = "gpt-4o") -> list[StreamEvent]:
    out: list[StreamEvent] = []
    stream = b.stream(call(), model, [], connect_timeout=5)
    try:
        async for batch in stream:
            out += batch
    finally:
        await stream.aclose()
    return out


def text_of(events: list[StreamEvent]) -> str:
    return "".join(
        e.delta.text
        for e in events
        if isinstance(e, ContentBlockDelta) and isinstance(e.delta, TextDelta)
    )


# --------------------------------------------------------------------------- configuration

BASE = {"kind": "azure", "base_url": "https://name.openai.azure.com"}
GOOD = [
    pytest.param({"api_key": "k", "api_version": "2024-10-21"}, id="api-key-deployments"),
    pytest.param({"api_key": "k"}, id="api-key-v1"),
    pytest.param({"azure_ad_token": "t"}, id="static-token"),
    pytest.param({"auth": "api_key", "api_key": "k"}, id="auth-names-the-key"),
    pytest.param({"auth": "workload_identity"}, id="workload-identity-from-env"),
]
BAD = [
    pytest.param({}, "exactly one of `api_key`", id="no-credentials"),
    pytest.param({"api_key": "k", "azure_ad_token": "t"}, "got api_key, azure_ad_token", id="two"),
    pytest.param(
        {"auth": "workload_identity", "api_key": "k"}, "contradicts", id="workload-and-key"
    ),
    pytest.param({"auth": "azure_ad_token", "api_key": "k"}, "contradicts", id="wrong-name"),
    pytest.param({"auth": "managed_identity"}, "auth", id="unknown-auth"),
    pytest.param({"api_key": "k", "deployment": "x"}, "deployment", id="unknown-key"),
    pytest.param(
        {"auth": "workload_identity", "authority_host": "http://login.example"},
        "authority_host: the Entra authority must be an https URL",
        id="plain-http-authority",
    ),
]
WI_ENV = {
    "AZURE_CLIENT_ID": "c",
    "AZURE_TENANT_ID": "t",
    "AZURE_FEDERATED_TOKEN_FILE": "/var/run/secrets/azure/tokens/azure-identity-token",
}


@pytest.mark.parametrize("fields", GOOD)
def test_config_accepts(fields: dict[str, Any]) -> None:
    config = build_config({"backends": {"az": {**BASE, **fields}}}, "test.yaml", WI_ENV)
    assert config.backends["az"].kind == "azure"
    assert "k" not in repr(config.backends["az"]) and "'t'" not in repr(config.backends["az"])


@pytest.mark.parametrize(("fields", "says"), BAD)
def test_config_rejects_with_the_path(fields: dict[str, Any], says: str) -> None:
    with pytest.raises(ConfigError) as info:
        build_config({"backends": {"az": {**BASE, **fields}}}, "test.yaml", WI_ENV)
    assert "test.yaml: backends.az" in str(info.value)
    assert says in str(info.value)


@pytest.mark.parametrize("missing", sorted(set(WI_ENV)))
def test_workload_identity_names_what_the_environment_lacks(missing: str) -> None:
    env = {k: v for k, v in WI_ENV.items() if k != missing}
    doc = {"backends": {"az": {**BASE, "auth": "workload_identity"}}}
    with pytest.raises(ConfigError, match=f"backends.az.[a-z_]+: .*{missing}"):
        build_config(doc, "test.yaml", env)
    key = {
        v: k
        for k, v in {
            "client_id": "AZURE_CLIENT_ID",
            "tenant_id": "AZURE_TENANT_ID",
            "federated_token_file": "AZURE_FEDERATED_TOKEN_FILE",
        }.items()
    }[missing]
    doc["backends"]["az"][key] = "from-config"  # the config may give it instead
    assert build_config(doc, "test.yaml", env).backends["az"].kind == "azure"


@pytest.mark.parametrize(
    ("base_url", "endpoint"),
    [
        pytest.param("https://n.openai.azure.com", "https://n.openai.azure.com", id="plain"),
        pytest.param("https://n.openai.azure.com/", "https://n.openai.azure.com", id="slash"),
        pytest.param("https://n.openai.azure.com/openai", "https://n.openai.azure.com", id="o"),
        pytest.param(
            "https://n.openai.azure.com/openai/v1/", "https://n.openai.azure.com", id="v1"
        ),
        pytest.param("https://gw.example/azure", "https://gw.example/azure", id="gateway-path"),
    ],
)
def test_endpoint_is_not_doubled(base_url: str, endpoint: str) -> None:
    assert endpoint_of(base_url) == endpoint


@pytest.mark.parametrize(
    ("authority", "url"),
    [
        pytest.param("", "https://login.microsoftonline.com", id="default-public-cloud"),
        pytest.param(
            "https://login.microsoftonline.us/", "https://login.microsoftonline.us", id="gov"
        ),
        pytest.param(
            "login.partner.microsoftonline.cn",
            "https://login.partner.microsoftonline.cn",
            id="bare",
        ),
        pytest.param("http://127.0.0.1:9", "http://127.0.0.1:9", id="loopback-http"),
    ],
)
def test_authority_url(authority: str, url: str) -> None:
    assert authority_url(authority) == url


def test_authority_must_be_https_beyond_loopback() -> None:
    with pytest.raises(ValueError, match="https"):
        authority_url("http://login.example.com")


async def test_the_registry_builds_azure() -> None:
    b = build_backend("az", AzureSettings(base_url="https://n.openai.azure.com", api_key="k"))
    assert isinstance(b, AzureBackend) and b.kind == "azure"
    await b.aclose()


# --------------------------------------------------------------------------- URLs and auth

URLS = [
    pytest.param(
        {"api_version": "2024-10-21"},
        "/openai/deployments/gpt-4o/chat/completions",
        "api-version=2024-10-21",
        id="deployments",
    ),
    pytest.param({}, "/openai/v1/chat/completions", "", id="v1"),
]


@pytest.mark.parametrize(("settings", "path", "query"), URLS)
@pytest.mark.parametrize("stream", [False, True], ids=["create", "stream"])
async def test_urls_of_both_styles(
    fake: Fake, settings: dict[str, Any], path: str, query: str, stream: bool
) -> None:
    b = backend(fake, **settings)
    try:
        if stream:
            assert text_of(await events_of(b)) == "echo: hello azure"
        else:
            message = await b.create(call(), "gpt-4o", [], connect_timeout=5)
            assert message.content[0].text == "echo: hello azure"  # type: ignore[union-attr]
    finally:
        await b.aclose()
    (entry,) = fake.chat()
    assert (entry["path"], entry["query"]) == (path, query)
    assert entry["body"]["model"] == "gpt-4o"  # the deployment, in the body too
    assert entry["headers"]["x-request-id"] == "req-az-1"


async def test_a_deployment_name_is_percent_encoded(fake: Fake) -> None:
    b = backend(fake, api_version="2024-10-21")
    try:
        await b.create(call(), "my deployment/1", [], connect_timeout=5)
    finally:
        await b.aclose()
    (entry,) = fake.chat()
    assert entry["deployment"] == "my deployment/1"


AUTHS = [
    pytest.param({"api_key": KEY}, "api-key", id="api-key"),
    pytest.param({"azure_ad_token": mint_token(SECRET, 600)}, "entra-token", id="static-token"),
    pytest.param({"auth": "workload_identity"}, "entra-token", id="workload-identity"),
]


@pytest.mark.parametrize(("settings", "seen"), AUTHS)
@pytest.mark.parametrize("version", ["2024-10-21", ""], ids=["deployments", "v1"])
async def test_headers_of_each_auth_mode(
    fake: Fake, settings: dict[str, Any], seen: str, version: str
) -> None:
    b = backend(fake, fake.env(), api_version=version, **settings)
    try:
        await b.create(call(), "gpt-4o", [], connect_timeout=5)
        await b.create(call(), "gpt-4o", [], connect_timeout=5)
    finally:
        await b.aclose()
    first, second = fake.chat()
    assert first["auth"] == second["auth"] == seen
    headers = first["headers"]
    assert ("api-key" in headers) == (seen == "api-key")
    assert ("authorization" in headers) == (seen != "api-key")
    assert (
        headers["authorization" if seen != "api-key" else "api-key"] != fake.token_file.read_text()
    )
    tokens = fake.tokens()
    assert len(tokens) == (1 if "auth" in settings else 0)  # one exchange serves both requests
    if tokens:
        assert tokens[0]["assertion_matched"] is True
        assert tokens[0]["form"]["scope"] == "https://cognitiveservices.azure.com/.default"


# --------------------------------------------------------------------------- answers


async def test_stream_skips_the_prompt_filter_chunk(fake: Fake) -> None:
    b = backend(fake)
    try:
        events = await events_of(b)
    finally:
        await b.aclose()
    assert isinstance(events[0], MessageStart) and isinstance(events[-1], MessageStop)
    assert text_of(events) == "echo: hello azure"
    assert len([e for e in events if isinstance(e, MessageStart)]) == 1


@pytest.mark.parametrize("stream", [False, True], ids=["create", "stream"])
async def test_finish_reason_content_filter_is_refusal(fake: Fake, stream: bool) -> None:
    fake.script({"text": "I can", "finish_reason": "content_filter"})
    b = backend(fake)
    try:
        if stream:
            (delta,) = [e for e in await events_of(b) if isinstance(e, MessageDelta)]
            reason = delta.delta.stop_reason
        else:
            reason = (await b.create(call(), "gpt-4o", [], connect_timeout=5)).stop_reason
    finally:
        await b.aclose()
    assert reason == "refusal"


# --------------------------------------------------------------------------- errors

ERRORS = [
    pytest.param(
        content_filter_400(),
        {},
        400,
        "Azure OpenAI's content filter refused",
        None,
        Verdict.STOP,
        id="content-filter",
    ),
    pytest.param(
        rate_limited(1500),
        {},
        429,
        "exceeded token rate limit",
        1.5,
        Verdict.MOVE_ON,
        id="429-retry-after-ms",
    ),
    pytest.param(
        {"status": 429, "headers": {"x-ratelimit-reset-requests": "3s"}},
        {},
        429,
        "fake upstream error",
        3.0,
        Verdict.MOVE_ON,
        id="429-ratelimit-reset",
    ),
    pytest.param(
        {"status": 503},
        {},
        503,
        "fake upstream error",
        None,
        Verdict.MOVE_ON,
        id="503",
    ),
    pytest.param(
        {},
        {"api_key": "wrong-key"},
        401,
        "invalid subscription key",
        None,
        Verdict.STOP,
        id="wrong-key",
    ),
    pytest.param(
        {},
        {"azure_ad_token": mint_token(SECRET, -5)},
        401,
        "have expired",
        None,
        Verdict.STOP,
        id="expired-token",
    ),
    pytest.param(
        {},
        {"api_version": "2019-01-01"},
        400,
        "API version not supported",
        None,
        Verdict.STOP,
        id="old-api-version",
    ),
]


@pytest.mark.parametrize(("behaviour", "settings", "status", "says", "wait", "verdict"), ERRORS)
@pytest.mark.parametrize("stream", [False, True], ids=["create", "stream"])
async def test_error_mapping(
    fake: Fake,
    behaviour: dict[str, Any],
    settings: dict[str, Any],
    status: int,
    says: str,
    wait: float | None,
    verdict: Verdict,
    stream: bool,
) -> None:
    if behaviour:
        fake.script(behaviour)
    b = backend(fake, **settings)
    try:
        with pytest.raises(UpstreamError) as info:
            if stream:
                await events_of(b)
            else:
                await b.create(call(), "gpt-4o", [], connect_timeout=5)
    finally:
        await b.aclose()
    error = info.value
    assert (error.kind, error.status, error.backend) == (FailureKind.STATUS, status, "az")
    assert says in error.message
    assert error.retry_after == wait
    assert classify(error, Policy()) is verdict
    assert KEY not in error.message and SECRET not in error.message


async def test_a_401_drops_the_workload_identity_token(fake: Fake) -> None:
    b = backend(fake, fake.env(), auth="workload_identity")
    try:
        await b.create(call(), "gpt-4o", [], connect_timeout=5)
        fake.script({"status": 401})
        with pytest.raises(UpstreamError):
            await b.create(call(), "gpt-4o", [], connect_timeout=5)
        await b.create(call(), "gpt-4o", [], connect_timeout=5)
    finally:
        await b.aclose()
    assert [e["status"] for e in fake.chat()] == [200, 401, 200]
    assert len(fake.tokens()) == 2  # exchanged again after the 401
