"""The fake Bedrock (tests/upstream/bedrock_server.py) proven with the official clients before
anything trusts it: boto3's ``bedrock-runtime`` and ``sts`` clients and the anthropic SDK's
``AnthropicBedrock``. If they cannot talk to the fake, the fake is wrong."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import boto3
import botocore.config
import botocore.eventstream
import botocore.exceptions
import botocore.session
import pytest

from tests.upstream.bedrock_fake import ACCESS_KEY, REGION, SECRET_KEY, BedrockFake, aws_env

pytestmark = pytest.mark.integration

ARN = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-x-v1:0"
MODELS = [
    pytest.param("anthropic.claude-x-v1:0", id="foundation-model"),
    pytest.param("us.anthropic.claude-x-v1:0", id="inference-profile"),
    pytest.param("global.anthropic.claude-x-v1:0", id="global-profile"),
    pytest.param(ARN, id="arn"),
]


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BedrockFake]:
    directory = tmp_path_factory.mktemp("bedrock-fake")
    token = directory / "token"
    token.write_text("web-identity-token", encoding="utf-8")
    process = BedrockFake(directory, args=["--web-identity-token-file", str(token)])
    yield process
    process.close()


CLIENTS: list[Any] = []  # closed after each test, so no socket is left to the GC


@pytest.fixture(autouse=True)
def isolated(fake: BedrockFake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No AWS_* of the outer environment, no IMDS, empty config files; an empty script."""
    for name, value in aws_env(tmp_path).items():
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    fake.reset()
    yield
    while CLIENTS:
        CLIENTS.pop().close()


def runtime(fake: BedrockFake, secret: str = SECRET_KEY, **keys: Any) -> Any:
    return kept(
        boto3.client(
            "bedrock-runtime",
            region_name=REGION,
            endpoint_url=fake.base_url,
            aws_access_key_id=keys.get("access_key", ACCESS_KEY),
            aws_secret_access_key=secret,
            aws_session_token=keys.get("token"),
            config=botocore.config.Config(retries={"total_max_attempts": 1, "mode": "standard"}),
        )
    )


def kept(client: Any) -> Any:
    CLIENTS.append(client)
    return client


def body(text: str = "hello there", **extra: Any) -> str:
    doc = {
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 50,
        "messages": [{"role": "user", "content": text}],
        **extra,
    }
    return json.dumps(doc)


def bedrock_sdk(fake: BedrockFake) -> anthropic.AnthropicBedrock:
    return kept(
        anthropic.AnthropicBedrock(
            aws_access_key=ACCESS_KEY,
            aws_secret_key=SECRET_KEY,
            aws_region=REGION,
            base_url=fake.base_url,
            max_retries=0,
        )
    )


@pytest.mark.parametrize("model", MODELS)
def test_boto3_invoke_model(fake: BedrockFake, model: str) -> None:
    answer = json.loads(runtime(fake).invoke_model(modelId=model, body=body())["body"].read())
    assert answer["content"] == [{"type": "text", "text": "echo: hello there"}]
    assert answer["usage"] == {"input_tokens": 2, "output_tokens": 3}
    (seen,) = fake.log()
    assert seen["model"] == model
    assert ":" not in seen["path"].removeprefix("/model/")  # boto3 encodes ':' and '/'


def test_boto3_stream_in_real_event_stream_frames(fake: BedrockFake) -> None:
    response = runtime(fake).invoke_model_with_response_stream(modelId=ARN, body=body("a b"))
    events = [json.loads(part["chunk"]["bytes"]) for part in response["body"]]
    assert [e["type"] for e in events] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert "".join(e["delta"]["text"] for e in events if e["type"] == "content_block_delta") == (
        "echo: a b"
    )
    assert events[-1]["amazon-bedrock-invocationMetrics"]["outputTokenCount"] == 3


def test_boto3_count_tokens(fake: BedrockFake) -> None:
    result = runtime(fake).count_tokens(
        modelId="anthropic.claude-x-v1:0", input={"invokeModel": {"body": body("one two three")}}
    )
    assert result["inputTokens"] == 3


REFUSED = [
    pytest.param({"secret": "wrong"}, "InvalidSignatureException", id="wrong-secret"),
    pytest.param({"access_key": "AKIAUNKNOWN000000000"}, "UnrecognizedClientException", id="key"),
]


@pytest.mark.parametrize(("keys", "code"), REFUSED)
def test_a_wrong_signature_is_refused_as_aws_does(
    fake: BedrockFake, keys: dict[str, str], code: str
) -> None:
    client = runtime(fake, secret=keys.pop("secret", SECRET_KEY), **keys)
    with pytest.raises(botocore.exceptions.ClientError) as info:
        client.invoke_model(modelId=ARN, body=body())
    assert info.value.response["Error"]["Code"] == code
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    if code == "InvalidSignatureException":
        assert "signature we calculated does not match" in str(info.value)


