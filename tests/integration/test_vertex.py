"""kind: vertex end to end: the sidecar process → the fake Vertex AI process, with real
google-auth service-account credentials whose token endpoint is the fake's own.

Nothing reaches Google: every ``GOOGLE_*`` variable is removed from the sidecar's environment
and the metadata server points at a dead local port (``tests.upstream.vertex_client``). Both
surfaces are driven by real clients (the anthropic SDK, which parses every answer and event, and
the generated gRPC stubs).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anthropic
import grpc
import pytest

from sidecar.grpc_api.gen.anyllm.sidecar.v1 import messages_pb2 as pb
from sidecar.grpc_api.gen.anyllm.sidecar.v1 import messages_service_pb2 as spb
from sidecar.grpc_api.gen.anyllm.sidecar.v1 import messages_service_pb2_grpc as spb_grpc
from tests.upstream.vertex_client import PROJECT, VertexFake, google_env

pytestmark = pytest.mark.integration

MODEL = "claude-sonnet-4-5@20250929"
GEMINI = "google/gemini-2.5-flash"
OPENAPI = f"/v1/projects/{PROJECT}/locations/us-east5/endpoints/openapi/chat/completions"
PREFIX = f"/v1/projects/{PROJECT}/locations"


def config(fake: VertexFake, upstream_url: str = "http://127.0.0.1:9") -> dict[str, Any]:
    def vertex(region: str) -> dict[str, Any]:
        return {
            "kind": "vertex",
            "project": PROJECT,
            "region": region,
            "base_url": f"{fake.base_url}/v1",  # as the official client's base_url
            "credentials_file": str(fake.credentials_file),
        }

    return {
        "server": {"http": "127.0.0.1:0", "grpc": "127.0.0.1:0", "grace": 5},
        "policy": {"ttft_timeout": 10, "idle_timeout": 10, "timeout": 30},
        "backends": {
            "vertex": vertex("us-east5"),
            "vertex-eu": vertex("europe-west1"),
            "anthropic": {"kind": "anthropic", "base_url": upstream_url, "api_key": "sk-ant-x"},
        },
        "chains": {
            "default": [{"backend": "vertex", "model": MODEL}, {"backend": "vertex-eu"}],
            "cross": [
                {"backend": "anthropic", "model": "claude-sonnet-4-5"},
                {"backend": "vertex", "model": MODEL},
            ],
            "gemini": [{"backend": "vertex", "model": GEMINI}],
            "claude-then-gemini": [
                {"backend": "vertex", "model": MODEL},
                {"backend": "vertex", "model": GEMINI},
            ],
        },
        "routes": [
            {"match": "cross-*", "chain": "cross"},
            {"match": "gemini-*", "chain": "gemini"},
            {"match": "mixed-*", "chain": "claude-then-gemini"},
        ],
    }


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VertexFake]:
    up = VertexFake(tmp_path_factory.mktemp("vertex"))
    yield up
    up.close()


@pytest.fixture(scope="module")
def module_sidecar(
    fake: VertexFake, module_upstream: Any, module_sidecar_factory: Callable[..., Any]
) -> Any:
    return module_sidecar_factory(config(fake, module_upstream.base_url), env=google_env())


@pytest.fixture
def vertex(fake: VertexFake) -> VertexFake:
    fake.reset()
    fake.tokens(expires_in=3600)
    return fake


@pytest.fixture
def sidecar(vertex: VertexFake, module_sidecar: Any) -> Any:
    return module_sidecar


@pytest.fixture
def client(sidecar: Any) -> Iterator[anthropic.Anthropic]:
    with sdk(sidecar) as c:
        yield c


def sdk(sidecar: Any) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=sidecar.http_url, api_key="unused", max_retries=0)


@pytest.fixture
def stub(sidecar: Any) -> Iterator[spb_grpc.MessagesServiceStub]:
    with grpc.insecure_channel(sidecar.grpc_target) as channel:
        yield spb_grpc.MessagesServiceStub(channel)


def ask(
    client: anthropic.Anthropic, text: str = "hello there", model: str = "claude-any", **extra: Any
) -> Any:
    return client.messages.with_raw_response.create(
        model=model, max_tokens=64, messages=[{"role": "user", "content": text}], **extra
    )


def grpc_request(text: str, model: str = "claude-any") -> spb.CreateMessageRequest:
    message = pb.InputMessage(
        role=pb.ROLE_USER, content=[pb.ContentBlock(text=pb.TextBlock(text=text))]
    )
    return spb.CreateMessageRequest(model=model, max_tokens=64, messages=[message])


def test_create_over_http(client: anthropic.Anthropic, vertex: VertexFake) -> None:
    raw = ask(client, extra_body={"future_field": {"kept": True}})
    message = raw.parse()
    assert message.content[0].text == "echo: hello there"
    assert message.model == MODEL
    assert raw.headers["x-anyllm-backend"] == "vertex"
    (request,) = vertex.model_requests()
    assert request["path"] == f"{PREFIX}/us-east5/publishers/anthropic/models/{MODEL}:rawPredict"
    assert request["status"] == 200
    assert request["token"] == vertex.token_requests()[-1]["issued"]
    assert request["body"]["future_field"] == {"kept": True}  # the caller's own bytes, relayed
    assert request["body"]["anthropic_version"] == "2026-10-21"
    assert "model" not in request["body"]


def test_stream_over_http_with_a_beta(client: anthropic.Anthropic, vertex: VertexFake) -> None:
    with client.beta.messages.stream(
        model="claude-any",
        max_tokens=64,
        messages=[{"role": "user", "content": "one two three"}],
        betas=["context-1m-2025-08-07"],
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "echo: one two three"
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens > 0
    (request,) = vertex.model_requests()
    assert request["path"].endswith(f"/models/{MODEL}:streamRawPredict")
    assert request["body"]["stream"] is True
    assert request["anthropic_beta"] == "context-1m-2025-08-07"


def test_count_tokens_over_http(client: anthropic.Anthropic, vertex: VertexFake) -> None:
    count = client.messages.count_tokens(
        model="claude-any", messages=[{"role": "user", "content": "one two three four"}]
    )
    assert count.input_tokens == 4
    (request,) = vertex.model_requests()
    assert (
        request["path"] == f"{PREFIX}/us-east5/publishers/anthropic/models/count-tokens:rawPredict"
    )
    assert request["body"]["model"] == MODEL


def test_create_and_stream_over_grpc(
    stub: spb_grpc.MessagesServiceStub, vertex: VertexFake
) -> None:
    message, call = stub.CreateMessage.with_call(grpc_request("hello grpc"))
    assert message.content[0].text.text == "echo: hello grpc"
    assert message.stop_reason == pb.STOP_REASON_END_TURN
    assert dict(call.trailing_metadata())["x-anyllm-backend"] == "vertex"
    responses = stub.StreamMessage(grpc_request("one two three"))
    events = list(responses)
    text = "".join(
        e.content_block_delta.text_delta
        for e in events
        if e.WhichOneof("event") == "content_block_delta"
    )
    assert text == "echo: one two three"
    assert [e.WhichOneof("event") for e in events][-1] == "message_stop"
    assert responses.code() == grpc.StatusCode.OK
    paths = [r["path"].rsplit(":", 1)[1] for r in vertex.model_requests()]
    assert paths == ["rawPredict", "streamRawPredict"]


@pytest.mark.parametrize("status", [429, 503], ids=["429-resource-exhausted", "503-unavailable"])
@pytest.mark.parametrize("stream", [False, True], ids=["create", "stream"])
def test_a_retryable_error_moves_on_to_the_next_target(
    client: anthropic.Anthropic, vertex: VertexFake, status: int, stream: bool
) -> None:
    vertex.script({"status": status})
    if stream:
        with client.messages.stream(
            model="claude-any", max_tokens=64, messages=[{"role": "user", "content": "hi you"}]
        ) as events:
            text = "".join(events.text_stream)
    else:
        raw = ask(client, "hi you")
        text = raw.parse().content[0].text
        assert raw.headers["x-anyllm-backend"] == "vertex-eu"
        assert raw.headers["x-anyllm-attempts"] == "2"
    assert text == "echo: hi you"
    first, second = vertex.model_requests()
    assert first["status"] == status and "/us-east5/" in first["path"]
    # The second target names no model: the request's own goes in the path.
    assert second["status"] == 200
    assert second["path"].endswith(
        "/europe-west1/publishers/anthropic/models/claude-any:rawPredict"
        if not stream
        else "/models/claude-any:streamRawPredict"
    )


@pytest.mark.parametrize(
    ("status", "error", "error_type"),
    [
        pytest.param(400, anthropic.BadRequestError, "invalid_request_error", id="400"),
        pytest.param(403, anthropic.PermissionDeniedError, "permission_error", id="403"),
        pytest.param(404, anthropic.NotFoundError, "not_found_error", id="404"),
    ],
)
def test_a_request_error_stops_the_chain(
    client: anthropic.Anthropic,
    vertex: VertexFake,
    status: int,
    error: type[anthropic.APIStatusError],
    error_type: str,
) -> None:
    vertex.script({"status": status})
    with pytest.raises(error) as info:
        ask(client)
    assert info.value.status_code == status
    assert info.value.body["error"]["type"] == error_type  # type: ignore[index]
    assert len(vertex.model_requests()) == 1  # the second target was not tried


def test_a_revoked_token_is_refreshed_without_a_failed_request(
    client: anthropic.Anthropic, vertex: VertexFake
) -> None:
    ask(client)
    vertex.tokens(revoke=True)
    assert ask(client, "again").parse().content[0].text == "echo: again"
    statuses = [r["status"] for r in vertex.model_requests()]
    assert statuses == [200, 401, 200]  # refreshed and sent again, on the same target
    second, third = vertex.model_requests()[1:]
    assert "/us-east5/" in second["path"] and "/us-east5/" in third["path"]
    assert third["token"] == vertex.token_requests()[-1]["issued"] != second["token"]


def test_an_expiring_token_is_refreshed_before_it_expires(
    fake: VertexFake, sidecar_factory: Callable[..., Any]
) -> None:
    fake.reset()
    fake.tokens(expires_in=4)  # fresh for 3 s in the sidecar (a quarter of its life kept back)
    sidecar = sidecar_factory(config(fake), env=google_env())
    try:
        with sdk(sidecar) as client:
            ask(client, "first")
            time.sleep(4.5)  # the fake now refuses the first token
            assert ask(client, "second").parse().content[0].text == "echo: second"
    finally:
        fake.tokens(expires_in=3600)
    first, second = vertex_requests = fake.model_requests()
    assert [r["status"] for r in vertex_requests] == [200, 200]  # no 401 on the way
    issued = [r["issued"] for r in fake.token_requests()]
    assert len(issued) == 2
    assert [first["token"], second["token"]] == issued


def test_no_credentials_is_this_targets_failure(
    tmp_path: Path, fake: VertexFake, sidecar_factory: Callable[..., Any]
) -> None:
    fake.reset()
    doc = config(fake)
    del doc["backends"]["vertex"]["credentials_file"]  # ADC: finds nothing on this machine
    sidecar = sidecar_factory(doc, env=google_env())
    with sdk(sidecar) as client:
        raw = ask(client)
    assert raw.headers["x-anyllm-backend"] == "vertex-eu"
    assert len(fake.model_requests()) == 1
    (line,) = [json.loads(x) for x in sidecar.log_lines() if '"event":"request"' in x]
    assert [a["result"] for a in line["attempts"]] == ["auth", "ok"]  # logged as an auth problem
    assert "ya29." not in "\n".join(sidecar.log_lines())  # tokens never logged


@pytest.mark.parametrize("surface", ["http", "grpc"])
@pytest.mark.parametrize("stream", [False, True], ids=["create", "stream"])
def test_anthropic_503_then_vertex_answers(
    client: anthropic.Anthropic,
    stub: spb_grpc.MessagesServiceStub,
    upstream: Any,
    vertex: VertexFake,
    surface: str,
    stream: bool,
) -> None:
    upstream.control.script({"status": 503})
    if surface == "http" and stream:
        with client.messages.stream(
            model="cross-claude", max_tokens=64, messages=[{"role": "user", "content": "a b"}]
        ) as events:
            text = "".join(events.text_stream)
            assert events.response.headers["x-anyllm-backend"] == "vertex"
    elif surface == "http":
        raw = ask(client, "a b", model="cross-claude")
        text = raw.parse().content[0].text
        assert raw.headers["x-anyllm-backend"] == "vertex"
    elif stream:
        responses = stub.StreamMessage(grpc_request("a b", model="cross-claude"))
        text = "".join(
            e.content_block_delta.text_delta
            for e in responses
            if e.WhichOneof("event") == "content_block_delta"
        )
        assert dict(responses.initial_metadata())["x-anyllm-backend"] == "vertex"
    else:
        message, call = stub.CreateMessage.with_call(grpc_request("a b", model="cross-claude"))
        text = message.content[0].text.text
        assert dict(call.trailing_metadata())["x-anyllm-backend"] == "vertex"
    assert text == "echo: a b"
    (failed,) = upstream.control.log()
    assert failed["status"] == 503
    (answered,) = vertex.model_requests()
    assert answered["status"] == 200


def test_gemini_on_vertex_over_http_and_grpc(
    client: anthropic.Anthropic, stub: spb_grpc.MessagesServiceStub, vertex: VertexFake
) -> None:
    raw = ask(client, "hello gemini", model="gemini-any")
    assert raw.parse().content[0].text == "echo: hello gemini"
    assert raw.headers["x-anyllm-backend"] == "vertex"
    with client.messages.stream(
        model="gemini-any", max_tokens=64, messages=[{"role": "user", "content": "one two"}]
    ) as events:
        text = "".join(events.text_stream)
        assert events.get_final_message().stop_reason == "end_turn"
    assert text == "echo: one two"
    message = stub.CreateMessage(grpc_request("via grpc", model="gemini-any"))
    assert message.content[0].text.text == "echo: via grpc"
    requests = vertex.model_requests()
    assert [r["path"] for r in requests] == [OPENAPI] * 3
    assert all(r["body"]["model"] == GEMINI for r in requests)
    assert all(r["status"] == 200 for r in requests)  # the fake took the Google token


def test_claude_on_vertex_429_then_gemini_on_vertex(
    client: anthropic.Anthropic, vertex: VertexFake
) -> None:
    vertex.script({"status": 429})
    raw = ask(client, "fall over", model="mixed-any")
    assert raw.parse().content[0].text == "echo: fall over"
    assert raw.headers["x-anyllm-attempts"] == "2"
    first, second = vertex.model_requests()
    assert first["status"] == 429 and first["path"].endswith(f"/models/{MODEL}:rawPredict")
    assert second["status"] == 200 and second["path"] == OPENAPI
