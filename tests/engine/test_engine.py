"""The fallback loop with scripted fake backends: which failures move on, which stop, what the
outcome says, and the streaming commit point."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field

import msgspec
import pytest

from sidecar.engine.engine import Engine
from sidecar.engine.policy import BreakerPolicy, Chain, Policy, Routes, Target
from sidecar.errors import (
    ChainExhaustedError,
    DeadlineExceededError,
    FailureKind,
    InvalidRequestError,
    SidecarError,
    UpstreamError,
)
from sidecar.model import (
    Call,
    ContentBlockDelta,
    ContentBlockStart,
    ContentBlockStop,
    CountCall,
    CountTokensRequest,
    InputMessage,
    Message,
    MessageDelta,
    MessageDeltaBody,
    MessageDeltaUsage,
    MessagesRequest,
    MessageStart,
    MessageStop,
    RawChatChunk,
    RawChatCompletion,
    StreamEvent,
    TextBlock,
    TextDelta,
    TokenCount,
)

Step = str | UpstreamError  # "ok", "hang", "stall_after_start", "cut_after_content" or an error


def _message(text: str) -> Message:
    return Message(id="msg_1", model="m", content=[TextBlock(text=text)], stop_reason="end_turn")


@dataclass
class FakeBackend:
    name: str
    steps: list[Step]
    kind: str = "fake"
    calls: int = 0
    closed: int = 0
    models: list[str] = field(default_factory=list)

    def _next(self) -> Step:
        self.calls += 1
        return self.steps.pop(0) if self.steps else "ok"

    async def create(
        self, call: Call, model: str, notes: list[str], *, connect_timeout: float
    ) -> Message:
        self.models.append(model)
        step = self._next()
        if isinstance(step, UpstreamError):
            raise step
        if step == "hang":
            await asyncio.sleep(3600)
        notes.append(f"note-{self.name}")
        return _message(f"from {self.name}")

    async def stream(
        self, call: Call, model: str, notes: list[str], *, connect_timeout: float
    ) -> AsyncGenerator[list[StreamEvent], None]:
        step = self._next()
        try:
            if isinstance(step, UpstreamError):
                raise step
            yield [
                MessageStart(message=Message(id="msg_1", model="m", content=[])),
                ContentBlockStart(index=0, content_block=TextBlock(text="")),
            ]
            if step == "stall_after_start":
                await asyncio.sleep(3600)
            yield [ContentBlockDelta(index=0, delta=TextDelta(text=f"from {self.name}"))]
            if step == "cut_after_content":
                raise UpstreamError("cut", kind=FailureKind.INCOMPLETE, backend=self.name)
            if step == "stall_after_content":
                await asyncio.sleep(3600)
            yield [ContentBlockStop(index=0)]
            yield [
                MessageDelta(
                    delta=MessageDeltaBody(stop_reason="end_turn"),
                    usage=MessageDeltaUsage(output_tokens=2),
                )
            ]
            yield [MessageStop()]
        finally:
            self.closed += 1

    async def count_tokens(self, call: CountCall, model: str) -> TokenCount:
        step = self._next()
        if isinstance(step, UpstreamError):
            raise step
        return TokenCount(input_tokens=7, estimated=self.name == "b")

    async def aclose(self) -> None:
        return None


def status(code: int) -> UpstreamError:
    return UpstreamError(f"upstream said {code}", kind=FailureKind.STATUS, status=code)


def kind(k: FailureKind) -> UpstreamError:
    return UpstreamError(f"failed: {k.value}", kind=k)


class FakeTime:
    """The breakers' clock, moved by hand, and a sleep that records instead of waiting."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)


def make_engine(
    a: list[Step], b: list[Step], policy: Policy | None = None, time: FakeTime | None = None
) -> tuple[Engine, FakeBackend, FakeBackend]:
    fa, fb = FakeBackend("a", a), FakeBackend("b", b)
    pol = policy or Policy()
    chains = {
        "default": Chain(
            name="default",
            targets=(Target(backend="a", model="up-a"), Target(backend="b")),
            policy=pol,
        ),
        "only-b": Chain(name="only-b", targets=(Target(backend="b"),), policy=pol),
    }
    routes = Routes([("*haiku*", "only-b")], chains)
    time = time or FakeTime()
    engine = Engine(
        backends={"a": fa, "b": fb},
        routes=routes,
        sleep=time.sleep,
        clock=time.clock,
        jitter=lambda: 0.5,
    )
    return engine, fa, fb


