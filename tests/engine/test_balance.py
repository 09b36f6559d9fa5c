"""The group strategies, driven by a fake clock and scripted random numbers."""

from __future__ import annotations

import collections
import itertools

import pytest

from sidecar.engine.balance import DECAY, Balancer, InFlight
from sidecar.engine.policy import Group, Target


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def group(strategy: str, *weights: float) -> Group:
    members = tuple(Target(backend=f"t{i}", weight=w) for i, w in enumerate(weights))
    return Group(group=members, strategy=strategy)  # type: ignore[arg-type]


def names(order: list[Target]) -> list[str]:
    return [t.backend for t in order]


@pytest.mark.parametrize(
    ("weights", "rounds"),
    [
        pytest.param((1, 1), 10, id="equal"),
        pytest.param((1, 2), 10, id="one-two"),
        pytest.param((5, 1, 1), 7, id="five-one-one"),
        pytest.param((0.5, 1.5), 20, id="fractional"),
    ],
)
def test_weighted_firsts_follow_the_weights_exactly(
    weights: tuple[float, ...], rounds: int
) -> None:
    balancer = Balancer(InFlight(), Clock(), lambda: 0.0)
    g = group("weighted", *weights)
    total = sum(weights)
    per_round = int(total) if total == int(total) else int(total * 2)
    firsts = collections.Counter(balancer.order(g)[0].backend for _ in range(per_round * rounds))
    for i, w in enumerate(weights):
        assert firsts[f"t{i}"] == w / total * per_round * rounds


def test_weighted_is_smooth_not_bursty_and_lists_every_member() -> None:
    balancer = Balancer(InFlight(), Clock(), lambda: 0.0)
    g = group("weighted", 5, 1, 1)
    orders = [names(balancer.order(g)) for _ in range(7)]
    assert [o[0] for o in orders] == ["t0", "t0", "t1", "t0", "t2", "t0", "t0"]  # nginx's
    assert all(sorted(o) == ["t0", "t1", "t2"] for o in orders)


def test_least_busy_prefers_fewest_in_flight_and_rotates_ties() -> None:
    in_flight = InFlight()
    balancer = Balancer(in_flight, Clock(), lambda: 0.0)
    g = group("least_busy", 1, 1, 1)
    assert [balancer.order(g)[0].backend for _ in range(3)] == ["t0", "t1", "t2"]
    in_flight.add("t0")
    in_flight.add("t1")
    in_flight.add("t1")
    assert names(balancer.order(g)) == ["t2", "t0", "t1"]
    in_flight.add("t2")
    in_flight.add("t2")
    in_flight.add("t2")
    assert names(balancer.order(g)) == ["t0", "t1", "t2"]
    in_flight.done("t2")
    in_flight.done("t2")
    in_flight.done("t2")
    assert in_flight.get("t2") == 0


def test_latency_power_of_two_choices_takes_the_cheaper_of_the_two() -> None:
    clock = Clock()
    draws = itertools.cycle([0.0, 0.5])  # members 0 and 2 of three (the second skips the first)
    balancer = Balancer(InFlight(), clock, lambda: next(draws))
    g = group("latency", 1, 1, 1)
    balancer.observe("t0", 2.0)
    balancer.observe("t1", 0.1)
    balancer.observe("t2", 0.5)
    order = names(balancer.order(g))
    assert order[0] == "t2"  # of t0 and t2 (t1, the fastest, was not drawn)
    assert order[1:] == ["t1", "t0"]  # the rest by cost


def test_latency_an_unmeasured_member_is_tried_and_in_flight_multiplies_the_cost() -> None:
    in_flight = InFlight()
    balancer = Balancer(in_flight, Clock(), lambda: 0.0)  # draws members 0 and 1
    g = group("latency", 1, 1)
    balancer.observe("t0", 0.2)
    assert names(balancer.order(g))[0] == "t1"  # never measured: cost 0
    balancer.observe("t1", 0.3)
    assert names(balancer.order(g))[0] == "t0"
    for _ in range(2):
        in_flight.add("t0")  # 0.2 * 3 > 0.3 * 1
    assert names(balancer.order(g))[0] == "t1"


def test_peak_ewma_jumps_up_at_once_and_decays_with_time() -> None:
    clock = Clock()
    balancer = Balancer(InFlight(), clock, lambda: 0.0)
    balancer.observe("t", 0.1)
    balancer.observe("t", 1.0)
    assert balancer.cost("t") == pytest.approx(1.0)  # a slower sample counts in full
    clock.now = DECAY
    assert balancer.cost("t") == pytest.approx(1.0 / 2.718281828, rel=1e-6)
    balancer.observe("t", 0.1)  # a faster one pulls it down, weighted by the time passed
    w = 2.718281828**-1
    assert balancer.cost("t") == pytest.approx(1.0 * w + 0.1 * (1 - w), rel=1e-6)


def test_a_group_of_one_is_that_target() -> None:
    balancer = Balancer(InFlight(), Clock(), lambda: 0.0)
    for strategy in ("weighted", "least_busy", "latency"):
        assert names(balancer.order(group(strategy, 3))) == ["t0"]
