"""The committed stream's limits on one timer per stream: the timer's decisions on a fake loop
clock, and the stream's outcomes (stall, attempt end, a slow caller, someone else's cancel)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable
from typing import Any

import pytest

from sidecar.engine.outcome import Outcome
from sidecar.engine.stream import SHUTDOWN, EngineStream, _Expiry, _Stall, bounded
from sidecar.errors import DeadlineExceededError, FailureKind, SidecarError, UpstreamError
from sidecar.model import (
    ContentBlockDelta,
    ContentBlockStart,
    Message,
    MessageStart,
    MessageStop,
    StreamItem,
    TextBlock,
    TextDelta,
)


class FakeLoop:
    """The two calls ``_Stall`` makes, on a clock the test moves."""

    def __init__(self) -> None:
        self.now = 100.0
        self.timers: list[tuple[float, Callable[[], None], asyncio.TimerHandle]] = []

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[[], None]) -> asyncio.TimerHandle:
        handle = asyncio.TimerHandle(when, callback, (), asyncio.get_running_loop())
        self.timers.append((when, callback, handle))
        return handle

    def fire(self) -> float:
        """Run the latest armed timer (moving the clock to it); returns its time."""
        when, callback, handle = self.timers.pop()
        assert not handle.cancelled()
        self.now = max(self.now, when)
        callback()
        return when


class FakeTask:
    def __init__(self) -> None:
        self.cancels = 0

    def cancelling(self) -> int:
        return self.cancels

    def cancel(self) -> None:
        self.cancels += 1

    def uncancel(self) -> int:
        self.cancels -= 1
        return self.cancels


def stall(idle: float = 5.0, end: float = 1000.0) -> tuple[_Stall, FakeLoop, FakeTask]:
    loop, task = FakeLoop(), FakeTask()
    timer = _Stall(task, idle, end)  # type: ignore[arg-type]
    timer._loop = loop  # type: ignore[assignment]
    return timer, loop, task


async def test_one_timer_for_many_reads() -> None:
    timer, loop, task = stall(idle=5.0)
    for _ in range(100):  # reads within the idle timeout: one timer armed, none fired
        timer.reading()
        loop.now += 0.01
        timer.since = None
    assert len(loop.timers) == 1
    assert loop.timers[0][0] == pytest.approx(105.0)


@pytest.mark.parametrize(
    ("reads_at", "fires", "cancelled", "by_attempt"),
    [
        pytest.param([], 1, True, False, id="one-read-stalls"),
        pytest.param([103.0], 2, True, False, id="later-read-rearms-then-stalls"),
        pytest.param([103.0, 107.0], 3, True, False, id="rearms-twice"),
    ],
)
async def test_timer_rearms_for_the_current_read(
    reads_at: list[float], fires: int, cancelled: bool, by_attempt: bool
) -> None:
    timer, loop, task = stall(idle=5.0)
    timer.reading()  # at 100: armed for 105
    for when in reads_at:  # the read finished and another began at `when`
        timer.since = when
        loop.fire()
        assert task.cancels == 0
    loop.fire()
    assert fires == len(reads_at) + 1
    assert (task.cancels == 1) is cancelled
    assert timer.by_attempt is by_attempt


async def test_no_read_in_progress_lets_the_timer_lapse() -> None:
    timer, loop, task = stall(idle=5.0)
    timer.reading()
    timer.since = None  # the caller is slow to take the batch: not the upstream's idleness
    loop.fire()
    assert task.cancels == 0 and not loop.timers
    loop.now = 200.0
    timer.reading()  # the next read arms it again, for its own limit
    assert loop.timers[0][0] == pytest.approx(205.0)


async def test_attempt_end_comes_before_the_idle_limit() -> None:
    timer, loop, task = stall(idle=5.0, end=102.0)
    timer.reading()
    assert loop.fire() == pytest.approx(102.0)
    assert task.cancels == 1 and timer.by_attempt is True


@pytest.mark.parametrize(
    ("others", "args", "ours"),
    [
        pytest.param(0, (), True, id="only-the-timer"),
        pytest.param(1, (), False, id="someone-else-cancelled-too"),
        pytest.param(0, (SHUTDOWN,), False, id="shutdown"),
    ],
)
async def test_timed_out_claims_only_its_own_cancel(
    others: int, args: tuple[str], ours: bool
) -> None:
    timer, loop, task = stall(idle=1.0)
    timer.reading()
    loop.fire()
    task.cancels += others
    assert timer.timed_out(asyncio.CancelledError(*args)) is ours


async def test_close_cancels_the_timer() -> None:
    timer, loop, _ = stall()
    timer.reading()
    handle = loop.timers[0][2]
    timer.close()
    assert handle.cancelled()


# --------------------------------------------------------------------------- the stream


def _start() -> list[StreamItem]:
    message = Message(id="msg_1", model="m", content=[], stop_reason=None)
    return [
        MessageStart(message=message),
        ContentBlockStart(index=0, content_block=TextBlock(text="")),
        ContentBlockDelta(index=0, delta=TextDelta(text="a")),
    ]


def _delta() -> list[StreamItem]:
    return [ContentBlockDelta(index=0, delta=TextDelta(text="b"))]


async def upstream(batches: int, then: str) -> AsyncGenerator[list[StreamItem], None]:
    for _ in range(batches):
        yield _delta()
    if then == "stop":
        yield [MessageStop()]
    else:
        await asyncio.sleep(3600)


def engine_stream(events: Any, *, idle: float, attempt_in: float) -> tuple[EngineStream, list[str]]:
    results: list[str] = []
    loop = asyncio.get_running_loop()
    stream = EngineStream(
        events,
        _start(),
        Outcome(request_id="r", chain="c"),
        idle_timeout=idle,
        attempt_end=loop.time() + attempt_in,
        backend="a",
        finish=lambda _, result: results.append(result),
    )
    return stream, results


async def consume(stream: EngineStream, pause: float = 0.0) -> tuple[int, SidecarError | None]:
    batches = 0
    try:
        async for _ in stream:
            batches += 1
            if pause:
                await asyncio.sleep(pause)
    except SidecarError as exc:
        return batches, exc
    finally:
        await stream.aclose()
    return batches, None


@pytest.mark.parametrize(
    ("idle", "attempt_in", "kind"),
    [
        pytest.param(0.05, 3600.0, FailureKind.IDLE_TIMEOUT, id="idle"),
        pytest.param(3600.0, 0.05, FailureKind.READ_TIMEOUT, id="attempt-end"),
    ],
)
async def test_a_hanging_upstream_ends_the_stream(
    idle: float, attempt_in: float, kind: FailureKind
) -> None:
    stream, results = engine_stream(upstream(3, "hang"), idle=idle, attempt_in=attempt_in)
    batches, failure = await consume(stream)
    assert batches == 4  # the held batch and the three that came
    assert isinstance(failure, UpstreamError) and failure.kind is kind
    assert results == [failure.error_type]


async def test_a_slow_caller_is_not_an_idle_upstream() -> None:
    # Every batch is ready at once; the caller takes longer than the idle timeout for each.
    stream, results = engine_stream(upstream(3, "stop"), idle=0.01, attempt_in=3600.0)
    batches, failure = await consume(stream, pause=0.05)
    assert failure is None and batches == 5
    assert results == ["ok"]


async def test_someone_elses_cancel_during_a_read_stays_a_cancel() -> None:
    stream, results = engine_stream(upstream(0, "hang"), idle=3600.0, attempt_in=3600.0)
    task = asyncio.create_task(consume(stream))
    for _ in range(5):
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert results == ["cancelled"]


# ------------------------------------------------------------------ bounded: one await's timer


async def _answer_after(event: asyncio.Event, value: str = "answer") -> str:
    await event.wait()
    return value


def _bounded(work: Any, within: float) -> Any:
    loop = asyncio.get_running_loop()
    return bounded(work, loop.time() + within, "up", loop.time() + 60, FailureKind.READ_TIMEOUT)


async def test_bounded_returns_the_answer_and_leaves_no_cancel() -> None:
    ready = asyncio.Event()
    ready.set()
    assert await _bounded(_answer_after(ready), 5.0) == "answer"
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0


@pytest.mark.parametrize(
    ("deadline_in", "expected"),
    [
        pytest.param(60.0, UpstreamError, id="attempt-end-is-an-upstream-timeout"),
        pytest.param(0.0, DeadlineExceededError, id="budget-end-is-the-deadline"),
    ],
)
async def test_bounded_times_out_as_the_attempt(deadline_in: float, expected: type) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + 0.01
    never = asyncio.Event()
    with pytest.raises(expected) as caught:
        await bounded(_answer_after(never), end, "up", end + deadline_in, FailureKind.TTFT_TIMEOUT)
    if expected is UpstreamError:
        assert caught.value.kind is FailureKind.TTFT_TIMEOUT  # type: ignore[attr-defined]
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0


async def test_bounded_keeps_someone_elses_cancel(monkeypatch: pytest.MonkeyPatch) -> None:
    """The caller cancels in the same moment the bound's timer fires (the client left as the
    attempt timed out): it stays a cancel, not a timeout that swallowed it."""
    fire = _Expiry.fire

    def fire_and_cancel(self: _Expiry) -> None:
        fire(self)
        self.task.cancel()  # someone else's

    monkeypatch.setattr(_Expiry, "fire", fire_and_cancel)
    task = asyncio.create_task(_bounded(_answer_after(asyncio.Event()), 0.01))
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_bounded_an_outside_cancel_is_a_cancel() -> None:
    never = asyncio.Event()
    task = asyncio.create_task(_bounded(_answer_after(never), 5.0))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_bounded_a_failure_is_raised_as_it_is() -> None:
    async def fails() -> None:
        raise UpstreamError("boom", kind=FailureKind.CONNECT, backend="up")

    with pytest.raises(UpstreamError, match="boom"):
        await _bounded(fails(), 5.0)