def call(model: str = "claude-x", chain: str | None = None, deadline: float | None = None) -> Call:
    request = MessagesRequest(
        model=model, max_tokens=10, messages=[InputMessage(role="user", content="hi")]
    )
    return Call(request=request, request_id="req-1", chain=chain, deadline=deadline)


MOVE_ON = [
    pytest.param(status(429), id="429"),
    pytest.param(status(500), id="500"),
    pytest.param(status(502), id="502"),
    pytest.param(status(503), id="503"),
    pytest.param(status(504), id="504"),
    pytest.param(status(529), id="529"),
    pytest.param(status(408), id="408"),
    pytest.param(kind(FailureKind.CONNECT), id="connect"),
    pytest.param(kind(FailureKind.CONNECT_TIMEOUT), id="connect-timeout"),
    pytest.param(kind(FailureKind.READ_TIMEOUT), id="read-timeout"),
    pytest.param(kind(FailureKind.INCOMPLETE), id="incomplete"),
    pytest.param(kind(FailureKind.STREAM_ERROR), id="stream-error"),
    pytest.param(kind(FailureKind.INVALID_RESPONSE), id="invalid-response"),
]
STOP = [
    pytest.param(status(400), "invalid_request_error", id="400"),
    pytest.param(status(401), "authentication_error", id="401"),
    pytest.param(status(403), "permission_error", id="403"),
    pytest.param(status(404), "not_found_error", id="404"),
    pytest.param(status(413), "request_too_large", id="413"),
    pytest.param(status(422), "invalid_request_error", id="422"),
]


@pytest.mark.parametrize("error", MOVE_ON)
async def test_create_moves_on(error: UpstreamError) -> None:
    engine, a, b = make_engine([error], [])
    message, outcome = await engine.create(call())
    assert message.content == [TextBlock(text="from b")]
    assert (a.calls, b.calls) == (1, 1)
    assert outcome.answered_by == "b"
    assert [x.outcome for x in outcome.attempts] == [error.kind.value, "ok"]
    assert dict(outcome.metadata())["x-anyllm-attempts"] == "2"
    assert outcome.degradations == ["note-b"]  # only the answering attempt's notes


@pytest.mark.parametrize(("error", "error_type"), STOP)
async def test_create_stops(error: UpstreamError, error_type: str) -> None:
    engine, a, b = make_engine([error], [])
    with pytest.raises(UpstreamError) as info:
        await engine.create(call())
    assert info.value.error_type == error_type
    assert b.calls == 0
    meta = dict(info.value.metadata)
    assert meta["x-anyllm-attempts"] == "1"
    assert "x-anyllm-fallback-exhausted" not in meta


async def test_exhausted_chain_raises_last_error_marked() -> None:
    engine, _, _ = make_engine([status(503)], [status(429)])
    with pytest.raises(ChainExhaustedError) as info:
        await engine.create(call())
    assert info.value.error_type == "rate_limit_error"
    assert info.value.http_status == 429
    meta = dict(info.value.metadata)
    assert meta["x-anyllm-fallback-exhausted"] == "true"
    assert meta["x-anyllm-attempts"] == "2"


async def test_exhausted_error_keeps_every_attempts_error() -> None:
    first, second = status(503), status(429)
    engine, _, _ = make_engine([first], [second])
    with pytest.raises(ChainExhaustedError) as info:
        await engine.create(call())
    assert info.value.errors == [first, second]
    assert info.value.last is second
    assert info.value.message == (
        "all 2 attempts failed: (1) upstream said 503; (2) upstream said 429"
    )


async def test_target_model_and_request_model() -> None:
    engine, a, b = make_engine([status(500)], [])
    await engine.create(call(model="claude-sonnet"))
    assert a.models == ["up-a"]  # the target names its upstream model
    assert b.models == ["claude-sonnet"]  # no model on the target: the request's own


async def test_routing_by_glob_and_by_header() -> None:
    engine, a, b = make_engine([], [])
    _, outcome = await engine.create(call(model="claude-3-5-haiku-latest"))
    assert (outcome.chain, a.calls, b.calls) == ("only-b", 0, 1)
    _, outcome = await engine.create(call(chain="only-b"))
    assert outcome.chain == "only-b"
    with pytest.raises(InvalidRequestError, match="x-anyllm-chain: unknown chain 'nope'"):
        await engine.create(call(chain="nope"))


