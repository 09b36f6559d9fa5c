"""Azure OpenAI end to end: the sidecar process → fake Azure OpenAI processes (two "regions")
and a fake Entra ID token endpoint (``tests.upstream.azure_server``, proven against openai's
``AzureOpenAI`` in ``tests/test_azure_upstream_server.py``). Callers are the official anthropic
SDK over HTTP and the generated gRPC stubs."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import anthropic
import grpc
import pytest

from sidecar.grpc_api.gen.anyllm.sidecar.v1 import messages_pb2 as pb
from sidecar.grpc_api.gen.anyllm.sidecar.v1 import messages_service_pb2 as spb
from sidecar.grpc_api.gen.anyllm.sidecar.v1 import messages_service_pb2_grpc as spb_grpc
from tests.upstream.azure_fakes import AzureFakes
from tests.upstream.azure_server import content_filter_400, rate_limited
from tests.upstream.processes import SidecarProcess, UpstreamProcess

pytestmark = pytest.mark.integration

VERSION = "2024-10-21"
DEPLOYMENT = "gpt-4o"
SERVER = {"http": "127.0.0.1:0", "grpc": "127.0.0.1:0", "grace": 5}
POLICY = {"ttft_timeout": 5, "idle_timeout": 5, "timeout": 20}


@pytest.fixture
def fakes(tmp_path: Any) -> Iterator[AzureFakes]:
    fakes = AzureFakes(tmp_path)
    yield fakes
    fakes.close()


def azure_backend(up: UpstreamProcess, *, v1: bool = False, **auth: Any) -> dict[str, Any]:
    backend: dict[str, Any] = {"kind": "azure", "base_url": up.base_url}
    if not v1:
        backend["api_version"] = VERSION
    backend.update(auth or {"api_key": "env:AZURE_OPENAI_API_KEY"})
    return backend


def regions_config(east: UpstreamProcess, west: UpstreamProcess, **policy: Any) -> dict[str, Any]:
    return {
        "server": SERVER,
        "policy": {**POLICY, **policy},
        "backends": {"east": azure_backend(east), "west": azure_backend(west)},
        "chains": {
            "default": [
                {"backend": "east", "model": DEPLOYMENT},
                {"backend": "west", "model": DEPLOYMENT},
            ]
        },
    }


def start(
    sidecar_factory: Callable[..., SidecarProcess],
    fakes: AzureFakes,
    config: dict[str, Any],
    env: dict[str, Any] | None = None,
) -> SidecarProcess:
    return sidecar_factory(config, env={"AZURE_OPENAI_API_KEY": fakes.api_key, **(env or {})})


def client(sidecar: SidecarProcess) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=sidecar.http_url, api_key="caller", max_retries=0)


def ask(sidecar: SidecarProcess, *, stream: bool, text: str = "hello azure") -> str:
    """The answer's text, through the anthropic SDK (which parses every event)."""
    messages: Any = [{"role": "user", "content": text}]
    with client(sidecar) as c:
        if stream:
            with c.messages.stream(model="claude-x", max_tokens=64, messages=messages) as s:
                final = s.get_final_message()
        else:
            final = c.messages.create(model="claude-x", max_tokens=64, messages=messages)
    assert final.stop_reason == "end_turn"
    return "".join(b.text for b in final.content if b.type == "text")


def chat(up: UpstreamProcess) -> list[dict[str, Any]]:
    return [e for e in up.control.log() if "chat/completions" in e["path"]]


def assert_no_secrets(sidecar: SidecarProcess, fakes: AzureFakes) -> None:
    logs = "\n".join(sidecar.log_lines())
    assert fakes.api_key not in logs
    assert fakes.token_file.read_text().strip() not in logs
    assert "fake-entra." not in logs


# --------------------------------------------------------------------------- both URL styles

