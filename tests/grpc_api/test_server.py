"""The servicer on a real grpc.aio server (127.0.0.1:0) with a fake engine, called by the
generated stubs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status

from sidecar import model as m
from sidecar.engine.outcome import Attempt, Outcome
from sidecar.engine.stream import SHUTDOWN
from sidecar.errors import (
    ChainExhaustedError,
    FailureKind,
    LocalLimitError,
    OverloadedError,
    SidecarError,
    UpstreamError,
)
from sidecar.grpc_api.gen.anyllm.sidecar.v1 import messages_pb2 as pb
from sidecar.grpc_api.gen.anyllm.sidecar.v1 import messages_service_pb2 as spb
from sidecar.grpc_api.gen.anyllm.sidecar.v1 import messages_service_pb2_grpc as spb_grpc
from sidecar.grpc_api.reverse import event_from_proto, message_from_proto
from sidecar.grpc_api.server import SERVICE_NAME, set_not_serving, start_grpc_server
from tests.grpc_api.merge import coalesce

REQUEST = spb.CreateMessageRequest(
    model="m",
    max_tokens=32,
    messages=[
        pb.InputMessage(role=pb.ROLE_USER, content=[pb.ContentBlock(text=pb.TextBlock(text="hi"))])
    ],
)
MESSAGE = m.Message(
    id="msg_1",
    model="m",
    content=[m.TextBlock(text="hello")],
    stop_reason="end_turn",
    usage=m.Usage(input_tokens=3, output_tokens=1),
)
EVENTS: list[m.StreamEvent] = [
    m.MessageStart(message=m.Message(id="msg_1", model="m", content=[])),
    m.ContentBlockStart(index=0, content_block=m.TextBlock(text="")),
    m.ContentBlockDelta(index=0, delta=m.TextDelta(text="hel")),
    m.ContentBlockDelta(index=0, delta=m.TextDelta(text="lo")),
    m.ContentBlockStop(index=0),
    m.MessageDelta(
        delta=m.MessageDeltaBody(stop_reason="end_turn"), usage=m.MessageDeltaUsage(output_tokens=2)
    ),
    m.MessageStop(),
]


def _outcome(request_id: str, chain: str = "default") -> Outcome:
    outcome = Outcome(request_id=request_id, chain=chain, answered_by="primary")
    outcome.attempts.append(Attempt("primary/m", "primary", "ok", 200, 0.01))
    return outcome


def _exhausted() -> SidecarError:
    last = UpstreamError(
        "rate limited", kind=FailureKind.STATUS, backend="primary", status=429, retry_after=2.5
    )
    error = ChainExhaustedError(last, attempts=2)
    error.metadata = [("x-anyllm-attempts", "2"), ("x-anyllm-fallback-exhausted", "true")]
    return error


class FakeStream:
    def __init__(
        self,
        events: list[m.StreamEvent],
        outcome: Outcome,
        *,
        then: BaseException | None,
        hang: bool,
    ):
        self.outcome = outcome
        self._events = events
        self._then = then
        self._hang = hang
        self.closed = asyncio.Event()

        self.task: asyncio.Task[object] | None = None  # the one iterating (what a drain cancels)

    def __aiter__(self) -> AsyncIterator[list[m.StreamEvent]]:
        return self._run()

    async def _run(self) -> AsyncIterator[list[m.StreamEvent]]:
        self.task = asyncio.current_task()
        for event in self._events:
            yield [event]
        if self._hang:
            await asyncio.Event().wait()
        if self._then is not None:
            raise self._then

    async def aclose(self) -> None:
        self.closed.set()


@dataclass
class FakeEngine:
    """Implements sidecar.engine.api.EngineApi; each test sets what it should do."""

    error: BaseException | None = None  # raised by create / open_stream / count_tokens
    events: list[m.StreamEvent] = field(default_factory=lambda: list(EVENTS))
    then: BaseException | None = None  # raised by the stream after its events
    hang: bool = False  # the stream waits forever after its events
    calls: list[m.Call] = field(default_factory=list)
    called_at: list[float] = field(default_factory=list)  # the loop clock at each call
    streams: list[FakeStream] = field(default_factory=list)

    async def create(self, call: m.Call) -> tuple[m.Message, Outcome]:
        self.calls.append(call)
        self.called_at.append(asyncio.get_running_loop().time())
        if self.error is not None:
            raise self.error
        return MESSAGE, _outcome(call.request_id, call.chain or "default")

    async def open_stream(self, call: m.Call) -> FakeStream:
        self.calls.append(call)
        if self.error is not None:
            raise self.error
        stream = FakeStream(self.events, _outcome(call.request_id), then=self.then, hang=self.hang)
        self.streams.append(stream)
        return stream

    async def count_tokens(self, call: m.CountCall) -> tuple[m.TokenCount, Outcome]:
        if self.error is not None:
            raise self.error
        return m.TokenCount(input_tokens=7), _outcome(call.request_id)


@dataclass
class Harness:
    engine: FakeEngine
    stub: spb_grpc.MessagesServiceStub
    channel: grpc.aio.Channel
    health: object


@pytest.fixture
async def h() -> AsyncIterator[Harness]:
    engine = FakeEngine()
    server, port, health = await start_grpc_server(engine, "127.0.0.1:0")
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield Harness(engine, spb_grpc.MessagesServiceStub(channel), channel, health)
    finally:
        await channel.close()
        await server.stop(None)


async def _status(call: grpc.aio.Call) -> tuple[grpc.StatusCode, dict[str, object]]:
    status = await rpc_status.aio.from_call(call)
    assert status is not None
    details: dict[str, object] = {}
    for any_ in status.details:
        for kind in (
            error_details_pb2.ErrorInfo,
            error_details_pb2.RetryInfo,
            error_details_pb2.BadRequest,
        ):
            if any_.Is(kind.DESCRIPTOR):
                detail = kind()
                any_.Unpack(detail)
                details[kind.DESCRIPTOR.name] = detail
    return await call.code(), details


# ----------------------------------------------------------------------------- unary


async def test_create_message(h: Harness) -> None:
    call = h.stub.CreateMessage(
        REQUEST,
        metadata=[
            ("x-request-id", "req-1"),
            ("x-anyllm-chain", "fast"),
            ("anthropic-beta", "b1"),
            ("authorization", "Bearer s"),
        ],
    )
    reply = await call
    assert message_from_proto(reply) == MESSAGE
    trailing = dict(await call.trailing_metadata())
    assert trailing["x-request-id"] == "req-1"
    assert trailing["x-anyllm-chain"] == "fast"
    assert trailing["x-anyllm-backend"] == "primary"
    assert trailing["x-anyllm-attempts"] == "1"
    (seen,) = h.engine.calls
    assert (seen.request_id, seen.chain, seen.deadline) == ("req-1", "fast", None)
    assert seen.passthrough_headers == (("anthropic-beta", "b1"),)
    assert seen.request.stream is None and seen.request.max_tokens == 32


async def test_request_id_generated(h: Harness) -> None:
    await h.stub.CreateMessage(REQUEST)
    request_id = h.engine.calls[0].request_id
    assert len(request_id) == 32 and int(request_id, 16) >= 0


async def test_deadline_becomes_call_deadline(h: Harness) -> None:
    await h.stub.CreateMessage(REQUEST, timeout=5)
    deadline = h.engine.calls[0].deadline
    assert deadline is not None
    # The budget the engine got, on its own clock, when it got the call: the client's 5 s less
    # the transit, give or take gRPC's timeout encoding and the two clocks. Generous slack both
    # ways: a loaded machine delays the call, and a 5.0 s bound once failed at 5.009 s.
    budget = deadline - h.engine.called_at[0]
    assert 2.5 < budget < 6.0


async def test_count_tokens(h: Harness) -> None:
    call = h.stub.CountTokens(spb.CountTokensRequest.FromString(REQUEST.SerializeToString()))
    reply = await call
    assert (reply.input_tokens, reply.estimated) == (7, False)
    assert dict(await call.trailing_metadata())["x-anyllm-backend"] == "primary"


# ----------------------------------------------------------------------------- errors

ERRORS = {
    "exhausted_rate_limit": (
        _exhausted(),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "FALLBACK_EXHAUSTED",
        2.5,
    ),
    "upstream_503": (
        UpstreamError("down", kind=FailureKind.STATUS, backend="b", status=503),
        grpc.StatusCode.UNAVAILABLE,
        "UPSTREAM_HTTP_503",
        None,
    ),
    "connect": (
        UpstreamError("refused", kind=FailureKind.CONNECT, backend="b"),
        grpc.StatusCode.UNAVAILABLE,
        "UPSTREAM_CONNECT",
        None,
    ),
    "local_pool_limit": (
        LocalLimitError("the sidecar is at its limit", reason="pool"),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "LOCAL_LIMIT_POOL",
        1.0,
    ),
    "draining": (
        OverloadedError("shutting down", retry_after=1),
        grpc.StatusCode.UNAVAILABLE,
        "OVERLOADED_ERROR",
        1.0,
    ),
}


@pytest.mark.parametrize(("error", "code", "reason", "retry"), ERRORS.values(), ids=ERRORS.keys())
@pytest.mark.parametrize("rpc", ["unary", "stream"])
async def test_engine_error_status(
    h: Harness,
    rpc: str,
    error: SidecarError,
    code: grpc.StatusCode,
    reason: str,
    retry: float | None,
) -> None:
    h.engine.error = error
    if rpc == "unary":
        call = h.stub.CreateMessage(REQUEST)
        with pytest.raises(grpc.aio.AioRpcError):
            await call
    else:
        call = h.stub.StreamMessage(REQUEST)
        with pytest.raises(grpc.aio.AioRpcError):
            async for _ in call:
                pass
    got, details = await _status(call)
    assert got == code
    assert await call.details() == error.message
    info = details["ErrorInfo"]
    assert isinstance(info, error_details_pb2.ErrorInfo)
    assert (info.reason, info.domain) == (reason, "anyllm.dev")
    assert info.metadata["error_type"] == error.error_type
    if retry is None:
        assert "RetryInfo" not in details
    else:
        retry_info = details["RetryInfo"]
        assert isinstance(retry_info, error_details_pb2.RetryInfo)
        assert retry_info.retry_delay.ToNanoseconds() == int(retry * 1e9)
    trailing = dict(await call.trailing_metadata())
    for key, value in error.metadata:
        assert trailing[key] == value


async def test_invalid_argument_names_field(h: Harness) -> None:
    bad = spb.CreateMessageRequest()
    bad.CopyFrom(REQUEST)
    bad.messages[0].content.add()  # a block with no oneof set
    call = h.stub.CreateMessage(bad)
    with pytest.raises(grpc.aio.AioRpcError):
        await call
    code, details = await _status(call)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert (await call.details()).startswith("messages[0].content[1]: ")
    bad_request = details["BadRequest"]
    assert isinstance(bad_request, error_details_pb2.BadRequest)
    assert bad_request.field_violations[0].field == "messages[0].content[1]"
    assert not h.engine.calls


async def test_unexpected_exception_is_internal_without_details(h: Harness) -> None:
    h.engine.error = RuntimeError("secret internals sk-123")
    call = h.stub.CreateMessage(REQUEST, metadata=[("x-request-id", "r9")])
    with pytest.raises(grpc.aio.AioRpcError):
        await call
    assert await call.code() == grpc.StatusCode.INTERNAL
    text = await call.details()
    assert "sk-123" not in text and "r9" in text


# ----------------------------------------------------------------------------- streams


async def test_stream_message(h: Harness) -> None:
    call = h.stub.StreamMessage(REQUEST, metadata=[("x-request-id", "s-1")])
    initial = dict(await call.initial_metadata())
    assert initial["x-anyllm-backend"] == "primary"
    assert initial["x-request-id"] == "s-1"
    events = [event_from_proto(event) async for event in call]
    # Deltas that queued up while a write was in flight may arrive merged.
    assert coalesce(events) == coalesce(EVENTS)
    assert await call.code() == grpc.StatusCode.OK
    assert h.engine.calls[0].request.stream is True
    await asyncio.wait_for(h.engine.streams[0].closed.wait(), 1)


async def test_a_drain_cancelling_the_stream_is_an_unavailable_status(h: Harness) -> None:
    h.engine.hang = True
    call = h.stub.StreamMessage(REQUEST)
    got = [event_from_proto(event) async for event in _take(call, len(EVENTS))]
    assert coalesce(got) == coalesce(EVENTS)
    task = h.engine.streams[0].task
    assert task is not None
    task.cancel(SHUTDOWN)  # as the engine's abort_all does, wherever the handler waits
    # (without the conversion the call would never end: grpc.aio sends no status then)
    assert await asyncio.wait_for(call.code(), 10) == grpc.StatusCode.UNAVAILABLE
    assert "shut down" in await call.details()
    await asyncio.wait_for(h.engine.streams[0].closed.wait(), 1)


async def _take(call: AsyncIterator[pb.StreamEvent], n: int) -> AsyncIterator[pb.StreamEvent]:
    async for event in call:
        yield event
        n -= 1
        if n == 0:
            return


async def test_failure_after_commit_is_an_error_status(h: Harness) -> None:
    h.engine.events = EVENTS[:3]
    h.engine.then = UpstreamError("stream broke", kind=FailureKind.STREAM_ERROR, backend="primary")
    call = h.stub.StreamMessage(REQUEST)
    received = []
    with pytest.raises(grpc.aio.AioRpcError):
        async for event in call:
            received.append(event_from_proto(event))
    assert received == EVENTS[:3]
    code, details = await _status(call)
    assert code == grpc.StatusCode.UNAVAILABLE
    info = details["ErrorInfo"]
    assert isinstance(info, error_details_pb2.ErrorInfo)
    assert info.reason == "UPSTREAM_STREAM_ERROR"
    assert h.engine.streams[0].closed.is_set()


async def test_client_cancel_closes_engine_stream(h: Harness) -> None:
    h.engine.events = EVENTS[:3]
    h.engine.hang = True
    call = h.stub.StreamMessage(REQUEST)
    await call.read()
    call.cancel()
    await asyncio.wait_for(h.engine.streams[0].closed.wait(), 2)
    assert await call.code() == grpc.StatusCode.CANCELLED


async def test_deadline_during_stream_closes_engine_stream(h: Harness) -> None:
    h.engine.events = EVENTS[:3]
    h.engine.hang = True
    call = h.stub.StreamMessage(REQUEST, timeout=0.5)
    with pytest.raises(grpc.aio.AioRpcError):
        async for _ in call:
            pass
    assert await call.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    await asyncio.wait_for(h.engine.streams[0].closed.wait(), 2)
    assert h.engine.calls[0].deadline is not None


# ----------------------------------------------------------------------------- health, reflection


async def test_health(h: Harness) -> None:
    stub = health_pb2_grpc.HealthStub(h.channel)
    for service in ("", SERVICE_NAME):
        reply = await stub.Check(health_pb2.HealthCheckRequest(service=service))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    await set_not_serving(h.health)  # type: ignore[arg-type]
    reply = await stub.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME))
    assert reply.status == health_pb2.HealthCheckResponse.NOT_SERVING


async def test_reflection_lists_the_service(h: Harness) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(h.channel)
    call = stub.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")])
    )
    names = set()
    async for reply in call:
        names |= {s.name for s in reply.list_services_response.service}
    assert SERVICE_NAME == "anyllm.sidecar.v1.MessagesService"
    assert {SERVICE_NAME, "grpc.health.v1.Health"} <= names
