"""The Bedrock backend in-process: request building (path, body, signature), AWS error mapping,
event-stream decoding and the credential cache, with the upstream session and the credential
source injected. The frames are built by the fake Bedrock's own encoder (proven against boto3 in
tests/test_bedrock_server.py)."""

from __future__ import annotations

import asyncio
import base64
import datetime
import json
from collections.abc import AsyncGenerator
from typing import Any

import msgspec
import orjson
import pytest
import yarl
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials, ReadOnlyCredentials

from sidecar.backends.aws import AwsCredentials, host_of
from sidecar.backends.bedrock import (
    BedrockBackend,
    EventStreamDecoder,
    bedrock_body,
    event_bytes,
    model_path,
)
from sidecar.backends.settings import BedrockSettings
from sidecar.config import ConfigError, build_config
from sidecar.engine.classify import Verdict, classify
from sidecar.engine.policy import Policy
from sidecar.errors import FailureKind, UpstreamError
from sidecar.model import Call, CountCall, CountTokensRequest, RawEvent, request_decoder
from sidecar.translate.bedrock_errors import error_from_bedrock, error_from_bedrock_frame
from tests.upstream.bedrock_server import answer_events, chunk_frame, exception_frame, frame

ENDPOINT = "https://bedrock-runtime.us-east-1.amazonaws.com"
ARN = "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc123"
KEYS = ReadOnlyCredentials("AKIAUNITTEST00000001", "unit-SECRET", "unit-TOKEN")


# --------------------------------------------------------------------------- seams


class FakeSession:
    """Stands in for ``UpstreamSession``: records requests, answers as scripted."""

    def __init__(
        self,
        *,
        content: bytes = b"",
        pieces: list[bytes] | None = None,
        error: tuple[int, bytes, dict[str, str]] | None = None,
    ) -> None:
        self.base_url = ENDPOINT
        self.content, self.pieces, self.error = content, pieces or [], error
        self.sent: list[dict[str, Any]] = []

    def url(self, path: str) -> yarl.URL:
        return yarl.URL(self.base_url + path, encoded=True)

    def _record(self, path: str, body: bytes, headers: dict[str, str], to_error: Any) -> None:
        self.sent.append({"path": path, "body": body, "headers": dict(headers)})
        if self.error is not None:
            raise to_error(*self.error)

    async def post_json(
        self, backend: str, path: str, body: bytes, headers: Any, to_error: Any, *_: Any
    ) -> bytes:
        self._record(path, body, headers, to_error)
        return self.content

    async def post_stream(
        self,
        backend: str,
        path: str,
        body: bytes,
        headers: Any,
        to_error: Any,
        *_: Any,
        decoder: EventStreamDecoder,
    ) -> AsyncGenerator[list[Any] | None, None]:
        self._record(path, body, headers, to_error)
        for piece in self.pieces:
            frames = decoder.feed(piece)
            if frames:
                yield frames
        yield None

    async def aclose(self) -> None:
        pass


class Source:
    """A botocore-like credential source: frozen keys, an expiry, a count of fetches."""

    def __init__(self, expiry: datetime.datetime | None = None) -> None:
        self._expiry_time = expiry
        self.fetched = 0

    def get_frozen_credentials(self) -> ReadOnlyCredentials:
        self.fetched += 1
        return ReadOnlyCredentials(f"ASIAKEY{self.fetched:013d}", "secret", "token")


NOW = datetime.datetime(2026, 12, 1, 12, 0, tzinfo=datetime.UTC)


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def static_credentials() -> AwsCredentials:
    return AwsCredentials("b", lambda: Credentials(KEYS.access_key, KEYS.secret_key, KEYS.token))


def backend(session: FakeSession, credentials: AwsCredentials | None = None, **cfg: Any) -> Any:
    settings = BedrockSettings(region="us-east-1", **cfg)
    return BedrockBackend(
        "bedrock", settings, session=session, credentials=credentials or static_credentials()
    )


def call(body: dict[str, Any], *, raw: bool = True, beta: str | None = None) -> Call:
    encoded = json.dumps(body).encode()
    return Call(
        request=request_decoder.decode(encoded),
        request_id="req-7",
        raw_body=encoded if raw else None,
        passthrough_headers=(("anthropic-beta", beta),) if beta else (),
    )