STYLES = [
    pytest.param(False, "/openai/deployments/gpt-4o/chat/completions", VERSION, id="deployments"),
    pytest.param(True, "/openai/v1/chat/completions", None, id="v1"),
]


@pytest.mark.parametrize(("v1", "path", "version"), STYLES)
@pytest.mark.parametrize("stream", [False, True], ids=["create", "stream"])
def test_http_through_the_anthropic_sdk(
    sidecar_factory: Callable[..., SidecarProcess],
    fakes: AzureFakes,
    v1: bool,
    path: str,
    version: str | None,
    stream: bool,
) -> None:
    azure = fakes.start("azure", deployments=(DEPLOYMENT,))
    config = {
        "server": SERVER,
        "policy": POLICY,
        "backends": {"az": azure_backend(azure, v1=v1)},
        "chains": {"default": [{"backend": "az", "model": DEPLOYMENT}]},
    }
    sidecar = start(sidecar_factory, fakes, config)
    assert ask(sidecar, stream=stream) == "echo: hello azure"
    (entry,) = chat(azure)
    assert entry["path"] == path
    assert entry["query"] == (f"api-version={version}" if version else "")
    assert (entry["auth"], entry["deployment"], entry["stream"]) == ("api-key", DEPLOYMENT, stream)
    assert_no_secrets(sidecar, fakes)


def grpc_request(text: str = "hello grpc") -> spb.CreateMessageRequest:
    message = pb.InputMessage(
        role=pb.ROLE_USER, content=[pb.ContentBlock(text=pb.TextBlock(text=text))]
    )
    return spb.CreateMessageRequest(model="claude-x", max_tokens=64, messages=[message])


def test_grpc_unary_and_stream(
    sidecar_factory: Callable[..., SidecarProcess], fakes: AzureFakes
) -> None:
    east, west = fakes.start("east"), fakes.start("west")
    sidecar = start(sidecar_factory, fakes, regions_config(east, west))
    with grpc.insecure_channel(sidecar.grpc_target) as channel:
        stub = spb_grpc.MessagesServiceStub(channel)
        message, call = stub.CreateMessage.with_call(grpc_request())
        assert message.content[0].text.text == "echo: hello grpc"
        assert message.stop_reason == pb.STOP_REASON_END_TURN
        assert dict(call.trailing_metadata())["x-anyllm-backend"] == "east"
        events = list(stub.StreamMessage(grpc_request("one two")))
    kinds = [e.WhichOneof("event") for e in events]
    assert kinds[0] == "message_start" and kinds[-2:] == ["message_delta", "message_stop"]
    text = "".join(
        e.content_block_delta.text_delta
        for e in events
        if e.WhichOneof("event") == "content_block_delta"
    )
    assert text == "echo: one two"
    assert [e["stream"] for e in chat(east)] == [False, True] and chat(west) == []


# --------------------------------------------------------------------------- errors, failover

RATE_LIMITS = [
    # retries: 1 and a wait the policy accepts: the same region again, after the wait.
    pytest.param(200, ["east", "east"], [], id="short-wait-retries-east"),
    # a wait beyond retry_after_cap: no retry; the other region at once.
    pytest.param(60_000, ["east"], ["west"], id="long-wait-moves-to-west"),
]


@pytest.mark.parametrize(("wait_ms", "east_seen", "west_seen"), RATE_LIMITS)
@pytest.mark.parametrize("stream", [False, True], ids=["create", "stream"])
def test_429_retry_after_ms_is_the_wait(
    sidecar_factory: Callable[..., SidecarProcess],
    fakes: AzureFakes,
    wait_ms: int,
    east_seen: list[str],
    west_seen: list[str],
    stream: bool,
) -> None:
    east, west = fakes.start("east"), fakes.start("west")
    config = regions_config(east, west, retries=1, retry_after_cap=10, backoff_base=0)
    sidecar = start(sidecar_factory, fakes, config)
    east.control.script(rate_limited(wait_ms))
    assert ask(sidecar, stream=stream) == "echo: hello azure"
    assert [e["status"] for e in chat(east)] == [429, 200][: len(east_seen)]
    assert len(chat(west)) == len(west_seen)