async def test_attempt_timeout_moves_on() -> None:
    engine, a, b = make_engine(["hang"], [], Policy(attempt_timeout=0.05))
    message, outcome = await engine.create(call())
    assert message.content == [TextBlock(text="from b")]
    assert outcome.attempts[0].outcome == "read_timeout"


async def test_overall_deadline_stops_with_timeout_error() -> None:
    engine, a, b = make_engine(["hang"], [], Policy(timeout=0.05))
    with pytest.raises(DeadlineExceededError):
        await engine.create(call())
    assert b.calls == 0


async def test_invalid_request_never_reaches_a_backend() -> None:
    engine, a, b = make_engine([], [])
    bad = MessagesRequest(
        model="m", max_tokens=0, messages=[InputMessage(role="user", content="x")]
    )
    with pytest.raises(InvalidRequestError, match="max_tokens"):
        await engine.create(Call(request=bad, request_id="r"))
    assert a.calls == b.calls == 0


async def collect(engine: Engine, c: Call) -> tuple[list[StreamEvent], SidecarError | None]:
    stream = await engine.open_stream(c)
    events: list[StreamEvent] = []
    try:
        async for batch in stream:
            events += batch
    except SidecarError as exc:
        return events, exc
    finally:
        await stream.aclose()
    return events, None


@pytest.mark.parametrize("error", MOVE_ON)
async def test_stream_falls_back_before_commit(error: UpstreamError) -> None:
    engine, a, b = make_engine([error], [])
    events, failure = await collect(engine, call())
    assert failure is None
    assert isinstance(events[0], MessageStart)
    assert isinstance(events[-1], MessageStop)
    texts = [e.delta.text for e in events if isinstance(e, ContentBlockDelta)]
    assert texts == ["from b"]
    assert a.closed == 1


async def test_stream_ttft_timeout_falls_back_invisibly() -> None:
    engine, a, b = make_engine(["stall_after_start"], [], Policy(ttft_timeout=0.05))
    stream = await engine.open_stream(call())
    events = [e async for batch in stream for e in batch]
    await stream.aclose()
    # message_start of the stalled attempt was held back: exactly one reaches the caller.
    assert sum(isinstance(e, MessageStart) for e in events) == 1
    assert stream.outcome.answered_by == "b"
    assert stream.outcome.attempts[0].outcome == "ttft_timeout"
    assert a.closed == 1


async def test_stream_failure_after_commit_is_raised_not_retried() -> None:
    engine, a, b = make_engine(["cut_after_content"], [])
    events, failure = await collect(engine, call())
    assert isinstance(failure, UpstreamError)
    assert failure.kind is FailureKind.INCOMPLETE
    assert b.calls == 0
    assert not any(isinstance(e, MessageStop) for e in events)
    assert dict(failure.metadata)["x-anyllm-backend"] == "a"


async def test_stream_idle_timeout_after_commit() -> None:
    engine, a, b = make_engine(["stall_after_content"], [], Policy(idle_timeout=0.05))
    events, failure = await collect(engine, call())
    assert isinstance(failure, UpstreamError)
    assert failure.kind is FailureKind.IDLE_TIMEOUT
    assert a.closed == 1


async def test_stream_exhausted() -> None:
    engine, a, b = make_engine([status(500)], [status(502)])
    with pytest.raises(ChainExhaustedError) as info:
        await engine.open_stream(call())
    assert dict(info.value.metadata)["x-anyllm-fallback-exhausted"] == "true"
    assert a.closed == b.closed == 1


async def test_stream_cancelled_by_caller_closes_upstream() -> None:
    engine, a, b = make_engine(["stall_after_content"], [])
    stream = await engine.open_stream(call())

    async def consume() -> None:
        async for _ in stream:
            pass

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await stream.aclose()
    assert a.closed == 1


async def test_count_tokens_falls_back_and_marks_estimates() -> None:
    engine, a, b = make_engine([status(503)], [])
    request = CountTokensRequest(model="m", messages=[InputMessage(role="user", content="x")])
    count, outcome = await engine.count_tokens(CountCall(request=request, request_id="r"))
    assert count.input_tokens == 7
    assert outcome.answered_by == "b"
    assert "count_tokens.estimated" in outcome.degradations


