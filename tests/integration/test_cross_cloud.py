"""The cross-cloud chain of issue 12: ``anthropic (503) → bedrock (ThrottlingException) →
vertex (ok)`` answers from Vertex in one request, through both surfaces, streamed and not.

Three fake upstream processes, each speaking its provider's protocol and checking auth its way
(the shared scripted upstream as Anthropic, the SigV4-verifying fake Bedrock, the fake Vertex
with its own token endpoint), behind one sidecar process.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import anthropic
import grpc
import pytest

from sidecar.grpc_api.gen.anyllm.sidecar.v1 import messages_service_pb2_grpc as spb_grpc
from tests.integration.test_grpc_surface import request as grpc_request
from tests.upstream.bedrock_fake import ACCESS_KEY, REGION, SECRET_KEY, BedrockFake, aws_env
from tests.upstream.vertex_client import PROJECT, VertexFake, google_env

pytestmark = pytest.mark.integration

VERTEX_MODEL = "claude-sonnet-4-5@20250929"


@pytest.fixture(scope="module")
def bedrock(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BedrockFake]:
    fake = BedrockFake(tmp_path_factory.mktemp("bedrock"))
    yield fake
    fake.close()


@pytest.fixture(scope="module")
def vertex(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VertexFake]:
    fake = VertexFake(tmp_path_factory.mktemp("vertex"))
    yield fake
    fake.close()


@pytest.fixture(scope="module")
def sidecar(
    bedrock: BedrockFake,
    vertex: VertexFake,
    module_upstream: Any,
    module_sidecar_factory: Callable[..., Any],
    tmp_path_factory: pytest.TempPathFactory,
) -> Any:
    config = {
        "server": {"http": "127.0.0.1:0", "grpc": "127.0.0.1:0", "grace": 5},
        "policy": {"ttft_timeout": 10, "idle_timeout": 10, "timeout": 30},
        "backends": {
            "anthropic": {
                "kind": "anthropic",
                "base_url": module_upstream.base_url,
                "api_key": "sk-ant-x",
            },
            "bedrock": {"kind": "bedrock", "region": REGION, "base_url": bedrock.base_url},
            "vertex": {
                "kind": "vertex",
                "project": PROJECT,
                "region": "us-east5",
                "base_url": vertex.base_url,
                "credentials_file": str(vertex.credentials_file),
            },
        },
        "chains": {
            "default": [
                {"backend": "anthropic", "model": "claude-sonnet-4-5"},
                {"backend": "bedrock", "model": "us.anthropic.claude-sonnet-4-5-v1:0"},
                {"backend": "vertex", "model": VERTEX_MODEL},
            ]
        },
    }
    env = {
        **aws_env(
            tmp_path_factory.mktemp("aws"),
            AWS_ACCESS_KEY_ID=ACCESS_KEY,
            AWS_SECRET_ACCESS_KEY=SECRET_KEY,
        ),
        **google_env(),
    }
    return module_sidecar_factory(config, env=env)


@pytest.fixture(scope="module")
def stub(sidecar: Any) -> Iterator[spb_grpc.MessagesServiceStub]:
    with grpc.insecure_channel(sidecar.grpc_target) as channel:
        yield spb_grpc.MessagesServiceStub(channel)


def ask(
    surface: str, stream: bool, sidecar: Any, stub: spb_grpc.MessagesServiceStub
) -> tuple[Any, Any, Any]:
    """(text, the backend that answered, attempts) as the caller sees them."""
    if surface == "grpc" and stream:
        responses = stub.StreamMessage(grpc_request("cross the clouds"))
        text = "".join(
            e.content_block_delta.text_delta
            for e in responses
            if e.WhichOneof("event") == "content_block_delta"
        )
        meta = dict(responses.initial_metadata())
        return text, meta["x-anyllm-backend"], meta["x-anyllm-attempts"]
    if surface == "grpc":
        message, call = stub.CreateMessage.with_call(grpc_request("cross the clouds"))
        meta = dict(call.trailing_metadata())
        return message.content[0].text.text, meta["x-anyllm-backend"], meta["x-anyllm-attempts"]
    with anthropic.Anthropic(base_url=sidecar.http_url, api_key="k", max_retries=0) as client:
        messages: Any = [{"role": "user", "content": "cross the clouds"}]
        if stream:
            with client.messages.stream(
                model="claude-x", max_tokens=64, messages=messages
            ) as events:
                text = "".join(events.text_stream)
                headers = events.response.headers
        else:
            raw = client.messages.with_raw_response.create(
                model="claude-x", max_tokens=64, messages=messages
            )
            text, headers = raw.parse().content[0].text, raw.headers
        return text, headers["x-anyllm-backend"], headers["x-anyllm-attempts"]


@pytest.mark.parametrize("surface", ["http", "grpc"])
@pytest.mark.parametrize("stream", [False, True], ids=["create", "stream"])
def test_anthropic_503_then_bedrock_throttled_then_vertex_answers(
    sidecar: Any,
    stub: spb_grpc.MessagesServiceStub,
    upstream: Any,
    bedrock: BedrockFake,
    vertex: VertexFake,
    surface: str,
    stream: bool,
) -> None:
    bedrock.reset()
    vertex.reset()
    upstream.control.script({"status": 503})
    bedrock.script({"error": "ThrottlingException", "status": 429})
    text, backend, attempts = ask(surface, stream, sidecar, stub)
    assert text == "echo: cross the clouds"
    assert (backend, attempts) == ("vertex", "3")
    assert [e["status"] for e in upstream.control.log()] == [503]
    assert [e["status"] for e in bedrock.log()] == [429]
    (answered,) = vertex.model_requests()
    assert answered["status"] == 200
    method = "streamRawPredict" if stream else "rawPredict"
    assert answered["path"] == (
        f"/v1/projects/{PROJECT}/locations/us-east5/publishers/anthropic/models/"
        f"{VERTEX_MODEL}:{method}"
    )