BODY = {"model": "claude-x", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}


def verify(sent: dict[str, Any], keys: ReadOnlyCredentials = KEYS) -> bool:
    """Recompute the SigV4 signature over the request as sent (what AWS does)."""
    headers = sent["headers"]
    auth = headers["Authorization"]
    signed = auth.split("SignedHeaders=")[1].split(",")[0].split(";")
    request = AWSRequest(
        method="POST",
        url=ENDPOINT + sent["path"],
        data=sent["body"],
        headers={name: next(v for k, v in headers.items() if k.lower() == name) for name in signed},
    )
    request.context["timestamp"] = headers["X-Amz-Date"]
    signer = SigV4Auth(keys, "bedrock", "us-east-1")
    expected = signer.signature(
        signer.string_to_sign(request, signer.canonical_request(request)), request
    )
    return auth.endswith("Signature=" + expected)


# --------------------------------------------------------------------------- request building

PATHS = [
    pytest.param(
        "anthropic.claude-3-5-sonnet-20241022-v2:0",
        "anthropic.claude-3-5-sonnet-20241022-v2%3A0",
        id="model",
    ),
    pytest.param(
        "us.anthropic.claude-sonnet-4-v1:0", "us.anthropic.claude-sonnet-4-v1%3A0", id="us-profile"
    ),
    pytest.param("global.anthropic.claude-x-v1:0", "global.anthropic.claude-x-v1%3A0", id="global"),
    pytest.param(
        ARN,
        "arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Aapplication-inference-profile%2Fabc123",
        id="arn",
    ),
]


@pytest.mark.parametrize(("model", "encoded"), PATHS)
def test_model_ids_are_percent_encoded_as_aws_does(model: str, encoded: str) -> None:
    assert model_path(model, "invoke") == f"/model/{encoded}/invoke"


BODIES = [
    pytest.param(dict(BODY), "v1", [], {"anthropic_version": "v1"}, id="model-removed"),
    pytest.param(
        {**BODY, "stream": True}, "v1", [], {"anthropic_version": "v1"}, id="stream-removed"
    ),
    pytest.param(
        dict(BODY),
        "v1",
        ["a", "b"],
        {"anthropic_version": "v1", "anthropic_beta": ["a", "b"]},
        id="betas",
    ),
    pytest.param(
        {**BODY, "future": {"x": 1}},
        "v1",
        [],
        {"anthropic_version": "v1", "future": {"x": 1}},
        id="unknown-kept",
    ),
    pytest.param(
        {**BODY, "anthropic_version": "mine"},
        "v1",
        [],
        {"anthropic_version": "mine"},
        id="callers-version-kept",
    ),
]


@pytest.mark.parametrize(("doc", "version", "betas", "extra"), BODIES)
def test_body(doc: dict[str, Any], version: str, betas: list[str], extra: dict[str, Any]) -> None:
    out = orjson.loads(bedrock_body(dict(doc), version, betas))
    expected = {k: v for k, v in doc.items() if k not in ("model", "stream")} | extra
    assert out == expected


@pytest.mark.parametrize("raw", [True, False], ids=["callers-bytes", "typed-request"])
async def test_create_signs_exactly_what_it_sends(raw: bool) -> None:
    answer = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "m",
        "content": [{"type": "text", "text": "yo"}],
        "stop_reason": "end_turn",
        "usage": {"input_tokens": 1, "output_tokens": 1},
    }
    session = FakeSession(content=json.dumps(answer).encode())
    message = await backend(session).create(
        call(BODY, raw=raw, beta="b1,b2"), ARN, [], connect_timeout=1.0
    )
    assert message.body == session.content  # relayed byte for byte
    (sent,) = session.sent
    assert sent["path"] == model_path(ARN, "invoke")
    body = orjson.loads(sent["body"])
    assert body["anthropic_version"] == "2026-10-21"
    assert body["anthropic_beta"] == ["b1", "b2"]
    assert "model" not in body
    headers = sent["headers"]
    assert headers["host"] == "bedrock-runtime.us-east-1.amazonaws.com"
    assert headers["X-Amz-Security-Token"] == "unit-TOKEN"
    assert "host;" in headers["Authorization"] and "x-amz-date" in headers["Authorization"]
    assert "/us-east-1/bedrock/aws4_request" in headers["Authorization"]
    assert headers["x-request-id"] == "req-7"
    assert verify(sent)
    assert not verify({**sent, "path": sent["path"].replace("%3A", ":")})  # the path is signed