async def test_retries_on_the_same_target_with_backoff() -> None:
    time = FakeTime()
    policy = Policy(retries=2, backoff_base=1.0)
    engine, a, b = make_engine([status(500), status(503)], [], policy, time)
    message, outcome = await engine.create(call())
    assert message.content == [TextBlock(text="from a")]
    assert (a.calls, b.calls) == (3, 0)
    assert time.sleeps == [0.5, 1.0]  # full jitter (0.5 here) of 1, then 2
    assert [x.outcome for x in outcome.attempts] == ["status", "status", "ok"]


async def test_retry_after_over_the_cap_moves_on_at_once() -> None:
    time = FakeTime()
    late = UpstreamError("slow down", kind=FailureKind.STATUS, status=429, retry_after=60)
    engine, a, b = make_engine([late], [], Policy(retries=3), time)
    _, outcome = await engine.create(call())
    assert time.sleeps == []
    assert outcome.answered_by == "b"


async def test_retry_after_within_the_cap_is_honoured() -> None:
    time = FakeTime()
    soon = UpstreamError("slow down", kind=FailureKind.STATUS, status=429, retry_after=2)
    engine, a, b = make_engine([soon], [], Policy(retries=1), time)
    _, outcome = await engine.create(call())
    assert time.sleeps == [2]
    assert outcome.answered_by == "a"


async def test_open_breaker_skips_the_target_until_the_probe() -> None:
    time = FakeTime()
    policy = Policy(breaker=BreakerPolicy(failures=2, cooldown=30))
    engine, a, b = make_engine([status(500), status(500)], [], policy, time)
    await engine.create(call())
    await engine.create(call())  # the second consecutive failure opens a's breaker
    assert engine.breakers.snapshot()["a/up-a"]["state"] == "open"
    _, outcome = await engine.create(call())
    assert a.calls == 2  # skipped
    assert outcome.skipped == [{"target": "a/up-a", "reason": "breaker_open"}]
    assert outcome.answered_by == "b"
    time.now += 30
    _, outcome = await engine.create(call())  # the probe succeeds
    assert (a.calls, outcome.answered_by) == (3, "a")
    assert engine.breakers.snapshot()["a/up-a"]["state"] == "closed"


async def test_all_open_still_tries_the_one_nearest_to_recovery() -> None:
    time = FakeTime()
    policy = Policy(breaker=BreakerPolicy(failures=1, cooldown=30))
    engine, a, b = make_engine([status(500)], [], policy, time)
    engine.breakers.failure("b", threshold=1, cooldown=30)  # b opened first...
    time.now += 1
    with pytest.raises(ChainExhaustedError):
        await engine.create(call())  # ...a fails and opens too (b was skipped)
    time.now += 5
    _, outcome = await engine.create(call())
    assert outcome.answered_by == "b"  # b recovers first: it is tried, and only it
    assert a.calls == 1


async def test_context_overflow_moves_to_the_configured_chain() -> None:
    fa, fb = FakeBackend("a", []), FakeBackend("b", [])
    too_long = UpstreamError(
        "context too long", kind=FailureKind.STATUS, status=400, context_overflow=True
    )
    fa.steps = [too_long]
    chains = {
        "default": Chain(
            name="default",
            targets=(Target(backend="a"),),
            policy=Policy(on_context_overflow="big"),
        ),
        "big": Chain(name="big", targets=(Target(backend="b", model="long"),), policy=Policy()),
    }
    engine = Engine(backends={"a": fa, "b": fb}, routes=Routes([], chains))
    message, outcome = await engine.create(call())
    assert message.content == [TextBlock(text="from b")]
    assert fb.models == ["long"]
    assert "context_overflow:big" in outcome.degradations


async def test_exhausted_error_says_do_not_retry() -> None:
    engine, a, b = make_engine([status(503)], [status(503)])
    with pytest.raises(ChainExhaustedError) as info:
        await engine.create(call())
    assert dict(info.value.metadata)["x-should-retry"] == "false"


