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


def test_transitions_are_told_for_shared_state_and_remote_views_applied() -> None:
    clock = Clock()
    breakers = Breakers(clock)
    told: list[tuple[str, float | None, float]] = []
    breakers.on_change = lambda key, until, cooldown: told.append((key, until, cooldown))
    breakers.failure("a", threshold=1, cooldown=10)
    assert told == [("a", 1010.0, 10)]
    clock.now += 10
    assert breakers.is_probe("a")
    breakers.acquire("a")
    assert not breakers.is_probe("a")  # half-open: the probe is out
    breakers.apply_remote("a", 5000.0, 10)  # our own probe's verdict comes first
    assert breakers.state("a").value == "half_open"
    breakers.success("a")
    assert told[-1] == ("a", None, 0.0)
    breakers.apply_remote("b", clock.now + 7, 7)  # another sidecar opened b
    assert breakers.wait_time("b") == 7.0 and len(told) == 2  # not echoed back
    breakers.apply_remote("b", None, 0)  # ... and closed it
    assert breakers.wait_time("b") == 0.0 and breakers.state("b").value == "closed"