@pytest.mark.parametrize(
    ("error", "status"),
    [("ThrottlingException", 429), ("ValidationException", 400), ("ModelTimeoutException", 408)],
)
def test_scripted_errors_reach_boto3_by_type(fake: BedrockFake, error: str, status: int) -> None:
    fake.script({"error": error, "status": status, "message": "scripted"})
    with pytest.raises(botocore.exceptions.ClientError) as info:
        runtime(fake).invoke_model(modelId=ARN, body=body())
    assert info.value.response["Error"] == {"Code": error, "Message": "scripted"}
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == status


def test_the_body_is_checked_as_bedrock_does(fake: BedrockFake) -> None:
    with pytest.raises(botocore.exceptions.ClientError) as info:
        runtime(fake).invoke_model(modelId=ARN, body=body(model="claude"))
    assert info.value.response["Error"]["Code"] == "ValidationException"
    assert "extraneous key [model]" in info.value.response["Error"]["Message"]


def test_exception_frames_reach_boto3(fake: BedrockFake) -> None:
    fake.script({"exception": "modelStreamErrorException", "after": 2, "message": "broke"})
    response = runtime(fake).invoke_model_with_response_stream(modelId=ARN, body=body())
    parts = []
    with pytest.raises(botocore.exceptions.EventStreamError) as info:
        for part in response["body"]:
            parts.append(part)
    response["body"].close()
    assert len(parts) == 2
    assert info.value.response["Error"]["Code"] == "modelStreamErrorException"


def test_a_bad_crc_is_caught_by_botocore(fake: BedrockFake) -> None:
    fake.script({"bad_crc": True})
    response = runtime(fake).invoke_model_with_response_stream(modelId=ARN, body=body())
    with pytest.raises(botocore.eventstream.ChecksumMismatch):
        list(response["body"])
    response["body"].close()


@pytest.mark.parametrize("model", MODELS)
def test_anthropic_bedrock_create_and_stream(fake: BedrockFake, model: str) -> None:
    sdk = bedrock_sdk(fake)
    message = sdk.messages.create(
        model=model, max_tokens=50, messages=[{"role": "user", "content": "hi sdk"}]
    )
    assert message.content[0].text == "echo: hi sdk"  # type: ignore[union-attr]
    with sdk.messages.stream(
        model=model, max_tokens=50, messages=[{"role": "user", "content": "stream me"}]
    ) as stream:
        final = stream.get_final_message()
    assert final.content[0].text == "echo: stream me"  # type: ignore[union-attr]
    assert final.stop_reason == "end_turn"
    assert [e["status"] for e in fake.log()] == [200, 200]
    assert all(e["body"]["anthropic_version"] == "2026-10-21" for e in fake.log())


def test_anthropic_bedrock_raises_on_an_exception_frame(fake: BedrockFake) -> None:
    fake.script({"exception": "throttlingException", "after": 3})
    with (
        pytest.raises(anthropic.APIError),
        bedrock_sdk(fake).messages.stream(
            model=ARN, max_tokens=50, messages=[{"role": "user", "content": "x"}]
        ) as stream,
    ):
        stream.get_final_message()


def test_boto3_sts_web_identity_then_signed_with_the_issued_keys(fake: BedrockFake) -> None:
    sts = kept(boto3.client("sts", region_name=REGION, endpoint_url=fake.base_url))
    issued = sts.assume_role_with_web_identity(
        RoleArn="arn:aws:iam::123456789012:role/app",
        RoleSessionName="test",
        WebIdentityToken="web-identity-token",
    )["Credentials"]
    client = runtime(
        fake,
        secret=issued["SecretAccessKey"],
        access_key=issued["AccessKeyId"],
        token=issued["SessionToken"],
    )
    answer = json.loads(client.invoke_model(modelId=ARN, body=body())["body"].read())
    assert answer["stop_reason"] == "end_turn"
    with pytest.raises(botocore.exceptions.ClientError) as info:
        runtime(
            fake, secret=issued["SecretAccessKey"], access_key=issued["AccessKeyId"]
        ).invoke_model(modelId=ARN, body=body())
    assert info.value.response["Error"]["Code"] == "UnrecognizedClientException"  # no token
    with pytest.raises(botocore.exceptions.ClientError) as refused:
        sts.assume_role_with_web_identity(
            RoleArn="arn:aws:iam::123456789012:role/app",
            RoleSessionName="test",
            WebIdentityToken="some-other-token",
        )
    assert refused.value.response["Error"]["Code"] == "InvalidIdentityToken"


def test_botocore_container_provider_reads_the_pod_identity_endpoint(
    fake: BedrockFake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = tmp_path / "pod-identity-token"
    token.write_text("web-identity-token", encoding="utf-8")
    monkeypatch.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", fake.base_url + "/v1/credentials")
    monkeypatch.setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", str(token))
    credentials = botocore.session.Session().get_credentials()
    assert credentials is not None and credentials.method == "container-role"
    frozen = credentials.get_frozen_credentials()
    client = runtime(
        fake, secret=frozen.secret_key, access_key=frozen.access_key, token=frozen.token
    )
    answer = json.loads(client.invoke_model(modelId=ARN, body=body())["body"].read())
    assert answer["stop_reason"] == "end_turn"
    token.write_text("not-the-token", encoding="utf-8")
    with pytest.raises(botocore.exceptions.CredentialRetrievalError):
        botocore.session.Session().get_credentials()
