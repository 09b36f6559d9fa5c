"""The fake Azure OpenAI upstream (``tests.upstream.azure_server``) proven with the official client.

openai's ``AzureOpenAI`` (deployments URLs, ``api-version``, ``api-key`` or an Entra token) and
its ``OpenAI`` client on the v1 URL (as Microsoft documents it for the v1 API) create and stream
against it; if they could not, the fake would be wrong. Its Entra token endpoint is driven with
azure-identity's own ``WorkloadIdentityCredential`` (over HTTPS, which MSAL insists on).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.upstream.azure_fakes import API_KEY, AzureFakes
from tests.upstream.azure_server import (
    ASSERTION_TYPE,
    SCOPE,
    content_filter_400,
    mint_token,
    rate_limited,
)
from tests.upstream.processes import UpstreamProcess

pytestmark = pytest.mark.integration

VERSION = "2024-10-21"
MESSAGES: Any = [{"role": "user", "content": "hello azure"}]


@pytest.fixture(scope="module")
def fakes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AzureFakes]:
    fakes = AzureFakes(tmp_path_factory.mktemp("azure"))
    fakes.start("azure", deployments=("gpt-4o", "gpt-4o-mini"), token_lifetime=3600)
    yield fakes
    fakes.close()


@pytest.fixture
def azure(fakes: AzureFakes) -> UpstreamProcess:
    up = fakes.started[0]
    up.control.reset()
    return up


def deployments_client(up: UpstreamProcess, **auth: Any) -> openai.AzureOpenAI:
    auth = auth or {"api_key": up_key()}
    return openai.AzureOpenAI(
        azure_endpoint=up.base_url, api_version=VERSION, max_retries=0, **auth
    )


def v1_client(up: UpstreamProcess, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{up.base_url}/openai/v1/", api_key=key, max_retries=0)


def up_key() -> str:
    return API_KEY


def entra_token(fakes: AzureFakes, up: UpstreamProcess) -> str:
    form = {
        "grant_type": "client_credentials",
        "client_id": fakes.client_id,
        "scope": SCOPE,
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": fakes.token_file.read_text().strip(),
    }
    answer = httpx.post(f"{up.base_url}/{fakes.tenant}/oauth2/v2.0/token", data=form)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600
    return str(body["access_token"])


@pytest.mark.parametrize("auth", ["api_key", "azure_ad_token"])
def test_azure_openai_client_creates_on_a_deployment(
    azure: UpstreamProcess, fakes: AzureFakes, auth: str
) -> None:
    credential = up_key() if auth == "api_key" else entra_token(fakes, azure)
    client = deployments_client(azure, **{auth: credential})
    completion = client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert completion.choices[0].message.content == "echo: hello azure"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.model_extra is not None and "prompt_filter_results" in completion.model_extra
    (entry,) = [e for e in azure.control.log() if "chat" in e["path"]]
    assert entry["path"] == "/openai/deployments/gpt-4o/chat/completions"
    assert entry["query"] == f"api-version={VERSION}"
    assert entry["auth"] == {"api_key": "api-key", "azure_ad_token": "entra-token"}[auth]


def test_azure_openai_client_streams_past_the_prompt_filter_chunk(azure: UpstreamProcess) -> None:
    chunks = list(
        deployments_client(azure).chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True
        )
    )
    assert chunks[0].choices == []
    assert chunks[0].model_extra is not None and "prompt_filter_results" in chunks[0].model_extra
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: hello azure"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"


@pytest.mark.parametrize("stream", [False, True], ids=["create", "stream"])
def test_openai_client_on_the_v1_api(azure: UpstreamProcess, stream: bool) -> None:
    client = v1_client(azure, up_key())
    if stream:
        pieces = client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)
        text = "".join(c.choices[0].delta.content or "" for c in pieces if c.choices)
    else:
        text = client.chat.completions.create(model="gpt-4o", messages=MESSAGES).choices[0]
        text = text.message.content or ""
    assert text == "echo: hello azure"
    (entry,) = azure.control.log()
    assert (entry["path"], entry["query"], entry["auth"]) == (
        "/openai/v1/chat/completions",
        "",
        "bearer-key",
    )
    assert entry["body"]["model"] == "gpt-4o"


REFUSALS = [
    pytest.param(
        lambda up: deployments_client(up, api_key="wrong"),
        openai.AuthenticationError,
        "invalid subscription key",
        id="wrong-key",
    ),
    pytest.param(
        lambda up: deployments_client(up, azure_ad_token=mint_token("not-the-secret", 60)),
        openai.AuthenticationError,
        "Access token is missing, invalid",
        id="token-from-elsewhere",
    ),
    pytest.param(
        lambda up: openai.AzureOpenAI(
            azure_endpoint=up.base_url, api_version="2019-01-01", api_key=up_key()
        ),
        openai.BadRequestError,
        "API version not supported",
        id="old-api-version",
    ),
    pytest.param(
        lambda up: v1_client(up, "wrong"),
        openai.AuthenticationError,
        "Access token is missing, invalid",
        id="v1-wrong-bearer",
    ),
]


@pytest.mark.parametrize(("make", "error", "says"), REFUSALS)
def test_refusals_reach_the_client_as_azure_sends_them(
    azure: UpstreamProcess, make: Any, error: type[Exception], says: str
) -> None:
    with pytest.raises(error, match=says):
        make(azure).chat.completions.create(model="gpt-4o", messages=MESSAGES)


def test_unknown_deployment_and_missing_api_version_are_404(azure: UpstreamProcess) -> None:
    with pytest.raises(openai.NotFoundError, match=r"DeploymentNotFound|does not exist"):
        deployments_client(azure).chat.completions.create(model="gpt-5", messages=MESSAGES)
    answer = httpx.post(
        f"{azure.base_url}/openai/deployments/gpt-4o/chat/completions",
        headers={"api-key": up_key()},
        json={"messages": MESSAGES},
    )
    assert (answer.status_code, answer.json()["error"]["message"]) == (404, "Resource not found")


def test_content_filter_and_rate_limit_as_the_client_sees_them(azure: UpstreamProcess) -> None:
    azure.control.script(content_filter_400(), rate_limited(1500))
    client = deployments_client(azure)
    with pytest.raises(openai.BadRequestError) as filtered:
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert filtered.value.code == "content_filter"
    with pytest.raises(openai.RateLimitError) as limited:
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert limited.value.response.headers["retry-after-ms"] == "1500"


ENTRA_REFUSALS = [
    pytest.param({"client_assertion": "not-the-file"}, "invalid_client", id="wrong-assertion"),
    pytest.param({"client_id": "someone-else"}, "unauthorized_client", id="wrong-client"),
    pytest.param({"scope": "https://management.azure.com/.default"}, "invalid_scope", id="scope"),
    pytest.param({"client_assertion_type": "password"}, "invalid_request", id="assertion-type"),
]


@pytest.mark.parametrize(("change", "error"), ENTRA_REFUSALS)
def test_entra_endpoint_checks_the_workload_identity_grant(
    azure: UpstreamProcess, fakes: AzureFakes, change: dict[str, str], error: str
) -> None:
    form = {
        "grant_type": "client_credentials",
        "client_id": fakes.client_id,
        "scope": SCOPE,
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": fakes.token_file.read_text().strip(),
        **change,
    }
    answer = httpx.post(f"{azure.base_url}/{fakes.tenant}/oauth2/v2.0/token", data=form)
    assert answer.status_code == 400
    assert answer.json()["error"] == error
    assert answer.json()["error_description"].startswith("AADSTS")


def test_entra_token_follows_the_rotated_file_and_expires(
    azure: UpstreamProcess, fakes: AzureFakes
) -> None:
    old = fakes.token_file.read_text().strip()
    fakes.rotate_token_file()
    try:
        form = {
            "grant_type": "client_credentials",
            "client_id": fakes.client_id,
            "scope": SCOPE,
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": old,
        }
        stale = httpx.post(f"{azure.base_url}/{fakes.tenant}/oauth2/v2.0/token", data=form)
        assert stale.json()["error"] == "invalid_client"
        assert entra_token(fakes, azure)  # the new content is accepted
    finally:
        fakes.rotate_token_file()
    expired = mint_token(fakes.token_secret, -1)
    with pytest.raises(openai.AuthenticationError):
        deployments_client(azure, azure_ad_token=expired).chat.completions.create(
            model="gpt-4o", messages=MESSAGES
        )
    # The service-account token itself is not a credential for Azure OpenAI.
    with pytest.raises(openai.AuthenticationError):
        deployments_client(
            azure, azure_ad_token=fakes.token_file.read_text().strip()
        ).chat.completions.create(model="gpt-4o", messages=MESSAGES)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str, str]:
    """A CA and a certificate for 127.0.0.1 it signed (made with the openssl command line)."""
    d = tmp_path_factory.mktemp("pki")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=ca",
            "-keyout", "ca.key", "-out", "ca.pem")  # fmt: skip
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
            "-keyout", "server.key", "-out", "server.csr")  # fmt: skip
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "1", "-extfile", "san.ext",
            "-out", "server.pem")  # fmt: skip
    return str(d / "server.pem"), str(d / "server.key"), str(d / "ca.pem")


def test_azure_identity_gets_a_token_the_fake_azure_accepts(
    azure: UpstreamProcess,
    fakes: AzureFakes,
    pki: tuple[str, str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from azure.identity import WorkloadIdentityCredential

    entra = fakes.start("entra-https", tls=pki)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", pki[2])  # azure-core's requests transport
    credential = WorkloadIdentityCredential(
        tenant_id=fakes.tenant,
        client_id=fakes.client_id,
        token_file_path=str(fakes.token_file),
        authority=entra.base_url,
        disable_instance_discovery=True,  # nothing but the fake is asked
    )
    try:
        token = credential.get_token(SCOPE)
    finally:
        credential.close()
    assert token.token.startswith("fake-entra.")
    (exchange,) = [e for e in entra.control.log() if e["path"].endswith("/token")]
    assert exchange["assertion_matched"] is True
    assert exchange["form"]["client_id"] == fakes.client_id
    client = deployments_client(azure, azure_ad_token=token.token)
    answer = client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert answer.choices[0].message.content == "echo: hello azure"