@pytest.mark.parametrize("stream", [False, True], ids=["create", "stream"])
def test_429_moves_on_to_the_second_target(
    sidecar_factory: Callable[..., SidecarProcess], fakes: AzureFakes, stream: bool
) -> None:
    east, west = fakes.start("east"), fakes.start("west")
    sidecar = start(sidecar_factory, fakes, regions_config(east, west))
    east.control.script(rate_limited(1500))
    with client(sidecar) as c:
        raw = c.messages.with_raw_response.create(
            model="claude-x", max_tokens=64, messages=[{"role": "user", "content": "hi"}]
        )
    assert raw.headers["x-anyllm-backend"] == "west"
    assert raw.parse().content[0].text == "echo: hi"  # type: ignore[union-attr]
    assert [e["status"] for e in chat(east)] == [429]


@pytest.mark.parametrize("stream", [False, True], ids=["create", "stream"])
def test_content_filter_stops_the_chain(
    sidecar_factory: Callable[..., SidecarProcess], fakes: AzureFakes, stream: bool
) -> None:
    east, west = fakes.start("east"), fakes.start("west")
    sidecar = start(sidecar_factory, fakes, regions_config(east, west))
    east.control.script(content_filter_400())
    with pytest.raises(anthropic.BadRequestError) as info:
        ask(sidecar, stream=stream)
    assert info.value.status_code == 400
    assert "content filter refused" in info.value.message
    assert chat(west) == []  # never tried


def test_content_filter_over_grpc_is_invalid_argument(
    sidecar_factory: Callable[..., SidecarProcess], fakes: AzureFakes
) -> None:
    east, west = fakes.start("east"), fakes.start("west")
    sidecar = start(sidecar_factory, fakes, regions_config(east, west))
    east.control.script(content_filter_400())
    with grpc.insecure_channel(sidecar.grpc_target) as channel:
        stub = spb_grpc.MessagesServiceStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.CreateMessage(grpc_request())
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "content filter refused" in (info.value.details() or "")
    assert chat(west) == []


@pytest.mark.parametrize("stream", [False, True], ids=["create", "stream"])
def test_finish_reason_content_filter_is_refusal(
    sidecar_factory: Callable[..., SidecarProcess], fakes: AzureFakes, stream: bool
) -> None:
    east, west = fakes.start("east"), fakes.start("west")
    sidecar = start(sidecar_factory, fakes, regions_config(east, west))
    east.control.script({"text": "Part of it", "finish_reason": "content_filter"})
    messages: Any = [{"role": "user", "content": "hi"}]
    with client(sidecar) as c:
        if stream:
            with c.messages.stream(model="claude-x", max_tokens=64, messages=messages) as s:
                final = s.get_final_message()
        else:
            final = c.messages.create(model="claude-x", max_tokens=64, messages=messages)
    assert final.stop_reason == "refusal"


FAILURES = [
    pytest.param({"status": 503}, id="503"),
    pytest.param({"reset": True}, id="connection-reset"),
    pytest.param({"role_only_then_stall": True}, id="stalls-before-content"),
]


@pytest.mark.parametrize("failure", FAILURES)
@pytest.mark.parametrize("stream", [False, True], ids=["create", "stream"])
def test_a_deployment_in_two_regions_fails_over(
    sidecar_factory: Callable[..., SidecarProcess],
    fakes: AzureFakes,
    failure: dict[str, Any],
    stream: bool,
) -> None:
    east, west = fakes.start("east"), fakes.start("west")
    sidecar = start(
        sidecar_factory, fakes, regions_config(east, west, ttft_timeout=1, attempt_timeout=3)
    )
    east.control.script(failure)
    assert ask(sidecar, stream=stream) == "echo: hello azure"
    assert len(chat(east)) == 1 and len(chat(west)) == 1


