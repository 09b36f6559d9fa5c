"""Shared state between two engines' breakers and limits over an in-memory store, with fake
clocks: what one sidecar sees, the other applies; a store that fails or is slow leaves each
to its own state. (The same against a real Redis and two processes:
tests/integration/test_shared_state.py.)"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from sidecar.engine.breaker import Breakers, BreakerState
from sidecar.engine.limits import RateLimits
from sidecar.engine.policy import Target
from sidecar.engine.shared import SharedState
from sidecar.translate.ratelimit_headers import Announced


class Clocks:
    """One wall clock for the store and both pods; each pod's monotonic clock has its own
    origin, as two processes' do."""

    def __init__(self) -> None:
        self.wall = 1_000_000.0

    def mono(self, offset: float) -> Callable[[], float]:
        return lambda: self.wall - 1_000_000.0 + offset


class MemoryStore:
    def __init__(self, clocks: Clocks) -> None:
        self.clocks = clocks
        self.data: dict[str, tuple[bytes, float]] = {}
        self.down = False
        self.slow = False
        self.calls = 0

    async def _enter(self) -> None:
        self.calls += 1
        if self.down:
            raise ConnectionError("store down")
        if self.slow:
            await asyncio.sleep(3600)

    def _live(self, key: str) -> bytes | None:
        item = self.data.get(key)
        if item is None or item[1] <= self.clocks.wall:
            self.data.pop(key, None)
            return None
        return item[0]

    async def read(self, keys: list[str]) -> list[bytes | None]:
        await self._enter()
        return [self._live(k) for k in keys]

    async def write(
        self,
        sets: list[tuple[str, str, int]],
        deletes: list[str],
        increments: list[tuple[str, int, int]],
    ) -> None:
        await self._enter()
        for key, value, ttl in sets:
            self.data[key] = (value.encode(), self.clocks.wall + ttl / 1000)
        for key in deletes:
            self.data.pop(key, None)
        for key, n, ttl in increments:
            old = int(self._live(key) or b"0")
            self.data[key] = (str(old + n).encode(), self.clocks.wall + ttl)

    async def claim(self, key: str, value: str, ttl_ms: int) -> bool:
        await self._enter()
        if self._live(key) is not None:
            return False
        self.data[key] = (value.encode(), self.clocks.wall + ttl_ms / 1000)
        return True

    async def aclose(self) -> None:
        return None


TARGETS = [Target("a"), Target("limited", rpm=5)]


class Pod:
    def __init__(self, store: MemoryStore, clocks: Clocks, offset: float, timeout: float = 1.0):
        clock = clocks.mono(offset)
        self.breakers = Breakers(clock)
        self.limits = RateLimits(clock)
        self.clock = clock
        self.shared = SharedState(
            store,
            prefix="t:",
            timeout=timeout,
            breakers=self.breakers,
            limits=self.limits,
            targets=lambda: TARGETS,
            clock=clock,
            wall=lambda: clocks.wall,
            owner=f"pod{offset}",
        )

    def open(self, label: str = "a", cooldown: float = 30.0) -> None:
        self.breakers.failure(label, threshold=1, cooldown=cooldown)


World = tuple[Clocks, MemoryStore, "Pod", "Pod"]


@pytest.fixture
def world() -> World:
    clocks = Clocks()
    store = MemoryStore(clocks)
    return clocks, store, Pod(store, clocks, 5.0), Pod(store, clocks, 900.0)


async def test_a_breaker_opened_by_one_opens_in_the_other_until_then(
    world: World,
) -> None:
    clocks, _, one, two = world
    assert await one.shared.round() and await two.shared.round()
    one.open(cooldown=30)
    await one.shared.round()  # written
    await two.shared.round()  # read
    assert two.breakers.state("a") is BreakerState.OPEN
    assert two.breakers.wait_time("a") == pytest.approx(30.0)
    clocks.wall += 10
    assert two.breakers.wait_time("a") == pytest.approx(20.0)


