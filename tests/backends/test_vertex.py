"""kind: vertex in-process (``sidecar.backends.vertex``): hosts and paths, the settings, the
body, headers, error mapping through the backend, the 401 refresh. The scripted session stands
in for ``UpstreamSession``; the real one, the real google-auth and a real fake Vertex are in
tests/integration/test_vertex.py."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping
from pathlib import Path
from typing import Any

import orjson
import pytest

from sidecar.backends import build_backend
from sidecar.backends.settings import VertexSettings
from sidecar.backends.vertex import (
    VertexBackend,
    count_tokens_path,
    is_openapi_model,
    model_path,
    vertex_host,
)
from sidecar.config import ConfigError, build_config
from sidecar.engine.classify import Verdict, classify
from sidecar.engine.policy import Policy
from sidecar.errors import FailureKind, UpstreamError
from sidecar.model import (
    Call,
    CountCall,
    Message,
    RawEvent,
    count_tokens_decoder,
    request_decoder,
)
from sidecar.translate.google_errors import error_from_google
from sidecar.translate.sse import SSEDecoder, SSEFrame
from tests.backends.google_fakes import FakeClock, FakeCredentials, tokens_for

BODY = {"model": "claude-x", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}
MESSAGE = {
    "id": "msg_1",
    "type": "message",
    "role": "assistant",
    "model": "claude-x",
    "content": [{"type": "text", "text": "hello"}],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {"input_tokens": 1, "output_tokens": 1},
}
EVENTS = (
    b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_1","type":"message",'
    b'"role":"assistant","model":"claude-x","content":[],"stop_reason":null,"stop_sequence":null,'
    b'"usage":{"input_tokens":1,"output_tokens":1}}}\n\n'
    b'event: content_block_start\ndata: {"type":"content_block_start","index":0,'
    b'"content_block":{"type":"text","text":""}}\n\n'
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
    b'"delta":{"type":"text_delta","text":"hello"}}\n\n'
    b'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n'
    b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn",'
    b'"stop_sequence":null},"usage":{"output_tokens":1}}\n\n'
    b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
)


def google_body(status: int, name: str) -> bytes:
    return orjson.dumps({"error": {"code": status, "message": f"m {name}", "status": name}})


# --------------------------------------------------------------------------- hosts and paths


@pytest.mark.parametrize(
    ("region", "base_url", "host"),
    [
        pytest.param("us-east5", "", "https://us-east5-aiplatform.googleapis.com", id="region"),
        pytest.param(
            "europe-west1", "", "https://europe-west1-aiplatform.googleapis.com", id="europe"
        ),
        pytest.param("global", "", "https://aiplatform.googleapis.com", id="global"),
        pytest.param("us", "", "https://aiplatform.us.rep.googleapis.com", id="multi-region-us"),
        pytest.param("eu", "", "https://aiplatform.eu.rep.googleapis.com", id="multi-region-eu"),
        pytest.param("us-east5", "http://127.0.0.1:9", "http://127.0.0.1:9", id="base-url"),
        pytest.param("us-east5", "http://127.0.0.1:9/v1", "http://127.0.0.1:9", id="base-url-v1"),
        pytest.param("global", "https://proxy/vertex/v1/", "https://proxy/vertex", id="prefix-v1/"),
    ],
)
def test_host(region: str, base_url: str, host: str) -> None:
    assert vertex_host(region, base_url) == host


@pytest.mark.parametrize(
    ("model", "stream", "path"),
    [
        pytest.param(
            "claude-sonnet-4-5@20250929",
            False,
            "/v1/projects/proj/locations/us-east5/publishers/anthropic/models/"
            "claude-sonnet-4-5@20250929:rawPredict",
            id="raw",
        ),
        pytest.param(
            "claude-x",
            True,
            "/v1/projects/proj/locations/us-east5/publishers/anthropic/models/"
            "claude-x:streamRawPredict",
            id="stream",
        ),
        pytest.param(
            "a/b:c",
            False,
            "/v1/projects/proj/locations/us-east5/publishers/anthropic/models/a%2Fb%3Ac:rawPredict",
            id="escaped",
        ),
    ],
)
def test_model_path(model: str, stream: bool, path: str) -> None:
    assert model_path("proj", "us-east5", model, stream=stream) == path


def test_count_tokens_path() -> None:
    assert count_tokens_path("proj", "global") == (
        "/v1/projects/proj/locations/global/publishers/anthropic/models/count-tokens:rawPredict"
    )


# --------------------------------------------------------------------------- settings


@pytest.mark.parametrize(
    ("doc", "problem"),
    [
        pytest.param({"region": "us-east5"}, "project", id="no-project"),
        pytest.param({"project": "p"}, "region", id="no-region"),
        pytest.param({"project": "p", "region": "evil.com/x"}, "region", id="bad-region"),
        pytest.param({"project": "P Q", "region": "us-east5"}, "project", id="bad-project"),
        pytest.param(
            {"project": "p", "region": "us-east5", "credentials_file": "/nonexistent.json"},
            "credentials_file",
            id="missing-credentials-file",
        ),
        pytest.param(
            {"project": "p", "region": "us-east5", "api_key": "k"}, "api_key", id="unknown-key"
        ),
    ],
)
def test_bad_settings_name_the_field(doc: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError, match=problem) as info:
        build_config({"backends": {"v": {"kind": "vertex", **doc}}}, "test.yaml", {})
    assert "backends.v" in str(info.value)


async def test_a_complete_config_loads_and_builds(tmp_path: Path) -> None:
    key = tmp_path / "sa.json"
    key.write_text("{}")
    doc = {
        "kind": "vertex",
        "project": "my-proj",
        "region": "us-east5",
        "credentials_file": str(key),
        "anthropic_version": "vertex-2023-10-16",
        "base_url": "http://127.0.0.1:9/v1",
    }
    config = build_config({"backends": {"v": doc}}, "test.yaml", {})
    settings = config.backends["v"]
    assert isinstance(settings, VertexSettings)
    assert settings.kind == "vertex"
    assert "sa.json" not in repr(settings)
    backend = build_backend("v", settings)
    assert backend.kind == "vertex"
    await backend.aclose()


# --------------------------------------------------------------------------- a scripted session


class ScriptedSession:
    """Stands in for ``UpstreamSession``: answers from a list, records each request."""

    def __init__(self, *answers: tuple[int, bytes]) -> None:
        self.answers = list(answers)
        self.requests: list[dict[str, Any]] = []

    def _answer(
        self, path: str, body: bytes, headers: Mapping[str, str], to_error: Any, **kw: Any
    ) -> bytes:
        self.requests.append({"path": path, "body": orjson.loads(body), "headers": dict(headers)})
        status, content = self.answers.pop(0)
        if status >= 400:
            raise to_error(status, content, {})
        if kw.get("headers_out") is not None:
            kw["headers_out"].append(("request-id", f"req_vertex_{len(self.requests)}"))
        return content

    async def post_json(
        self,
        backend: str,
        path: str,
        body: bytes,
        headers: Mapping[str, str],
        to_error: Any,
        *_: Any,
        **kw: Any,
    ) -> bytes:
        return self._answer(path, body, headers, to_error, **kw)

    async def post_sse(
        self,
        backend: str,
        path: str,
        body: bytes,
        headers: Mapping[str, str],
        to_error: Any,
        *_: Any,
        **kw: Any,
    ) -> AsyncGenerator[list[SSEFrame] | None, None]:
        content = self._answer(path, body, headers, to_error, **kw)
        decoder = SSEDecoder()
        yield decoder.feed(content)
        yield None

    async def aclose(self) -> None:
        pass


def backend_with(
    session: ScriptedSession, **settings: Any
) -> tuple[VertexBackend, FakeCredentials, FakeClock]:
    clock = FakeClock()
    credentials = FakeCredentials(clock)
    config = VertexSettings(project="proj", region="us-east5", **settings)
    backend = VertexBackend(
        "v",
        config,
        tokens=tokens_for(credentials, clock),
        session=session,  # type: ignore[arg-type]
    )
    return backend, credentials, clock


def call(body: dict[str, Any] | None = None, *, raw: bool = True, **fields: Any) -> Call:
    data = orjson.dumps(body or BODY)
    return Call(
        request=request_decoder.decode(data),
        request_id="req-1",
        raw_body=data if raw else None,
        **fields,
    )


# --------------------------------------------------------------------------- request building


@pytest.mark.parametrize(
    ("body", "raw", "stream", "expected"),
    [
        pytest.param(
            {**BODY, "future_field": {"x": 1}},
            True,
            False,
            {**BODY, "future_field": {"x": 1}, "anthropic_version": "2026-10-21"},
            id="raw-keeps-unknown-fields",
        ),
        pytest.param(
            {**BODY, "stream": True},
            True,
            False,
            {**BODY, "anthropic_version": "2026-10-21"},
            id="raw-create-drops-stream",
        ),
        pytest.param(
            BODY,
            True,
            True,
            {**BODY, "stream": True, "anthropic_version": "2026-10-21"},
            id="raw-stream-keeps-stream-true",
        ),
        pytest.param(
            {**BODY, "anthropic_version": "vertex-2023-10-16"},
            True,
            False,
            {**BODY, "anthropic_version": "vertex-2023-10-16"},
            id="the-callers-version-wins",
        ),
        pytest.param(
            BODY, False, False, {**BODY, "anthropic_version": "2026-10-21"}, id="typed-request"
        ),
    ],
)
async def test_body(
    body: dict[str, Any], raw: bool, stream: bool, expected: dict[str, Any]
) -> None:
    answer = EVENTS if stream else orjson.dumps(MESSAGE)
    session = ScriptedSession((200, answer))
    backend, _, _ = backend_with(session)
    if stream:
        async for _ in backend.stream(call(body, raw=raw), "claude-up", [], connect_timeout=1):
            pass
    else:
        await backend.create(call(body, raw=raw), "claude-up", [], connect_timeout=1)
    (request,) = session.requests
    expected = {k: v for k, v in expected.items() if k != "model"}
    assert request["body"] == expected
    method = "streamRawPredict" if stream else "rawPredict"
    assert request["path"].endswith(f"/models/claude-up:{method}")


async def test_headers_bearer_token_and_betas_only() -> None:
    session = ScriptedSession((200, orjson.dumps(MESSAGE)))
    backend, _, _ = backend_with(session)
    passthrough = (("anthropic-version", "2023-06-01"), ("anthropic-beta", "context-1m"))
    await backend.create(call(passthrough_headers=passthrough), "m", [], connect_timeout=1)
    headers = session.requests[0]["headers"]
    assert headers["authorization"] == "Bearer tok-1"
    assert headers["anthropic-beta"] == "context-1m"
    assert "anthropic-version" not in headers  # Vertex takes the version in the body
    assert headers["x-request-id"] == "req-1"


async def test_a_quota_project_is_sent_as_google_auth_would() -> None:
    session = ScriptedSession((200, orjson.dumps(MESSAGE)))
    backend, credentials, _ = backend_with(session)
    credentials.quota_project_id = "billing-proj"
    await backend.create(call(), "m", [], connect_timeout=1)
    assert session.requests[0]["headers"]["x-goog-user-project"] == "billing-proj"


async def test_stream_events_end_with_message_stop() -> None:
    backend, _, _ = backend_with(ScriptedSession((200, EVENTS)))
    events = [
        e async for batch in backend.stream(call(), "m", [], connect_timeout=1) for e in batch
    ]
    assert [e.type for e in events] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert all(isinstance(e, RawEvent) for e in events)
    assert events[0].headers == (("request-id", "req_vertex_1"),)  # with the first event
    assert events[3].data == b'{"type":"content_block_stop","index":0}'  # relayed as sent


async def test_count_tokens_is_exact() -> None:
    session = ScriptedSession((200, b'{"input_tokens": 42}'))
    backend, _, _ = backend_with(session)
    raw = orjson.dumps({**BODY, "future_field": 1})
    count_call = CountCall(
        request=count_tokens_decoder.decode(raw), request_id="req-2", raw_body=raw
    )
    count = await backend.count_tokens(count_call, "claude-up")
    assert count.input_tokens == 42 and not count.estimated
    (sent,) = session.requests
    assert sent["path"].endswith("/publishers/anthropic/models/count-tokens:rawPredict")
    assert sent["body"]["model"] == "claude-up"
    assert sent["body"]["anthropic_version"] == "2026-10-21"
    assert sent["body"]["future_field"] == 1  # the caller's own body


# --------------------------------------------------------------------------- errors


DEFAULT = Policy()


@pytest.mark.parametrize(
    ("status", "body", "error_type", "verdict"),
    [
        pytest.param(
            429,
            google_body(429, "RESOURCE_EXHAUSTED"),
            "rate_limit_error",
            Verdict.MOVE_ON,
            id="429-resource-exhausted",
        ),
        pytest.param(
            503,
            google_body(503, "UNAVAILABLE"),
            "overloaded_error",
            Verdict.MOVE_ON,
            id="503-unavailable",
        ),
        pytest.param(
            500, google_body(500, "INTERNAL"), "api_error", Verdict.MOVE_ON, id="500-internal"
        ),
        pytest.param(
            504,
            google_body(504, "DEADLINE_EXCEEDED"),
            "timeout_error",
            Verdict.MOVE_ON,
            id="504-deadline",
        ),
        pytest.param(
            400,
            google_body(400, "INVALID_ARGUMENT"),
            "invalid_request_error",
            Verdict.STOP,
            id="400-invalid-argument",
        ),
        pytest.param(
            403,
            google_body(403, "PERMISSION_DENIED"),
            "permission_error",
            Verdict.STOP,
            id="403-permission-denied",
        ),
        pytest.param(
            404, google_body(404, "NOT_FOUND"), "not_found_error", Verdict.STOP, id="404-not-found"
        ),
        pytest.param(
            529,
            b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}',
            "overloaded_error",
            Verdict.MOVE_ON,
            id="anthropic-shaped-529",
        ),
        pytest.param(
            400,
            b'{"type":"error","error":{"type":"invalid_request_error","message":"bad"}}',
            "invalid_request_error",
            Verdict.STOP,
            id="anthropic-shaped-400",
        ),
        pytest.param(
            429,
            b"[" + google_body(429, "RESOURCE_EXHAUSTED") + b"]",
            "rate_limit_error",
            Verdict.MOVE_ON,
            id="google-list",
        ),
        pytest.param(502, b"<html>bad gateway</html>", "api_error", Verdict.MOVE_ON, id="html"),
        pytest.param(
            413,
            google_body(413, "UNKNOWN"),
            "request_too_large",
            Verdict.STOP,
            id="unknown-status-the-http-status-decides",
        ),
    ],
)
async def test_errors(status: int, body: bytes, error_type: str, verdict: Verdict) -> None:
    direct = error_from_google(status, body, {})
    assert direct.error_type == error_type
    backend, _, _ = backend_with(ScriptedSession((status, body)))
    with pytest.raises(UpstreamError) as info:
        await backend.create(call(), "m", [], connect_timeout=1)
    assert info.value.status == status
    assert info.value.error_type == error_type
    assert classify(info.value, DEFAULT) is verdict


@pytest.mark.parametrize("stream", [False, True], ids=["create", "stream"])
async def test_a_401_refreshes_the_token_and_tries_once_more(stream: bool) -> None:
    answer = EVENTS if stream else orjson.dumps(MESSAGE)
    session = ScriptedSession((401, google_body(401, "UNAUTHENTICATED")), (200, answer))
    backend, credentials, _ = backend_with(session)
    if stream:
        async for _ in backend.stream(call(), "m", [], connect_timeout=1):
            pass
    else:
        await backend.create(call(), "m", [], connect_timeout=1)
    tokens = [r["headers"]["authorization"] for r in session.requests]
    assert tokens == ["Bearer tok-1", "Bearer tok-2"]
    assert credentials.refreshes == 2


@pytest.mark.parametrize("stream", [False, True], ids=["create", "stream"])
async def test_a_second_401_is_this_targets_auth_failure(stream: bool) -> None:
    refused = (401, google_body(401, "UNAUTHENTICATED"))
    session = ScriptedSession(refused, refused)
    backend, credentials, _ = backend_with(session)
    with pytest.raises(UpstreamError) as info:
        if stream:
            async for _ in backend.stream(call(), "m", [], connect_timeout=1):
                pass
        else:
            await backend.create(call(), "m", [], connect_timeout=1)
    assert info.value.kind is FailureKind.AUTH
    assert info.value.backend == "v"
    assert classify(info.value, DEFAULT) is Verdict.MOVE_ON
    assert info.value.error_type == "api_error"  # not the caller's authentication problem
    assert "tok-" not in info.value.message
    assert len(session.requests) == 2 and credentials.refreshes == 2


# --------------------------------------------------------------------------- publisher/model ids

COMPLETION = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1,
    "model": "google/gemini-2.5-flash",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}
    ],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
}
CHUNKS = (
    b"".join(
        b"data: " + orjson.dumps(chunk) + b"\n\n"
        for chunk in (
            {
                "id": "c",
                "object": "chat.completion.chunk",
                "created": 1,
                "model": "g",
                "choices": [{"index": 0, "delta": {"role": "assistant", "content": "hi"}}],
            },
            {
                "id": "c",
                "object": "chat.completion.chunk",
                "created": 1,
                "model": "g",
                "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
            },
        )
    )
    + b"data: [DONE]\n\n"
)
OPENAPI = "/v1/projects/proj/locations/us-east5/endpoints/openapi/chat/completions"


@pytest.mark.parametrize(
    ("model", "openapi"),
    [
        pytest.param("google/gemini-2.5-flash", True, id="google-publisher"),
        pytest.param("meta/llama-4-maverick-17b-128e-instruct-maas", True, id="meta-publisher"),
        pytest.param("claude-sonnet-4-5@20250929", False, id="claude"),
    ],
)
def test_which_models_go_to_the_openai_compatible_endpoint(model: str, openapi: bool) -> None:
    assert is_openapi_model(model) is openapi


async def test_a_publisher_model_is_translated_through_the_openai_compatible_endpoint() -> None:
    session = ScriptedSession(
        (401, google_body(401, "UNAUTHENTICATED")), (200, orjson.dumps(COMPLETION))
    )
    backend, _, _ = backend_with(session)
    message = await backend.create(call(), "google/gemini-2.5-flash", [], connect_timeout=1)
    assert isinstance(message, Message)
    assert message.content[0].text == "hi"  # type: ignore[union-attr]
    assert [r["path"] for r in session.requests] == [OPENAPI, OPENAPI]
    sent = session.requests[1]
    assert sent["headers"]["authorization"] == "Bearer tok-2"  # the 401 rule holds here too
    assert sent["body"]["model"] == "google/gemini-2.5-flash"
    assert sent["body"]["messages"] == [{"role": "user", "content": "hi"}]
    assert "anthropic_version" not in sent["body"]


async def test_a_publisher_model_streams_translated_events() -> None:
    backend, _, _ = backend_with(ScriptedSession((200, CHUNKS)))
    stream = backend.stream(call(), "google/gemini-2.5-flash", [], connect_timeout=1)
    events = [e async for batch in stream for e in batch]
    kinds = [type(e).__name__ for e in events]
    assert kinds[0] == "MessageStart" and kinds[-1] == "MessageStop"
    count = await backend.count_tokens(
        CountCall(request=count_tokens_decoder.decode(orjson.dumps(BODY)), request_id="r"),
        "google/gemini-2.5-flash",
    )
    assert count.estimated  # Chat Completions has no counting endpoint