def test_a_region_that_is_gone_fails_over(
    sidecar_factory: Callable[..., SidecarProcess], fakes: AzureFakes
) -> None:
    east, west = fakes.start("east"), fakes.start("west")
    sidecar = start(sidecar_factory, fakes, regions_config(east, west))
    east.stop()
    assert ask(sidecar, stream=True) == "echo: hello azure"
    assert len(chat(west)) == 1


# --------------------------------------------------------------------------- workload identity


def test_workload_identity_refreshes_without_a_failed_request(
    sidecar_factory: Callable[..., SidecarProcess], fakes: AzureFakes
) -> None:
    entra = fakes.start("entra", token_lifetime=3)  # the token endpoint; its tokens live 3 s
    east, west = fakes.start("east"), fakes.start("west")
    identity = {"auth": "workload_identity"}
    config = {
        "server": SERVER,
        "policy": POLICY,
        "backends": {
            "east": azure_backend(east, **identity),
            "west": azure_backend(west, **identity),
        },
        "chains": {"default": [{"backend": "east", "model": DEPLOYMENT}]},
    }
    sidecar = start(sidecar_factory, fakes, config, env=fakes.workload_identity_env(entra))
    started = time.monotonic()
    answered = 0
    rotated = False
    while time.monotonic() - started < 4.5:  # past the first token's expiry, with slack
        assert ask(sidecar, stream=answered % 2 == 1, text=f"n{answered}") == f"echo: n{answered}"
        answered += 1
        if not rotated and time.monotonic() - started > 1:
            fakes.rotate_token_file()  # the kubelet's rotation: the next refresh reads it
            rotated = True
        time.sleep(0.25)
    seen = chat(east)
    assert len(seen) == answered and {e["status"] for e in seen} == {200}
    assert {e["auth"] for e in seen} == {"entra-token"}
    exchanges = [e for e in entra.control.log() if e["path"].endswith("/token")]
    assert len(exchanges) >= 2  # a 3 s token cannot serve 4.5 s of requests alone
    assert all(e["assertion_matched"] and e["status"] == 200 for e in exchanges)
    assert all(e["path"] == f"/{fakes.tenant}/oauth2/v2.0/token" for e in exchanges)
    assert_no_secrets(sidecar, fakes)


def test_workload_identity_failing_at_entra_moves_to_the_next_region(
    sidecar_factory: Callable[..., SidecarProcess], fakes: AzureFakes
) -> None:
    entra = fakes.start("entra")
    east, west = fakes.start("east"), fakes.start("west")
    config = regions_config(east, west)
    config["backends"]["east"] = azure_backend(east, auth="workload_identity")
    env = {**fakes.workload_identity_env(entra), "AZURE_CLIENT_ID": "not-federated"}
    sidecar = start(sidecar_factory, fakes, config, env=env)
    assert ask(sidecar, stream=False) == "echo: hello azure"
    assert chat(east) == [] and len(chat(west)) == 1
    assert any("unauthorized_client" in line for line in sidecar.log_lines())


def test_start_up_names_what_workload_identity_lacks(
    sidecar_factory: Callable[..., SidecarProcess], fakes: AzureFakes
) -> None:
    from tests.upstream.processes import ProcessStartError

    azure = fakes.start("azure")
    config = {
        "server": SERVER,
        "backends": {"az": azure_backend(azure, auth="workload_identity")},
    }
    with pytest.raises(ProcessStartError) as info:
        sidecar_factory(
            config,
            env={
                "AZURE_CLIENT_ID": None,
                "AZURE_TENANT_ID": "t",
                "AZURE_FEDERATED_TOKEN_FILE": str(fakes.token_file),
            },
        )
    assert info.value.returncode == 2
    assert "backends.az.client_id" in info.value.output
    assert "AZURE_CLIENT_ID" in info.value.output
