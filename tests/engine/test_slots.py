"""A backend's configured connection limit: waiting for a slot is the sidecar's own condition,
outside the upstream's timers, and never the upstream's failure (no attempt, no breaker, no
fallback). Fake backends from test_engine; the waits are bounds, not measurements."""

from __future__ import annotations

import asyncio

import pytest

from sidecar.engine.engine import Engine
from sidecar.engine.policy import BreakerPolicy, Chain, Policy, Routes, Target
from sidecar.engine.slots import Slots
from sidecar.errors import LocalLimitError
from tests.engine.test_engine import FakeBackend, call


class Rejections:
    """An observer that records local rejections."""

    def __init__(self) -> None:
        self.rejected: list[tuple[str, str, str]] = []

    def request_started(self, outcome: object) -> None:
        return None

    def request_finished(self, outcome: object) -> None:
        return None

    def request_rejected(self, surface: str, kind: str, reason: str) -> None:
        self.rejected.append((surface, kind, reason))


def limited_engine(
    policy: Policy, limit: int = 1
) -> tuple[Engine, FakeBackend, FakeBackend, Rejections]:
    a, b = FakeBackend("a", []), FakeBackend("b", [])
    chains = {"default": Chain(name="default", targets=(Target("a"), Target("b")), policy=policy)}
    observer = Rejections()
    engine = Engine(
        backends={"a": a, "b": b},
        routes=Routes([], chains),
        limits={"a": limit, "b": 0},
        observer=observer,
    )
    return engine, a, b, observer


async def test_no_free_slot_in_time_is_a_local_529_not_an_upstream_failure() -> None:
    policy = Policy(pool_timeout=0.05, breaker=BreakerPolicy(failures=1))
    engine, a, b, observer = limited_engine(policy)
    holder = await engine.open_stream(call())  # holds a's only slot until closed
    try:
        with pytest.raises(LocalLimitError) as info:
            await engine.create(call())
    finally:
        await holder.aclose()
    error = info.value
    assert (error.http_status, error.error_type, error.grpc_code) == (
        529,
        "overloaded_error",
        "RESOURCE_EXHAUSTED",
    )
    assert error.retry_after == 1
    assert "limit of 1 concurrent requests to backend 'a'" in error.message
    assert (a.calls, b.calls) == (1, 0)  # no attempt on a, no fallback to b
    assert dict(error.metadata)["x-anyllm-attempts"] == "0"
    assert engine.breakers.wait_time("a") == 0.0  # closed: one failure would have opened it
    assert observer.rejected == [("http", "create", "pool")]
    message, outcome = await engine.create(call())  # the slot is free again
    assert outcome.answered_by == "a" and outcome.pool_waits == []


async def test_the_wait_for_a_slot_is_not_the_attempts_time() -> None:
    # The attempt timer (0.5 s) is shorter than the wait (the holder keeps the slot 0.8 s):
    # the attempt still gets its whole timer once it has the slot.
    engine, a, _, _ = limited_engine(Policy(pool_timeout=30, attempt_timeout=0.5))
    holder = await engine.open_stream(call())

    async def close_later() -> None:
        await asyncio.sleep(0.8)
        await holder.aclose()

    closing = asyncio.create_task(close_later())
    message, outcome = await engine.create(call())
    await closing
    assert outcome.answered_by == "a"
    assert [x.outcome for x in outcome.attempts] == ["ok"]
    ((backend, waited),) = outcome.pool_waits
    assert backend == "a" and waited > 0


async def test_a_failed_attempt_gives_its_slot_back() -> None:
    policy = Policy(pool_timeout=0.05)
    engine, a, _, _ = limited_engine(policy)
    a.steps = ["cut_after_content"]
    stream = await engine.open_stream(call())
    with pytest.raises(Exception):  # noqa: B017 - the cut, after the commit point
        async for _ in stream:
            pass
    await stream.aclose()
    _, outcome = await engine.create(call())
    assert outcome.pool_waits == []


async def test_the_concurrency_limit_is_a_local_limit_too() -> None:
    observer = Rejections()
    a = FakeBackend("a", ["hang"])
    chains = {"default": Chain(name="default", targets=(Target("a"),), policy=Policy())}
    engine = Engine(
        backends={"a": a}, routes=Routes([], chains), max_concurrent=1, observer=observer
    )
    hanging = asyncio.create_task(engine.create(call()))
    await asyncio.sleep(0)
    with pytest.raises(LocalLimitError) as info:
        await engine.create(call())
    hanging.cancel()
    assert info.value.grpc_code == "RESOURCE_EXHAUSTED" and info.value.http_status == 529
    assert "limit of 1 concurrent requests" in info.value.message
    assert observer.rejected == [("http", "create", "concurrency")]


async def test_unbounded_backends_have_no_slots() -> None:
    slots = Slots({"a": 0})
    waits: list[tuple[str, float]] = []
    for _ in range(1000):
        await slots.take("a", 0.0, waits)  # never waits, never refuses
    assert waits == []


@pytest.mark.parametrize(
    ("limits", "limited"),
    [
        pytest.param({"a": 2}, True, id="a-limit"),
        pytest.param({"a": 0}, False, id="zero-is-unbounded"),
        pytest.param({}, False, id="not-configured"),
    ],
)
async def test_limited_says_whether_take_could_wait(limits: dict[str, int], limited: bool) -> None:
    assert Slots(limits).limited("a") is limited