async def test_one_probe_at_a_time_and_its_success_closes_every_breaker(world: World) -> None:
    clocks, _, one, two = world
    one.open(cooldown=30)
    await one.shared.round()
    await two.shared.round()
    clocks.wall += 31  # cool-down over in both
    assert one.breakers.is_probe("a") and two.breakers.is_probe("a")
    assert await two.shared.claim_probe("a", 5.0) is True
    assert await one.shared.claim_probe("a", 5.0) is False  # two is probing
    two.breakers.acquire("a")
    two.breakers.success("a")
    await two.shared.round()  # the key is deleted
    await one.shared.round()
    assert one.breakers.state("a") is BreakerState.CLOSED


async def test_a_failed_probe_reopens_everywhere_with_the_doubled_cool_down(world: World) -> None:
    clocks, _, one, two = world
    one.open(cooldown=10)
    await one.shared.round()
    await two.shared.round()
    clocks.wall += 11
    two.breakers.acquire("a")
    two.breakers.failure("a", threshold=1, cooldown=10)  # the probe failed: 20 s now
    await two.shared.round()
    await one.shared.round()
    assert one.breakers.wait_time("a") == pytest.approx(20.0)


async def test_a_rate_limit_announced_to_one_is_respected_by_the_other(world: World) -> None:
    clocks, _, one, two = world
    one.limits.announce("a", Announced(remaining_requests=0, reset_requests=4.0))
    await one.shared.round()
    await two.shared.round()
    assert two.limits.wait_time(Target("a")) == pytest.approx(4.0)
    clocks.wall += 4.5
    await two.shared.round()  # expired in the store
    assert two.limits.wait_time(Target("a")) == 0.0


async def test_configured_rpm_is_counted_over_every_sidecar(world: World) -> None:
    _, _, one, two = world
    target = TARGETS[1]
    for _ in range(3):
        one.limits.started(target)
    for _ in range(2):
        two.limits.started(target)
    assert one.limits.wait_time(target) == 0.0 and two.limits.wait_time(target) == 0.0
    await one.shared.round()
    await two.shared.round()  # 5 of 5 in the shared window
    assert two.limits.wait_time(target) > 0
    await one.shared.round()
    assert one.limits.wait_time(target) > 0


async def test_a_store_that_is_down_leaves_each_pod_its_own_state(world: World) -> None:
    _, store, one, two = world
    one.limits.announce("a", Announced(remaining_requests=0, reset_requests=60.0))
    await one.shared.round()
    await two.shared.round()
    assert two.limits.wait_time(Target("a")) > 0
    store.down = True
    two.open()
    assert await two.shared.round() is False
    assert two.shared.status() == {"mode": "per_pod", "errors": 1, "last_error": "ConnectionError"}
    assert two.limits.wait_time(Target("a")) == 0.0  # the remote view is dropped
    assert two.breakers.state("a") is BreakerState.OPEN  # its own state stays
    assert await two.shared.claim_probe("a", 1.0) is True  # probes are local
    store.down = False
    assert await two.shared.round() is True  # back: what could not be written goes out now
    await one.shared.round()
    assert one.breakers.state("a") is BreakerState.OPEN
    assert two.shared.status()["mode"] == "shared"


async def test_a_slow_store_is_cut_off_at_the_timeout(world: World) -> None:
    clocks, store, _, _ = world
    pod = Pod(store, clocks, 1.0, timeout=0.01)
    assert await pod.shared.round() is True
    store.slow = True
    assert await asyncio.wait_for(pod.shared.round(), 5) is False  # bounded, not 3600 s
    pod.open()
    calls = store.calls
    assert await asyncio.wait_for(pod.shared.claim_probe("a", 1.0), 5) is True
    assert store.calls == calls  # per pod now: the probe is not even asked for
    assert pod.shared.errors == 1
