"""Fault injection: every row of the classification table, through both surfaces, streamed
and not, against the real sidecar process and the scripted upstream process.

The chain is primary → secondary (two backends on the same fake upstream). The first upstream
request gets the fault; anything after it gets a normal answer. For each row we check what the
caller saw (an answer from the secondary, or the error) and what the upstream saw (how many
requests, and whether the sidecar hung up on a request it gave up on).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import httpx
import pytest

from sidecar.grpc_api.gen.anyllm.sidecar.v1 import messages_pb2 as pb
from sidecar.grpc_api.gen.anyllm.sidecar.v1 import messages_service_pb2 as spb
from sidecar.grpc_api.gen.anyllm.sidecar.v1 import messages_service_pb2_grpc as spb_grpc
from tests.integration.helpers import sidecar_config

pytestmark = pytest.mark.integration

TEXT = "one two three four five six seven eight"


@pytest.fixture(scope="module")
def sidecar(module_upstream: Any, module_sidecar_factory: Callable[..., Any]) -> Any:
    upstream = module_upstream
    config = sidecar_config(
        upstream.base_url,
        ttft_timeout=1.0,
        idle_timeout=1.0,
        attempt_timeout=1.5,
        breaker={"failures": 1000, "cooldown": 1},
    )
    targets = config["chains"]["default"]
    config["chains"]["default"] = {"targets": targets, "policy": {"on_context_overflow": "long"}}
    config["chains"]["long"] = [{"backend": "secondary", "model": "gpt-long-context"}]
    return module_sidecar_factory(config)


@pytest.fixture(scope="module")
def stub(sidecar: Any) -> Iterator[spb_grpc.MessagesServiceStub]:
    with grpc.insecure_channel(sidecar.grpc_target) as channel:
        yield spb_grpc.MessagesServiceStub(channel)


@dataclass
class Seen:
    """What the caller saw, the same shape for both surfaces."""

    ok: bool
    backend: str | None = None
    error_type: str | None = None
    status: int | str | None = None  # HTTP status or gRPC code name
    kinds: list[str] = field(default_factory=list)  # stream event types, in order
    text: str = ""


def over_http(url: str, stream: bool) -> Seen:
    body = {"model": "m", "max_tokens": 50, "messages": [{"role": "user", "content": "go"}]}
    with httpx.Client(base_url=url, timeout=30) as http:
        if not stream:
            r = http.post("/v1/messages", json=body)
            if r.status_code != 200:
                error = r.json()["error"]
                return Seen(False, r.headers.get("x-anyllm-backend"), error["type"], r.status_code)
            return Seen(True, r.headers["x-anyllm-backend"], text=r.json()["content"][0]["text"])
        with http.stream("POST", "/v1/messages", json={**body, "stream": True}) as r:
            if r.status_code != 200:
                r.read()
                return Seen(False, None, r.json()["error"]["type"], r.status_code)
            seen = Seen(True, r.headers["x-anyllm-backend"], status=200)
            for line in r.iter_lines():
                if line.startswith("event: "):
                    seen.kinds.append(line.removeprefix("event: "))
                elif line.startswith("data: ") and '"text_delta"' in line:
                    seen.text += httpx.Response(200, content=line[6:]).json()["delta"]["text"]
                elif line.startswith("data: ") and seen.kinds[-1] == "error":
                    seen.ok = False
                    seen.error_type = httpx.Response(200, content=line[6:]).json()["error"]["type"]
            return seen


def over_grpc(stub: spb_grpc.MessagesServiceStub, stream: bool) -> Seen:
    content = [pb.ContentBlock(text=pb.TextBlock(text="go"))]
    request = spb.CreateMessageRequest(
        model="m", max_tokens=50, messages=[pb.InputMessage(role=pb.ROLE_USER, content=content)]
    )
    try:
        if not stream:
            message, call = stub.CreateMessage.with_call(request, timeout=30)
            backend = dict(call.trailing_metadata())["x-anyllm-backend"]
            return Seen(True, str(backend), text=message.content[0].text.text)
        responses = stub.StreamMessage(request, timeout=30)
        seen = Seen(True)
        for event in responses:
            kind = event.WhichOneof("event")
            seen.kinds.append(kind)
            if kind == "content_block_delta":
                seen.text += event.content_block_delta.text_delta
        seen.backend = str(dict(responses.initial_metadata())["x-anyllm-backend"])
        return seen
    except grpc.RpcError as exc:
        trailing = dict(exc.trailing_metadata() or ())  # type: ignore[attr-defined]
        backend = trailing.get("x-anyllm-backend")
        return Seen(False, backend, None, exc.code().name, seen.kinds if stream else [])  # type: ignore[attr-defined]


def call(surface: str, sidecar: Any, stub: spb_grpc.MessagesServiceStub, stream: bool) -> Seen:
    return over_http(sidecar.http_url, stream) if surface == "http" else over_grpc(stub, stream)


# Faults before any content: the caller gets the secondary's answer, invisibly.
MOVE_ON = {
    **{f"http-{code}": {"status": code} for code in (408, 429, 500, 502, 503, 504, 529)},
    "reset": {"reset": True},
    "hang": {"hang": True},
    "slow-headers": {"delay": 5},
    "malformed": {"malformed": True},
    "html-502": {"status": 502, "body": "<html>bad gateway</html>"},
}
STREAM_ONLY_MOVE_ON = {
    "role-only-then-stall": {"role_only_then_stall": True},
    "cut-before-content": {"stream_cut_after": 1},
    "inband-error-before-content": {"inband_error": {}, "inband_error_after": 1},
    "empty-then-done": {"no_finish": True, "chunks": []},
}
# Statuses that stop the chain: the caller gets that error, nothing else is tried.
STOP = {
    400: ("invalid_request_error", 400, "INVALID_ARGUMENT"),
    401: ("authentication_error", 401, "UNAUTHENTICATED"),
    403: ("permission_error", 403, "PERMISSION_DENIED"),
    404: ("not_found_error", 404, "NOT_FOUND"),
    413: ("request_too_large", 413, "RESOURCE_EXHAUSTED"),
    422: ("invalid_request_error", 400, "INVALID_ARGUMENT"),
}
# Faults after the first content: never retried; the stream ends explicitly. (Paced, so that
# content reaches the caller before the fault: a fault in the same upstream read as the first
# content still falls back, since nothing was sent yet.)
PACED = {"text": TEXT, "chunk_delay": 0.05}
AFTER_COMMIT = {
    "cut": {"stream_cut_after": 4, **PACED},
    "stall": {"stall_after": 4, **PACED},
    "inband-error": {"inband_error": {"message": "boom"}, "inband_error_after": 4, **PACED},
    "no-finish": {"no_finish": True, **PACED},
}

SURFACES = ["http", "grpc"]


def _params(rows: dict[str, Any], modes: list[bool]) -> list[Any]:
    return [
        pytest.param(surface, stream, fault, id=f"{surface}-{'sse' if stream else 'json'}-{name}")
        for name, fault in rows.items()
        for surface in SURFACES
        for stream in modes
    ]


@pytest.mark.parametrize(
    ("surface", "stream", "fault"),
    _params(MOVE_ON, [False, True]) + _params(STREAM_ONLY_MOVE_ON, [True]),
)
def test_fault_before_content_falls_back(
    sidecar: Any, stub: Any, upstream: Any, surface: str, stream: bool, fault: dict[str, Any]
) -> None:
    upstream.control.script(fault)
    seen = call(surface, sidecar, stub, stream)
    assert seen.ok, seen
    assert seen.backend == "secondary"
    assert seen.text == "echo: go"
    if stream:
        assert seen.kinds[0] == "message_start" and seen.kinds[-1] == "message_stop"
        assert seen.kinds.count("message_start") == 1  # the failed attempt's was held back
    # Two requests; three when a reset met a reused connection and was sent again first.
    log = upstream.control.wait_for(lambda entries: len(entries) >= 2)
    assert log[0]["outcome"] != "pending"  # the first request was finished or hung up on
    if fault.get("hang") or fault.get("delay") or fault.get("role_only_then_stall"):
        assert log[0]["disconnected"], "the sidecar did not cancel the request it gave up on"


@pytest.mark.parametrize("code", STOP)
@pytest.mark.parametrize("surface", SURFACES)
@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_status_that_stops_the_chain(
    sidecar: Any, stub: Any, upstream: Any, surface: str, stream: bool, code: int
) -> None:
    upstream.control.script({"status": code})
    seen = call(surface, sidecar, stub, stream)
    error_type, http_status, grpc_code = STOP[code]
    assert not seen.ok
    if surface == "http":
        assert (seen.error_type, seen.status) == (error_type, http_status)
    else:
        assert seen.status == grpc_code
    assert len(upstream.control.log()) == 1


@pytest.mark.parametrize(("surface", "stream", "fault"), _params(AFTER_COMMIT, [True]))
def test_fault_after_content_ends_the_stream_explicitly(
    sidecar: Any, stub: Any, upstream: Any, surface: str, stream: bool, fault: dict[str, Any]
) -> None:
    upstream.control.script(fault)
    seen = call(surface, sidecar, stub, stream)
    assert not seen.ok, seen
    assert "message_stop" not in seen.kinds
    if surface == "http":
        assert "content_block_delta" in seen.kinds
        assert seen.kinds[-1] == "error"  # the SDKs raise on it: never a silent truncation
        assert seen.error_type in {"api_error", "timeout_error", "overloaded_error"}
    else:
        assert seen.status not in (None, "OK")
    assert len(upstream.control.log()) == 1  # nothing retried after the commit point


@pytest.mark.parametrize("surface", SURFACES)
def test_exhausted_chain_is_marked(sidecar: Any, stub: Any, upstream: Any, surface: str) -> None:
    upstream.control.script({"status": 503, "times": 2})
    if surface == "http":
        with httpx.Client(base_url=sidecar.http_url) as http:
            body = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}
            r = http.post("/v1/messages", json=body)
        assert r.status_code == 529
        assert r.headers["x-anyllm-fallback-exhausted"] == "true"
        assert r.headers["x-should-retry"] == "false"
    else:
        seen = over_grpc(stub, stream=False)
        assert seen.status == "UNAVAILABLE"
    assert len(upstream.control.log()) == 2


def test_http_client_disconnect_cancels_the_upstream(sidecar: Any, upstream: Any) -> None:
    upstream.control.script({"hang": True})
    body = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}
    with (
        httpx.Client(base_url=sidecar.http_url, timeout=0.5) as http,
        pytest.raises(httpx.ReadTimeout),
    ):
        http.post("/v1/messages", json=body)  # the client gives up and closes its connection
    log = upstream.control.wait_for(lambda entries: entries and entries[0]["disconnected"])
    assert len(log) == 1  # and nothing was tried after it


def test_x_anyllm_timeout_is_the_budget(sidecar: Any, upstream: Any) -> None:
    upstream.control.script({"delay": 5}, {"delay": 5})
    body = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}
    with httpx.Client(base_url=sidecar.http_url, timeout=30) as http:
        r = http.post("/v1/messages", json=body, headers={"x-anyllm-timeout": "0.5"})
    assert r.status_code == 504
    assert r.json()["error"]["type"] == "timeout_error"
    upstream.control.wait_for(lambda entries: entries and entries[0]["disconnected"])


def test_breaker_state_is_visible(sidecar: Any) -> None:
    with httpx.Client(base_url=sidecar.http_url) as http:
        snapshot = http.get("/debug/breakers").json()
    assert "primary/gpt-primary" in snapshot
    assert snapshot["primary/gpt-primary"]["state"] in {"closed", "open", "half_open"}


@pytest.mark.parametrize("surface", SURFACES)
def test_context_overflow_moves_to_the_long_context_chain(
    sidecar: Any, stub: Any, upstream: Any, surface: str
) -> None:
    too_long = {
        "error": {
            "message": "This model's maximum context length is 8192 tokens.",
            "code": "context_length_exceeded",
        }
    }
    upstream.control.script({"status": 400, "body": too_long})
    seen = call(surface, sidecar, stub, stream=False)
    assert seen.ok and seen.backend == "secondary"
    assert [e["body"]["model"] for e in upstream.control.log()] == [
        "gpt-primary",
        "gpt-long-context",
    ]
