"""The fake Vertex AI, proven with the official client: anthropic's ``AnthropicVertex`` with
google-auth service-account credentials whose ``token_uri`` is the fake's token endpoint.

If the official client can't talk to the fake, the fake is wrong; the sidecar's Vertex tests
trust it only because these pass.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import google.auth.exceptions
import google.auth.transport.requests
import openai
import pytest
from google.oauth2 import service_account

from tests.upstream.vertex_client import PROJECT, VertexFake, apply_google_env

pytestmark = pytest.mark.integration

SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]
MODEL = "claude-sonnet-4-5@20250929"


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VertexFake]:
    up = VertexFake(tmp_path_factory.mktemp("vertex"))
    yield up
    up.close()


OPEN: list[anthropic.AnthropicVertex | openai.OpenAI] = []


@pytest.fixture
def vertex(fake: VertexFake, monkeypatch: pytest.MonkeyPatch) -> Iterator[VertexFake]:
    apply_google_env(monkeypatch)
    fake.reset()
    fake.tokens(expires_in=3600)
    yield fake
    while OPEN:
        OPEN.pop().close()


def client(fake: VertexFake, credentials_file: Path | None = None) -> anthropic.AnthropicVertex:
    credentials = service_account.Credentials.from_service_account_file(  # type: ignore[no-untyped-call]
        str(credentials_file or fake.credentials_file), scopes=SCOPES
    )
    return opened(
        anthropic.AnthropicVertex(
            region="us-east5",
            project_id=PROJECT,
            credentials=credentials,
            base_url=f"{fake.base_url}/v1",
            max_retries=0,
        )
    )


def opened(c: anthropic.AnthropicVertex) -> anthropic.AnthropicVertex:
    OPEN.append(c)
    return c


def ask(c: anthropic.AnthropicVertex, text: str = "hello there", **extra: Any) -> Any:
    return c.messages.create(
        model=MODEL, max_tokens=64, messages=[{"role": "user", "content": text}], **extra
    )


def test_create_with_a_token_from_the_token_endpoint(vertex: VertexFake) -> None:
    message = ask(client(vertex))
    assert message.content[0].type == "text"
    assert message.content[0].text == "echo: hello there"
    assert message.model == MODEL
    issued = [e["issued"] for e in vertex.token_requests()]
    (request,) = vertex.model_requests()
    assert issued == [request["token"]]
    assert request["status"] == 200
    assert request["path"] == (
        f"/v1/projects/{PROJECT}/locations/us-east5/publishers/anthropic/models/{MODEL}:rawPredict"
    )
    assert "model" not in request["body"] and request["body"]["anthropic_version"]


def test_stream(vertex: VertexFake) -> None:
    with client(vertex).messages.stream(
        model=MODEL, max_tokens=64, messages=[{"role": "user", "content": "one two three"}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "echo: one two three"
    assert final.stop_reason == "end_turn"
    (request,) = vertex.model_requests()
    assert request["path"].endswith(f"/models/{MODEL}:streamRawPredict")
    assert request["body"]["stream"] is True


def test_count_tokens(vertex: VertexFake) -> None:
    count = client(vertex).messages.count_tokens(
        model=MODEL, messages=[{"role": "user", "content": "one two three"}]
    )
    assert count.input_tokens == 3
    (request,) = vertex.model_requests()
    assert request["path"].endswith("/publishers/anthropic/models/count-tokens:rawPredict")


def test_betas_arrive_as_the_header(vertex: VertexFake) -> None:
    client(vertex).beta.messages.create(
        model=MODEL,
        max_tokens=64,
        messages=[{"role": "user", "content": "hi"}],
        betas=["context-1m-2025-08-07"],
    )
    (request,) = vertex.model_requests()
    assert request["anthropic_beta"] == "context-1m-2025-08-07"


def test_a_key_the_token_endpoint_does_not_know_is_refused(
    vertex: VertexFake, tmp_path: Path
) -> None:
    other = VertexFake(tmp_path, name="other")  # only for its key
    try:
        doc = json.loads(other.credentials_file.read_text())
    finally:
        other.close()
    doc["token_uri"] = vertex.token_uri
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps(doc))
    with pytest.raises(google.auth.exceptions.RefreshError, match="Invalid JWT Signature"):
        ask(client(vertex, forged))
    assert vertex.model_requests() == []


@pytest.mark.parametrize(
    ("token", "revoke"),
    [
        pytest.param("ya29.made-up", False, id="a-token-it-never-issued"),
        pytest.param(None, True, id="a-revoked-token"),
    ],
)
def test_only_tokens_it_issued_are_accepted(
    vertex: VertexFake, token: str | None, revoke: bool
) -> None:
    if token is None:
        ask(client(vertex))
        token = vertex.token_requests()[-1]["issued"]
    if revoke:
        vertex.tokens(revoke=True)
    c = opened(
        anthropic.AnthropicVertex(
            region="us-east5",
            project_id=PROJECT,
            access_token=token,
            base_url=f"{vertex.base_url}/v1",
            max_retries=0,
        )
    )
    with pytest.raises(anthropic.AuthenticationError) as info:
        ask(c)
    assert info.value.status_code == 401
    assert info.value.body["error"]["status"] == "UNAUTHENTICATED"  # type: ignore[index]


@pytest.mark.parametrize(
    ("status", "error", "google_status"),
    [
        pytest.param(429, anthropic.RateLimitError, "RESOURCE_EXHAUSTED", id="429"),
        pytest.param(503, anthropic.InternalServerError, "UNAVAILABLE", id="503"),
        pytest.param(400, anthropic.BadRequestError, "INVALID_ARGUMENT", id="400"),
        pytest.param(403, anthropic.PermissionDeniedError, "PERMISSION_DENIED", id="403"),
        pytest.param(404, anthropic.NotFoundError, "NOT_FOUND", id="404"),
    ],
)
def test_scripted_errors_in_googles_shape(
    vertex: VertexFake, status: int, error: type[Exception], google_status: str
) -> None:
    vertex.script({"status": status})
    with pytest.raises(error) as info:
        ask(client(vertex))
    assert info.value.body["error"]["status"] == google_status  # type: ignore[attr-defined]
    ask(client(vertex))  # the script is used up: the next request is answered


def test_a_body_with_model_is_rejected_as_vertex_does(vertex: VertexFake) -> None:
    c = client(vertex)
    token = c._ensure_access_token()
    path = f"/v1/projects/{PROJECT}/locations/us-east5/publishers/anthropic/models/m:rawPredict"
    response = c._client.post(
        f"{vertex.base_url}{path}",
        json={"model": "m", "anthropic_version": "x", "max_tokens": 1, "messages": []},
        headers={"authorization": f"Bearer {token}"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["status"] == "INVALID_ARGUMENT"


def test_the_shared_fakes_faults_apply(vertex: VertexFake) -> None:
    vertex.script({"reset": True})
    with pytest.raises(anthropic.APIConnectionError):
        ask(client(vertex))
    error = {"type": "overloaded_error", "message": "boom"}
    vertex.script({"inband_error": error, "inband_error_after": 3})
    with (
        pytest.raises(anthropic.APIError, match="boom"),
        client(vertex).messages.stream(
            model=MODEL, max_tokens=64, messages=[{"role": "user", "content": "a b c"}]
        ) as stream,
    ):
        "".join(stream.text_stream)
    outcomes = [(r["path"].rsplit(":", 1)[1], r["outcome"]) for r in vertex.model_requests()]
    assert outcomes == [("rawPredict", "reset"), ("streamRawPredict", "completed")]


def openai_client(vertex: VertexFake) -> openai.OpenAI:
    """Google's own recipe: the OpenAI SDK at the openapi endpoint, a Google token as the key."""
    credentials = service_account.Credentials.from_service_account_file(  # type: ignore[no-untyped-call]
        str(vertex.credentials_file), scopes=SCOPES
    )
    credentials.refresh(google.auth.transport.requests.Request())  # type: ignore[no-untyped-call]
    base = f"{vertex.base_url}/v1/projects/{PROJECT}/locations/us-central1/endpoints/openapi"
    client = openai.OpenAI(base_url=base, api_key=credentials.token, max_retries=0)
    OPEN.append(client)
    return client


def test_gemini_through_the_openai_compatible_endpoint(vertex: VertexFake) -> None:
    c = openai_client(vertex)
    answer = c.chat.completions.create(
        model="google/gemini-2.5-flash", messages=[{"role": "user", "content": "hello there"}]
    )
    assert answer.choices[0].message.content == "echo: hello there"
    chunks = c.chat.completions.create(
        model="google/gemini-2.5-flash",
        messages=[{"role": "user", "content": "one two"}],
        stream=True,
    )
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == "echo: one two"
    paths = {r["path"] for r in vertex.model_requests()}
    assert paths == {
        f"/v1/projects/{PROJECT}/locations/us-central1/endpoints/openapi/chat/completions"
    }
    vertex.script({"status": 429})
    with pytest.raises(openai.RateLimitError):
        c.chat.completions.create(
            model="google/gemini-2.5-flash", messages=[{"role": "user", "content": "x"}]
        )
    with pytest.raises(openai.BadRequestError):  # Vertex names models publisher/model
        c.chat.completions.create(model="gemini", messages=[{"role": "user", "content": "x"}])
