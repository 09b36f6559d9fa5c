"""``kind: bedrock`` end to end: the sidecar process, signing with botocore, against the fake
Bedrock process that checks every signature (tests/upstream/bedrock_server.py).

The chain is ``first`` (an inference-profile ARN, so the path carries ``%3A`` and ``%2F``) then
``second`` (a ``global.`` profile id), both on the one fake, told apart by the model id it logs.
Credentials come from botocore's chain: ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` in the
sidecar's environment (static keys from the config for ``wrong``), and for IRSA from the fake's
STS via a web identity token file.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anthropic
import grpc
import httpx
import pytest

from sidecar.grpc_api.gen.anyllm.sidecar.v1 import messages_service_pb2_grpc as spb_grpc
from tests.integration.test_faults import call
from tests.integration.test_grpc_surface import request as grpc_request
from tests.upstream.bedrock_fake import ACCESS_KEY, REGION, SECRET_KEY, BedrockFake, aws_env

pytestmark = pytest.mark.integration

FIRST = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-first-v1:0"
FIRST_PATH = (
    "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Ainference-profile"
    "%2Fus.anthropic.claude-first-v1%3A0"
)
SECOND = "global.anthropic.claude-second-v1:0"


def bedrock_config(url: str, anthropic_url: str, **policy: Any) -> dict[str, Any]:
    backend = {"kind": "bedrock", "region": REGION, "base_url": url}
    return {
        "server": {"http": "127.0.0.1:0", "grpc": "127.0.0.1:0", "grace": 5},
        "policy": {"ttft_timeout": 5, "idle_timeout": 5, "timeout": 20, **policy},
        "backends": {
            "first": backend,
            "second": backend,
            "wrong": {
                **backend,
                "aws_access_key_id": ACCESS_KEY,
                "aws_secret_access_key": "env:WRONG_SECRET",
            },
            "anthropic": {"kind": "anthropic", "base_url": anthropic_url, "api_key": "sk-ant-x"},
            "dead": {"kind": "bedrock", "region": REGION, "base_url": "http://127.0.0.1:9"},
        },
        "chains": {
            "default": [
                {"backend": "first", "model": FIRST},
                {"backend": "second", "model": SECOND},
            ],
            "cross": [
                {"backend": "anthropic", "model": "claude-sonnet-4-5"},
                {"backend": "first", "model": FIRST},
                {"backend": "second", "model": SECOND},
            ],
            "dead-then-first": [
                {"backend": "dead", "model": "anthropic.claude-dead-v1:0"},
                {"backend": "first", "model": FIRST},
            ],
            "wrong-then-first": [
                {"backend": "wrong", "model": "anthropic.claude-wrong-v1:0"},
                {"backend": "first", "model": FIRST},
            ],
        },
    }


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BedrockFake]:
    process = BedrockFake(tmp_path_factory.mktemp("bedrock"))
    yield process
    process.close()


@pytest.fixture(scope="module")
def sidecar(
    fake: BedrockFake,
    module_upstream: Any,
    module_sidecar_factory: Callable[..., Any],
    tmp_path_factory: pytest.TempPathFactory,
) -> Any:
    env = aws_env(
        tmp_path_factory.mktemp("aws"),
        AWS_ACCESS_KEY_ID=ACCESS_KEY,
        AWS_SECRET_ACCESS_KEY=SECRET_KEY,
        WRONG_SECRET="not-the-secret",
    )
    config = bedrock_config(
        fake.base_url, module_upstream.base_url, breaker={"failures": 1000, "cooldown": 1}
    )
    return module_sidecar_factory(config, env=env)


@pytest.fixture
def bedrock(fake: BedrockFake) -> BedrockFake:
    fake.reset()
    return fake


@pytest.fixture(scope="module")
def stub(sidecar: Any) -> Iterator[spb_grpc.MessagesServiceStub]:
    with grpc.insecure_channel(sidecar.grpc_target) as channel:
        yield spb_grpc.MessagesServiceStub(channel)


CLIENTS: list[anthropic.Anthropic] = []  # closed after each test: no socket left to the GC


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while CLIENTS:
        CLIENTS.pop().close()


def client(sidecar: Any) -> anthropic.Anthropic:
    sdk = anthropic.Anthropic(base_url=sidecar.http_url, api_key="caller-key", max_retries=0)
    CLIENTS.append(sdk)
    return sdk


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


# --------------------------------------------------------------------------- answers


def test_create_over_http_with_the_sdk(sidecar: Any, bedrock: BedrockFake) -> None:
    raw = client(sidecar).messages.with_raw_response.create(
        model="claude-x",
        max_tokens=50,
        messages=user("hello there"),
        system="be brief",
        extra_headers={"anthropic-beta": "beta-one, beta-two"},
        extra_body={"some_new_field": {"kept": True}},
    )
    message = raw.parse()
    assert raw.headers["x-anyllm-backend"] == "first"
    assert message.content[0].text == "echo: hello there"  # type: ignore[union-attr]
    assert message.stop_reason == "end_turn"
    assert message.usage.output_tokens == 3
    (seen,) = bedrock.log()
    assert seen["path"] == FIRST_PATH + "/invoke"  # the ARN percent-encoded, and signed so
    assert seen["status"] == 200
    assert seen["access_key"] == ACCESS_KEY
    body = seen["body"]
    assert "model" not in body and "stream" not in body
    assert body["anthropic_version"] == "2026-10-21"
    assert body["anthropic_beta"] == ["beta-one", "beta-two"]
    assert body["some_new_field"] == {"kept": True}  # the caller's own bytes, unknown field kept
    assert body["system"] == "be brief"


def test_stream_over_http_with_the_sdk(sidecar: Any, bedrock: BedrockFake) -> None:
    with client(sidecar).messages.stream(
        model="claude-x", max_tokens=50, messages=user("one two three")
    ) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert final.content[0].text == "echo: one two three"  # type: ignore[union-attr]
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 4
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    (seen,) = bedrock.log()
    assert seen["path"] == FIRST_PATH + "/invoke-with-response-stream"
    assert seen["status"] == 200 and seen["frames_sent"] == 9


def test_unknown_frames_are_skipped_and_unknown_events_relayed(
    sidecar: Any, stub: Any, bedrock: BedrockFake
) -> None:
    extra = {"type": "some_future_event", "data": 1}
    bedrock.script({"other_frames": True, "extra_events": [extra], "times": 2})
    body = {"model": "m", "max_tokens": 50, "stream": True, "messages": user("go")}
    with httpx.stream("POST", sidecar.http_url + "/v1/messages", json=body, timeout=30) as r:
        lines = [line for line in r.iter_lines() if line]
    assert "event: some_future_event" in lines
    assert 'data: {"type": "some_future_event", "data": 1}' in lines  # as Bedrock sent it
    with client(sidecar).messages.stream(model="m", max_tokens=50, messages=user("go")) as s:
        assert "".join(s.text_stream) == "echo: go"  # the SDK reads past what it does not know
    bedrock.script({"other_frames": True, "extra_events": [extra]})
    events = list(stub.StreamMessage(grpc_request("go")))
    assert events[-1].WhichOneof("event") == "message_stop"


def test_grpc_unary_and_stream(stub: spb_grpc.MessagesServiceStub, bedrock: BedrockFake) -> None:
    message, unary = stub.CreateMessage.with_call(grpc_request("hello grpc"))
    assert message.content[0].text.text == "echo: hello grpc"
    assert dict(unary.trailing_metadata())["x-anyllm-backend"] == "first"
    events = list(stub.StreamMessage(grpc_request("a b c")))
    kinds = [e.WhichOneof("event") for e in events]
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    text = "".join(
        e.content_block_delta.text_delta for e in events if e.HasField("content_block_delta")
    )
    assert text == "echo: a b c"
    assert [e["status"] for e in bedrock.log()] == [200, 200]


def test_count_tokens(sidecar: Any, bedrock: BedrockFake) -> None:
    count = client(sidecar).messages.count_tokens(model="m", messages=user("four words right here"))
    assert count.input_tokens == 4
    (seen,) = bedrock.log()
    assert seen["path"] == FIRST_PATH + "/count-tokens"
    assert seen["invoke_body"]["messages"] == user("four words right here")
    assert "model" not in seen["invoke_body"]


def test_count_tokens_estimated_where_bedrock_cannot_count(
    sidecar: Any, bedrock: BedrockFake
) -> None:
    bedrock.script(
        {
            "action": "count-tokens",
            "error": "ValidationException",
            "status": 400,
            "message": "The provided model doesn't support counting tokens.",
        }
    )
    count = client(sidecar).messages.count_tokens(model="m", messages=user("a few words"))
    assert count.input_tokens > 0
    assert len(bedrock.log()) == 1


# --------------------------------------------------------------------------- faults

MOVE_ON = {
    "throttling": ("ThrottlingException", 429),
    "unavailable": ("ServiceUnavailableException", 503),
    "internal": ("InternalServerException", 500),
    "not-ready": ("ModelNotReadyException", 429),
    "model-timeout": ("ModelTimeoutException", 408),
    "quota": ("ServiceQuotaExceededException", 400),
    "expired-token": ("ExpiredTokenException", 403),
    "bad-signature": ("InvalidSignatureException", 403),
}
STOP = {
    "validation": ("ValidationException", 400, "invalid_request_error", "INVALID_ARGUMENT"),
    "access-denied": ("AccessDeniedException", 403, "permission_error", "PERMISSION_DENIED"),
    "not-found": ("ResourceNotFoundException", 404, "not_found_error", "NOT_FOUND"),
}
SURFACES = [
    pytest.param(surface, stream, id=f"{surface}-{'stream' if stream else 'unary'}")
    for surface in ("http", "grpc")
    for stream in (False, True)
]


@pytest.mark.parametrize(("surface", "stream"), SURFACES)
@pytest.mark.parametrize("fault", MOVE_ON.values(), ids=MOVE_ON.keys())
def test_errors_that_move_on(
    sidecar: Any, stub: Any, bedrock: BedrockFake, surface: str, stream: bool, fault: Any
) -> None:
    error, status = fault
    bedrock.script({"error": error, "status": status, "message": "no"})
    seen = call(surface, sidecar, stub, stream)
    assert seen.ok, seen
    assert seen.backend == "second"
    assert seen.text == "echo: go"
    log = bedrock.log()
    assert [(e["model"], e["status"]) for e in log] == [(FIRST, status), (SECOND, 200)]


@pytest.mark.parametrize(("surface", "stream"), SURFACES)
@pytest.mark.parametrize("fault", STOP.values(), ids=STOP.keys())
def test_errors_that_stop(
    sidecar: Any, stub: Any, bedrock: BedrockFake, surface: str, stream: bool, fault: Any
) -> None:
    error, status, error_type, grpc_code = fault
    bedrock.script({"error": error, "status": status, "message": "no"})
    seen = call(surface, sidecar, stub, stream)
    assert not seen.ok
    if surface == "http":
        assert (seen.error_type, seen.status) == (error_type, status)
    else:
        assert seen.status == grpc_code
    assert len(bedrock.log()) == 1


@pytest.mark.parametrize("surface", ["http", "grpc"])
@pytest.mark.parametrize(
    "exception", ["throttlingException", "modelStreamErrorException", "internalServerException"]
)
def test_exception_frame_before_content_falls_back(
    sidecar: Any, stub: Any, bedrock: BedrockFake, surface: str, exception: str
) -> None:
    bedrock.script({"exception": exception, "after": 1})  # after message_start only
    seen = call(surface, sidecar, stub, True)
    assert seen.ok, seen
    assert seen.backend == "second"
    assert seen.text == "echo: go"
    assert seen.kinds.count("message_start") == 1
    assert [e["model"] for e in bedrock.log()] == [FIRST, SECOND]


def test_exception_frame_after_content_ends_with_an_error_event(
    sidecar: Any, bedrock: BedrockFake
) -> None:
    bedrock.script(
        {
            "exception": "modelStreamErrorException",
            "after": 4,
            "frame_delay": 0.05,
            "text": "one two three four five",
            "message": "the model broke",
        }
    )
    texts: list[str] = []
    with (
        pytest.raises(anthropic.APIStatusError) as info,
        client(sidecar).messages.stream(model="m", max_tokens=50, messages=user("go")) as stream,
    ):
        texts.extend(stream.text_stream)
    assert "".join(texts) == "one two "  # what came before the fault, and no more
    assert info.value.body["error"]["type"] == "api_error"  # type: ignore[index]
    assert len(bedrock.log()) == 1  # never retried once content was sent


def test_exception_frame_after_content_over_grpc(stub: Any, bedrock: BedrockFake) -> None:
    bedrock.script(
        {
            "exception": "throttlingException",
            "after": 4,
            "frame_delay": 0.05,
            "text": "one two three four five",
        }
    )
    responses = stub.StreamMessage(grpc_request("go"))
    kinds = []
    with pytest.raises(grpc.RpcError) as info:
        for event in responses:
            kinds.append(event.WhichOneof("event"))
    assert "content_block_delta" in kinds
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED  # type: ignore[attr-defined]
    assert len(bedrock.log()) == 1


@pytest.mark.parametrize("stream", [False, True], ids=["unary", "stream"])
def test_an_unreachable_endpoint_moves_on(sidecar: Any, bedrock: BedrockFake, stream: bool) -> None:
    sdk, chain = client(sidecar), {"x-anyllm-chain": "dead-then-first"}
    if stream:
        with sdk.messages.stream(
            model="m", max_tokens=50, messages=user("go"), extra_headers=chain
        ) as events:
            text = events.get_final_message().content[0].text  # type: ignore[union-attr]
    else:
        text = (
            sdk.messages.create(model="m", max_tokens=50, messages=user("go"), extra_headers=chain)
            .content[0]
            .text
        )  # type: ignore[union-attr]
    assert text == "echo: go"
    assert [e["model"] for e in bedrock.log()] == [FIRST]


@pytest.mark.parametrize("surface", ["http", "grpc"])
def test_a_stream_cut_before_content_falls_back(
    sidecar: Any, stub: Any, bedrock: BedrockFake, surface: str
) -> None:
    bedrock.script({"cut_after": 1})
    seen = call(surface, sidecar, stub, True)
    assert seen.ok and seen.backend == "second" and seen.text == "echo: go"


def test_a_stream_cut_after_content_ends_with_an_error_event(
    sidecar: Any, bedrock: BedrockFake
) -> None:
    bedrock.script({"cut_after": 4, "frame_delay": 0.05, "text": "one two three four five"})
    texts: list[str] = []
    with (
        pytest.raises(anthropic.APIStatusError),
        client(sidecar).messages.stream(model="m", max_tokens=50, messages=user("go")) as stream,
    ):
        texts.extend(stream.text_stream)
    assert "".join(texts) == "one two "
    assert len(bedrock.log()) == 1


def test_wrong_secret_is_refused_by_signature_and_moves_on(
    sidecar: Any, bedrock: BedrockFake
) -> None:
    raw = client(sidecar).messages.with_raw_response.create(
        model="m",
        max_tokens=50,
        messages=user("go"),
        extra_headers={"x-anyllm-chain": "wrong-then-first"},
    )
    assert raw.headers["x-anyllm-backend"] == "first"
    assert raw.parse().content[0].text == "echo: go"  # type: ignore[union-attr]
    refused, answered = bedrock.log()
    assert (refused["status"], refused["error"]) == (403, "InvalidSignatureException")
    assert answered["status"] == 200
    logs = "\n".join(sidecar.log_lines())
    assert "upstream_auth_failed" in logs
    assert "not-the-secret" not in logs


@pytest.mark.parametrize("stream", [False, True], ids=["unary", "stream"])
@pytest.mark.parametrize("surface", ["http", "grpc"])
def test_anthropic_503_then_bedrock_throttled_then_bedrock_answers(
    sidecar: Any, stub: Any, bedrock: BedrockFake, upstream: Any, surface: str, stream: bool
) -> None:
    upstream.control.script({"status": 503})
    bedrock.script({"error": "ThrottlingException", "status": 429})
    chain = {"x-anyllm-chain": "cross"}
    if surface == "http":
        sdk = client(sidecar)
        if stream:
            with sdk.messages.stream(
                model="m", max_tokens=50, messages=user("go"), extra_headers=chain
            ) as events:
                text = events.get_final_message().content[0].text  # type: ignore[union-attr]
        else:
            raw = sdk.messages.with_raw_response.create(
                model="m", max_tokens=50, messages=user("go"), extra_headers=chain
            )
            assert raw.headers["x-anyllm-backend"] == "second"
            assert raw.headers["x-anyllm-attempts"] == "3"
            text = raw.parse().content[0].text  # type: ignore[union-attr]
    elif stream:
        responses = stub.StreamMessage(grpc_request("go"), metadata=list(chain.items()))
        text = "".join(
            e.content_block_delta.text_delta for e in responses if e.HasField("content_block_delta")
        )
        assert dict(responses.initial_metadata())["x-anyllm-backend"] == "second"
    else:
        message, unary = stub.CreateMessage.with_call(
            grpc_request("go"), metadata=list(chain.items())
        )
        text = message.content[0].text.text
        assert dict(unary.trailing_metadata())["x-anyllm-backend"] == "second"
    assert text == "echo: go"
    assert [e["status"] for e in upstream.control.log()] == [503]
    assert [(e["model"], e["status"]) for e in bedrock.log()] == [(FIRST, 429), (SECOND, 200)]


# --------------------------------------------------------------------------- IRSA


def chain_env(way: str, fake: BedrockFake, token_file: Path) -> dict[str, str]:
    if way == "irsa":  # what the EKS pod identity webhook injects for an annotated account
        return {
            "AWS_ROLE_ARN": "arn:aws:iam::123456789012:role/app",
            "AWS_WEB_IDENTITY_TOKEN_FILE": str(token_file),
            "AWS_ROLE_SESSION_NAME": "sidecar",
            "AWS_ENDPOINT_URL_STS": fake.base_url,
        }
    return {  # what EKS Pod Identity injects (the agent is at 169.254.170.23 there)
        "AWS_CONTAINER_CREDENTIALS_FULL_URI": fake.base_url + "/v1/credentials",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE": str(token_file),
    }


@pytest.mark.parametrize(("way", "service"), [("irsa", "sts"), ("pod-identity", "container")])
def test_cloud_credentials_refreshed_before_they_expire(
    tmp_path: Path, sidecar_factory: Callable[..., Any], way: str, service: str
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("eyJ-service-account-token", encoding="utf-8")
    lifetime = 3.0
    fake = BedrockFake(
        tmp_path,
        name="bedrock-irsa",
        args=["--sts-lifetime", str(lifetime), "--web-identity-token-file", str(token_file)],
    )
    try:
        env = aws_env(tmp_path, AWS_REGION=REGION, **chain_env(way, fake, token_file))
        backend = {"kind": "bedrock", "region": REGION, "base_url": fake.base_url}
        sidecar = sidecar_factory(
            {
                "server": {"http": "127.0.0.1:0", "grpc": "127.0.0.1:0"},
                "backends": {"irsa": backend},
                "chains": {"default": [{"backend": "irsa", "model": "anthropic.claude-v1:0"}]},
            },
            env=env,
        )
        sdk = client(sidecar)
        first = sdk.messages.create(model="m", max_tokens=50, messages=user("first"))
        # botocore may fetch twice for credentials this short-lived (its own refresh window is
        # 15 minutes); wait until every set issued so far has expired: the fake refuses them.
        before = fake.log(service)
        time.sleep(max(0.0, max(e["expires"] for e in before) - time.time()) + 0.5)
        second = sdk.messages.create(model="m", max_tokens=50, messages=user("second"))
        assert first.content[0].text == "echo: first"  # type: ignore[union-attr]
        assert second.content[0].text == "echo: second"  # type: ignore[union-attr]
        issued = fake.log(service)
        calls = fake.log()
        assert all(e["status"] == 200 for e in issued)
        if way == "irsa":
            assert issued[0]["body"]["RoleArn"] == "arn:aws:iam::123456789012:role/app"
        assert [e["status"] for e in calls] == [200, 200]  # no request failed
        assert calls[0]["access_key"] in {e["access_key"] for e in before}
        assert calls[1]["access_key"] in {e["access_key"] for e in issued[len(before) :]}
    finally:
        fake.close()