def test_configured_anthropic_version() -> None:
    session = FakeSession()
    b = backend(session, anthropic_version="bedrock-2023-05-31")
    assert orjson.loads(b._body(call(BODY)))["anthropic_version"] == "bedrock-2023-05-31"


@pytest.mark.parametrize(
    ("url", "host"),
    [
        (ENDPOINT + "/model/x", "bedrock-runtime.us-east-1.amazonaws.com"),
        (
            "https://vpce-1.bedrock-runtime.us-east-1.vpce.amazonaws.com:443/",
            "vpce-1.bedrock-runtime.us-east-1.vpce.amazonaws.com",
        ),
        ("http://127.0.0.1:8123/model/x", "127.0.0.1:8123"),
    ],
    ids=["default", "default-port-dropped", "local-port-kept"],
)
def test_host_header(url: str, host: str) -> None:
    assert host_of(url) == host


# --------------------------------------------------------------------------- errors


def aws(error: str, status: int, message: str = "no") -> UpstreamError:
    body = json.dumps({"message": message}).encode()
    return error_from_bedrock(
        status, body, {"x-amzn-ErrorType": f"{error}:http://internal.amazon.com/coral/"}
    )


ERRORS = [
    ("ThrottlingException", 429, FailureKind.STATUS, "rate_limit_error", 429, Verdict.MOVE_ON),
    (
        "ServiceQuotaExceededException",
        400,
        FailureKind.STATUS,
        "rate_limit_error",
        429,
        Verdict.MOVE_ON,
    ),
    (
        "ServiceUnavailableException",
        503,
        FailureKind.STATUS,
        "overloaded_error",
        503,
        Verdict.MOVE_ON,
    ),
    ("ModelNotReadyException", 429, FailureKind.STATUS, "overloaded_error", 429, Verdict.MOVE_ON),
    ("InternalServerException", 500, FailureKind.STATUS, "api_error", 500, Verdict.MOVE_ON),
    ("ModelErrorException", 424, FailureKind.STATUS, "api_error", 502, Verdict.MOVE_ON),
    ("ModelTimeoutException", 408, FailureKind.STATUS, "timeout_error", 408, Verdict.MOVE_ON),
    ("ValidationException", 400, FailureKind.STATUS, "invalid_request_error", 400, Verdict.STOP),
    ("AccessDeniedException", 403, FailureKind.STATUS, "permission_error", 403, Verdict.STOP),
    ("ResourceNotFoundException", 404, FailureKind.STATUS, "not_found_error", 404, Verdict.STOP),
    ("ExpiredTokenException", 403, FailureKind.AUTH, "authentication_error", 403, Verdict.MOVE_ON),
    (
        "UnrecognizedClientException",
        403,
        FailureKind.AUTH,
        "authentication_error",
        403,
        Verdict.MOVE_ON,
    ),
    (
        "InvalidSignatureException",
        403,
        FailureKind.AUTH,
        "authentication_error",
        403,
        Verdict.MOVE_ON,
    ),
    (
        "MissingAuthenticationTokenException",
        403,
        FailureKind.AUTH,
        "authentication_error",
        403,
        Verdict.MOVE_ON,
    ),
    ("SomeFutureException", 502, FailureKind.STATUS, "api_error", 502, Verdict.MOVE_ON),
    ("SomeFutureException", 409, FailureKind.STATUS, "invalid_request_error", 409, Verdict.STOP),
]


@pytest.mark.parametrize(
    ("error", "status", "kind", "error_type", "counts", "verdict"),
    ERRORS,
    ids=[f"{e[0]}-{e[1]}" for e in ERRORS],
)
def test_error_responses(
    error: str, status: int, kind: FailureKind, error_type: str, counts: int, verdict: Verdict
) -> None:
    mapped = aws(error, status)
    assert (mapped.kind, mapped.error_type, mapped.status) == (kind, error_type, counts)
    assert classify(mapped, Policy()) is verdict
    assert "no" in mapped.message


