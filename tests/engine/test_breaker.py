"""The circuit breaker's transitions, driven by a hand-held clock."""

from __future__ import annotations

from sidecar.engine.breaker import Breakers


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_opens_after_threshold_then_probes_once() -> None:
    clock = Clock()
    breakers = Breakers(clock)
    for _ in range(2):
        breakers.failure("a", threshold=3, cooldown=10)
        assert breakers.wait_time("a") == 0.0  # still closed
    breakers.failure("a", threshold=3, cooldown=10)
    assert breakers.wait_time("a") == 10.0  # open
    clock.now += 10
    assert breakers.wait_time("a") == 0.0  # cool-down over
    breakers.acquire("a")  # this request is the probe
    assert breakers.wait_time("a") > 0  # others wait for its verdict
    breakers.success("a")
    assert breakers.wait_time("a") == 0.0
    assert breakers.snapshot()["a"]["state"] == "closed"


def test_failed_probe_doubles_the_cooldown_up_to_a_cap() -> None:
    clock = Clock()
    breakers = Breakers(clock)
    breakers.failure("a", threshold=1, cooldown=10)
    waits = []
    for _ in range(5):
        clock.now += breakers.wait_time("a")
        breakers.acquire("a")
        breakers.failure("a", threshold=1, cooldown=10)
        waits.append(breakers.wait_time("a"))
    assert waits == [20, 40, 80, 80, 80]


def test_a_success_resets_the_count() -> None:
    breakers = Breakers(Clock())
    breakers.failure("a", threshold=2, cooldown=10)
    breakers.success("a")
    breakers.failure("a", threshold=2, cooldown=10)
    assert breakers.wait_time("a") == 0.0


def test_release_frees_the_probe_without_a_verdict() -> None:
    clock = Clock()
    breakers = Breakers(clock)
    breakers.failure("a", threshold=1, cooldown=5)
    clock.now += 5
    breakers.acquire("a")
    breakers.release("a")  # e.g. the caller cancelled
    assert breakers.wait_time("a") == 0.0
    assert breakers.snapshot()["a"]["state"] == "open"