async def test_cancel_during_backoff_stops_everything() -> None:
    a, b = FakeBackend("a", [status(500)]), FakeBackend("b", [])
    policy = Policy(retries=1, backoff_base=60)
    chains = {"default": Chain(name="default", targets=(Target(backend="a"),), policy=policy)}
    # A real, long backoff sleep (jitter 1: the whole 60 s) that the cancel must cut short.
    engine = Engine(backends={"a": a, "b": b}, routes=Routes([], chains), jitter=lambda: 0.99)
    task = asyncio.create_task(engine.create(call()))
    for _ in range(20):
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (a.calls, b.calls) == (1, 0)


# ------------------------------------------------------------------ an OpenAI caller's dialect


@dataclass
class FakeChatRelay(FakeBackend):
    """An OpenAI-compatible backend relaying an OpenAI caller's call: its own chunks back."""

    async def create(  # type: ignore[override]
        self, call: Call, model: str, notes: list[str], *, connect_timeout: float
    ) -> RawChatCompletion:
        step = self._next()
        if isinstance(step, UpstreamError):
            raise step
        return RawChatCompletion(b'{"choices": []}', input_tokens=3, output_tokens=4)

    async def stream(  # type: ignore[override]
        self, call: Call, model: str, notes: list[str], *, connect_timeout: float
    ) -> AsyncGenerator[list[RawChatChunk], None]:
        step = self._next()
        try:
            yield [RawChatChunk(b'{"role": "assistant"}')]  # no content: held back
            if step == "stall_after_start":
                await asyncio.sleep(3600)
            yield [RawChatChunk(b'{"content": "hi"}', content=True)]
            yield [RawChatChunk(b'{"finish_reason": "stop"}')]
            yield [RawChatChunk(b"[DONE]", done=True, input_tokens=5, output_tokens=6)]
        finally:
            self.closed += 1


def chat_engine(relay: list[Step], other: list[Step], policy: Policy | None = None) -> Engine:
    """Chain ``default``: the relaying backend ``a``, then ``b``, which is sent the translation."""
    pol = policy or Policy()
    chain = Chain(name="default", targets=(Target(backend="a"), Target(backend="b")), policy=pol)
    backends = {"a": FakeChatRelay("a", relay), "b": FakeBackend("b", other)}
    return Engine(backends=backends, routes=Routes([], {"default": chain}), jitter=lambda: 0.5)


def openai_call() -> Call:
    return msgspec.structs.replace(call(), openai_body=b"{}", openai_notes=("seed", "n"))


@pytest.mark.parametrize(
    ("relay", "answered_by", "degradations"),
    [
        pytest.param([], "a", [], id="relayed-nothing-lost"),
        pytest.param([status(503)], "b", ["note-b", "seed", "n"], id="translated-named"),
    ],
)
async def test_an_openai_callers_notes_only_where_translated(
    relay: list[Step], answered_by: str, degradations: list[str]
) -> None:
    answer, outcome = await chat_engine(relay, []).create(openai_call())
    assert outcome.answered_by == answered_by
    assert outcome.degradations == degradations
    if answered_by == "a":
        assert isinstance(answer, RawChatCompletion)
        assert (outcome.input_tokens, outcome.output_tokens) == (3, 4)


async def test_relayed_chat_stream_commits_at_content_and_counts_usage() -> None:
    engine = chat_engine([], [])
    stream = await engine.open_stream(openai_call())
    batches = [batch async for batch in stream]
    await stream.aclose()
    # The role chunk was held back until content came, then both went out in one batch.
    assert [[c.data for c in b] for b in batches] == [  # type: ignore[union-attr]
        [b'{"role": "assistant"}', b'{"content": "hi"}'],
        [b'{"finish_reason": "stop"}'],
        [b"[DONE]"],
    ]
    assert stream.outcome.degradations == []
    assert (stream.outcome.input_tokens, stream.outcome.output_tokens) == (5, 6)
    assert stream.outcome.result == "ok"


async def test_relayed_chat_stream_without_content_falls_back_to_a_translation() -> None:
    engine = chat_engine(["stall_after_start"], [], Policy(ttft_timeout=0.05))
    stream = await engine.open_stream(openai_call())
    events = [e async for batch in stream for e in batch]
    await stream.aclose()
    assert not any(isinstance(e, RawChatChunk) for e in events)  # the held chunk never left
    assert isinstance(events[0], MessageStart)
    assert stream.outcome.answered_by == "b"
    assert stream.outcome.degradations == ["seed", "n"]