def test_error_type_from_the_body_when_no_header() -> None:
    body = b'{"__type": "com.amazon.coral.service#ThrottlingException", "Message": "slow down"}'
    mapped = error_from_bedrock(429, body, {})
    assert (mapped.error_type, mapped.message) == (
        "rate_limit_error",
        "ThrottlingException: slow down",
    )


def test_context_overflow_is_recognised() -> None:
    mapped = aws("ValidationException", 400, "prompt is too long: 210000 tokens > 200000 maximum")
    assert mapped.context_overflow


def test_signature_mismatch_message_never_carries_the_canonical_request() -> None:
    message = (
        "The request signature we calculated does not match the signature you provided.\n\n"
        "The Canonical String for this request should have been\n'POST\n/model/x/invoke\n\n"
        "x-amz-security-token:FwoGZXIvYXdzEXAMPLETOKEN\n' Credential=AKIAABCDEFGHIJKLMNOP"
    )
    mapped = aws("InvalidSignatureException", 403, message)
    assert "FwoGZXIvYXdz" not in mapped.message and "Canonical" not in mapped.message
    assert (
        "AKIAABCDEFGHIJKLMNOP"
        not in aws("AccessDeniedException", 403, "user AKIAABCDEFGHIJKLMNOP is not allowed").message
    )


FRAMES = [
    ("throttlingException", "rate_limit_error"),
    ("modelStreamErrorException", "api_error"),
    ("internalServerException", "api_error"),
    ("validationException", "invalid_request_error"),
    ("serviceUnavailableException", "overloaded_error"),
]


@pytest.mark.parametrize(("name", "error_type"), FRAMES, ids=[f[0] for f in FRAMES])
def test_exception_frames(name: str, error_type: str) -> None:
    mapped = error_from_bedrock_frame(name, b'{"message": "boom"}')
    assert (mapped.kind, mapped.error_type, mapped.status) == (
        FailureKind.STREAM_ERROR,
        error_type,
        None,
    )
    assert classify(mapped, Policy()) is Verdict.MOVE_ON  # before content; the engine ends it after


# --------------------------------------------------------------------------- event-stream

NOT_JSON = frame(
    {":event-type": "chunk", ":message-type": "event"},
    json.dumps({"bytes": base64.b64encode(b"not json").decode()}).encode(),
)
EVENTS = answer_events({"messages": [{"role": "user", "content": "hi"}]}, "m", 1, "echo: a b")
STREAM = b"".join(chunk_frame(event, i) for i, event in enumerate(EVENTS))


@pytest.mark.parametrize("size", [1, 7, 64, len(STREAM)], ids=["byte", "7", "64", "whole"])
def test_event_stream_decoded_in_any_pieces(size: int) -> None:
    decoder = EventStreamDecoder("b")
    messages = []
    for i in range(0, len(STREAM), size):
        messages += decoder.feed(STREAM[i : i + size])
    datas = [event_bytes("b", m) for m in messages]
    assert [json.loads(d)["type"] for d in datas if d] == [e["type"] for e in EVENTS]
    assert b"amazon-bedrock-invocationMetrics" not in datas[-1]  # Bedrock-only, stripped
    assert json.loads(datas[-1]) == {"type": "message_stop"}


def test_a_bad_crc_is_an_invalid_response() -> None:
    bad = STREAM[:20] + bytes([STREAM[20] ^ 1]) + STREAM[21:]
    with pytest.raises(UpstreamError) as info:
        EventStreamDecoder("b").feed(bad)
    assert info.value.kind is FailureKind.INVALID_RESPONSE


def test_unknown_event_frames_are_skipped() -> None:
    other = frame({":event-type": "newThing", ":message-type": "event"}, b"{}")
    (message,) = EventStreamDecoder("b").feed(other)
    assert event_bytes("b", message) is None


