"""A scripted fake backend for the loop, hedge and limit tests: each call takes the next step.

A step is "ok", "hang" (never answers until cancelled), an ``UpstreamError``, or a ``Reply``
(an answer with response headers reported as the HTTP layer reports them, after a delay or
once an event is set: races are ordered by events, not by timing).
``cancelled`` counts calls that were cancelled before they answered (a closed connection).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass, field

from sidecar.backends.base import report_response_headers
from sidecar.engine.engine import Engine
from sidecar.engine.policy import Chain, Policy, Routes
from sidecar.engine.policy import Step as ChainStep
from sidecar.errors import FailureKind, UpstreamError
from sidecar.model import (
    Call,
    ContentBlockDelta,
    ContentBlockStart,
    ContentBlockStop,
    CountCall,
    InputMessage,
    Message,
    MessageDelta,
    MessageDeltaBody,
    MessageDeltaUsage,
    MessagesRequest,
    MessageStart,
    MessageStop,
    StreamEvent,
    TextBlock,
    TextDelta,
    TokenCount,
    Usage,
)


@dataclasses.dataclass(frozen=True)
class Reply:
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)
    delay: float = 0.0
    error: UpstreamError | None = None
    after: asyncio.Event | None = None  # answer only once this is set
    opens: asyncio.Event | None = None  # set when this call starts


Step = str | UpstreamError | Reply


@dataclass
class Fake:
    name: str
    steps: list[Step] = field(default_factory=list)
    kind: str = "fake"
    calls: int = 0
    cancelled: int = 0
    usage: tuple[int, int] = (3, 2)

    def _next(self) -> Step:
        self.calls += 1
        return self.steps.pop(0) if self.steps else "ok"

    async def _before(self, step: Step) -> None:
        if isinstance(step, UpstreamError):
            raise step
        if isinstance(step, Reply):
            if step.opens is not None:
                step.opens.set()
            if step.after is not None:
                await step.after.wait()
            await asyncio.sleep(step.delay)
            report_response_headers(step.headers)
            if step.error is not None:
                raise step.error
        if step == "hang":
            await asyncio.sleep(3600)

    async def create(
        self, call: Call, model: str, notes: list[str], *, connect_timeout: float
    ) -> Message:
        step = self._next()
        try:
            await self._before(step)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        return Message(
            id="msg_1",
            model=model,
            content=[TextBlock(text=f"from {self.name}")],
            stop_reason="end_turn",
            usage=Usage(input_tokens=self.usage[0], output_tokens=self.usage[1]),
        )

    async def stream(
        self, call: Call, model: str, notes: list[str], *, connect_timeout: float
    ) -> AsyncGenerator[list[StreamEvent], None]:
        step = self._next()
        yield [MessageStart(message=Message(id="msg_1", model=model, content=[]))]
        try:
            await self._before(step)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        yield [
            ContentBlockStart(index=0, content_block=TextBlock(text="")),
            ContentBlockDelta(index=0, delta=TextDelta(text=f"from {self.name}")),
        ]
        yield [ContentBlockStop(index=0)]
        yield [
            MessageDelta(
                delta=MessageDeltaBody(stop_reason="end_turn"),
                usage=MessageDeltaUsage(output_tokens=self.usage[1]),
            ),
            MessageStop(),
        ]

    async def count_tokens(self, call: CountCall, model: str) -> TokenCount:
        await self._before(self._next())
        return TokenCount(input_tokens=7)

    async def aclose(self) -> None:
        return None


def status(code: int, retry_after: float | None = None) -> UpstreamError:
    return UpstreamError(
        f"upstream said {code}", kind=FailureKind.STATUS, status=code, retry_after=retry_after
    )


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        return None


def engine_for(
    steps: tuple[ChainStep, ...],
    backends: list[Fake],
    policy: Policy | None = None,
    time: FakeTime | None = None,
    rand: float = 0.0,
) -> Engine:
    chain = Chain(name="default", targets=steps, policy=policy or Policy())
    t = time or FakeTime()
    return Engine(
        backends={b.name: b for b in backends},
        routes=Routes([], {"default": chain}),
        sleep=t.sleep,
        clock=t.clock,
        jitter=lambda: 0.0,
        rand=lambda: rand,
    )


def call() -> Call:
    request = MessagesRequest(
        model="m", max_tokens=10, messages=[InputMessage(role="user", content="hi")]
    )
    return Call(request=request, request_id="req-1")