def test_error_message_frames() -> None:
    failed = frame(
        {":message-type": "error", ":error-code": "InternalFailure", ":error-message": "oops"}, b""
    )
    (message,) = EventStreamDecoder("b").feed(failed)
    with pytest.raises(UpstreamError) as info:
        event_bytes("b", message)
    assert info.value.kind is FailureKind.STREAM_ERROR and "oops" in info.value.message


async def collect(b: Any, model: str = "m") -> list[Any]:
    events = []
    async for batch in b.stream(call(BODY), model, [], connect_timeout=1.0):
        events += batch
    return events


async def test_stream_relays_every_event() -> None:
    session = FakeSession(pieces=[STREAM[:50], STREAM[50:]])
    events = await collect(backend(session), ARN)
    assert all(isinstance(e, RawEvent) for e in events)
    assert [e.type for e in events] == [e["type"] for e in EVENTS]
    # relayed byte for byte, except the Bedrock-only metrics of the last event
    assert [e.data for e in events[:-1]] == [json.dumps(e).encode() for e in EVENTS[:-1]]
    assert json.loads(events[-1].data) == {"type": "message_stop"}
    assert session.sent[0]["path"] == model_path(ARN, "invoke-with-response-stream")
    assert verify(session.sent[0])


@pytest.mark.parametrize(
    ("pieces", "kind"),
    [
        ([STREAM[: len(STREAM) // 2]], FailureKind.INCOMPLETE),
        (
            [chunk_frame(EVENTS[0], 0), exception_frame("throttlingException", "slow")],
            FailureKind.STREAM_ERROR,
        ),
        ([NOT_JSON], FailureKind.INVALID_RESPONSE),
        (
            [frame({":event-type": "chunk", ":message-type": "event"}, b"[]")],
            FailureKind.INVALID_RESPONSE,
        ),
    ],
    ids=["ends-early", "exception-frame", "unreadable-event", "chunk-without-bytes"],
)
async def test_stream_failures(pieces: list[bytes], kind: FailureKind) -> None:
    with pytest.raises(UpstreamError) as info:
        await collect(backend(FakeSession(pieces=pieces)))
    assert info.value.kind is kind
    assert info.value.backend == "bedrock"


# --------------------------------------------------------------------------- auth and counting


async def test_a_refused_token_resolves_the_credentials_again() -> None:
    resolved: list[int] = []

    def resolve() -> Credentials:
        resolved.append(1)
        return Credentials(f"AKIA{len(resolved):016d}", "s", None)

    session = FakeSession(
        error=(403, b'{"message": "expired"}', {"x-amzn-ErrorType": "ExpiredTokenException"})
    )
    b = backend(session, AwsCredentials("bedrock", resolve))
    for _ in range(2):
        with pytest.raises(UpstreamError) as info:
            await b.create(call(BODY), "m", [], connect_timeout=1.0)
        assert info.value.kind is FailureKind.AUTH and info.value.backend == "bedrock"
    assert len(resolved) == 2
    keys = [s["headers"]["Authorization"].split("Credential=")[1][:24] for s in session.sent]
    assert keys[0] != keys[1]


def count_call() -> CountCall:
    doc = {"model": "claude-x", "messages": BODY["messages"], "cache_future": {"x": 1}}
    raw = json.dumps(doc).encode()
    request = msgspec.json.decode(raw, type=CountTokensRequest)
    return CountCall(request=request, request_id="r", raw_body=raw)


async def test_count_tokens_uses_bedrock_count_tokens() -> None:
    session = FakeSession(content=b'{"inputTokens": 17}')
    count = await backend(session).count_tokens(count_call(), ARN)
    assert (count.input_tokens, count.estimated) == (17, False)
    (sent,) = session.sent
    assert sent["path"] == model_path(ARN, "count-tokens")
    inner = json.loads(base64.b64decode(json.loads(sent["body"])["input"]["invokeModel"]["body"]))
    assert inner["messages"] == BODY["messages"] and "model" not in inner
    assert inner["cache_future"] == {"x": 1}  # the caller's own body
    assert inner["anthropic_version"] == "2026-10-21" and inner["max_tokens"] == 1
    assert verify(sent)


async def test_count_tokens_estimates_where_bedrock_cannot_count() -> None:
    session = FakeSession(
        error=(400, b'{"message": "not supported"}', {"x-amzn-ErrorType": "ValidationException"})
    )
    count = await backend(session).count_tokens(count_call(), "us.anthropic.x")
    assert count.estimated and count.input_tokens > 0


# --------------------------------------------------------------------------- credentials cache


async def test_static_credentials_are_fetched_once() -> None:
    creds = static_credentials()
    got = [await creds.get() for _ in range(5)]
    assert all(g.access_key == KEYS.access_key for g in got)
    assert creds.fetches == 1


async def test_temporary_credentials_refresh_in_the_background_then_wait_when_expired() -> None:
    clock = Clock()
    source = Source(NOW + datetime.timedelta(seconds=3600))
    wall = [NOW]
    creds = AwsCredentials("b", lambda: source, clock=clock, wall=lambda: wall[0])
    first = await creds.get()
    assert source.fetched == 1
    clock.t += 3600 - 301  # not yet in the refresh window: cached, no fetch
    assert await creds.get() is first and source.fetched == 1
    clock.t += 2  # in the window: served from the cache, refreshed behind it
    wall[0] = NOW + datetime.timedelta(seconds=3600 - 299)
    source._expiry_time = wall[0] + datetime.timedelta(seconds=3600)
    assert await creds.get() is first
    for _ in range(100):
        if source.fetched == 2:
            break
        await asyncio.sleep(0.01)
    assert source.fetched == 2
    second = await creds.get()
    assert second is not first and second.access_key.endswith("2")


async def test_expired_credentials_are_waited_for_and_shared() -> None:
    clock = Clock()
    source = Source(NOW + datetime.timedelta(seconds=100))
    wall = [NOW]
    creds = AwsCredentials("b", lambda: source, clock=clock, wall=lambda: wall[0])
    await creds.get()
    clock.t += 100  # past use_until
    wall[0] = NOW + datetime.timedelta(seconds=100)
    source._expiry_time = wall[0] + datetime.timedelta(seconds=100)
    got = await asyncio.gather(*(creds.get() for _ in range(10)))
    assert source.fetched == 2  # ten waiting requests, one refresh
    assert len({g.access_key for g in got}) == 1


@pytest.mark.parametrize(
    "resolve",
    [lambda: None, lambda: (_ for _ in ()).throw(RuntimeError("imds said no"))],
    ids=["no-credentials", "chain-failed"],
)
async def test_no_credentials_is_this_targets_auth_failure(resolve: Any) -> None:
    with pytest.raises(UpstreamError) as info:
        await AwsCredentials("b", resolve).get()
    assert info.value.kind is FailureKind.AUTH
    assert classify(info.value, Policy()) is Verdict.MOVE_ON


# --------------------------------------------------------------------------- settings

SETTINGS_ERRORS = [
    pytest.param({}, "region", id="no-region"),
    pytest.param(
        {"region": "us-east-1", "aws_access_key_id": "AKIA"}, "go together", id="key-without-secret"
    ),
    pytest.param(
        {"region": "us-east-1", "aws_session_token": "t"}, "needs", id="token-without-key"
    ),
    pytest.param(
        {
            "region": "us-east-1",
            "profile": "p",
            "aws_access_key_id": "a",
            "aws_secret_access_key": "s",
        },
        "exclude",
        id="profile-and-keys",
    ),
    pytest.param({"region": "us-east-1", "api_key": "x"}, "api_key", id="unknown-key"),
]


@pytest.mark.parametrize(("doc", "problem"), SETTINGS_ERRORS)
def test_settings_errors_name_the_path(doc: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        build_config({"backends": {"b": {"kind": "bedrock", **doc}}}, "test.yaml", {})
    assert "backends.b" in str(info.value) and problem in str(info.value)


def test_settings_repr_hides_keys() -> None:
    settings = msgspec.convert(
        {
            "region": "eu-west-1",
            "aws_access_key_id": "AKIAX",
            "aws_secret_access_key": "SECRET-S",
            "aws_session_token": "TOKEN-T",
        },
        BedrockSettings,
    )
    assert "SECRET-S" not in repr(settings) and "TOKEN-T" not in repr(settings)
    assert settings.endpoint == "https://bedrock-runtime.eu-west-1.amazonaws.com"
