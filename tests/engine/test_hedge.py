"""Hedged requests: the budget with a fake clock, and the race with scripted fakes.

The races use a short ``hedge_after`` on the real loop clock, but no assertion depends on how
long anything took: the slow side never answers on its own ("hang") or is scripted to answer
after the other one.
"""

from __future__ import annotations

import asyncio

import pytest

from sidecar.engine.hedge import HedgeBudget
from sidecar.engine.policy import BreakerPolicy, Policy, Target
from sidecar.errors import SidecarError

from .fakes import Fake, Reply, call, engine_for, status

HEDGE = Policy(hedge_after=0.02, hedge_budget=1.0, breaker=BreakerPolicy(failures=1))


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_budget_caps_the_share_of_hedged_requests_over_60_s() -> None:
    clock = Clock()
    budget = HedgeBudget(clock)
    allowed = 0
    for _ in range(100):
        budget.request("c")
        if budget.allow("c", 0.1):
            budget.hedged("c")
            allowed += 1
        clock.now += 0.1
    assert allowed == 10  # 10 % of 100 requests in the window
    assert not budget.allow("c", 0.1)
    clock.now += 60  # the window has emptied: hedges need new requests again
    assert not budget.allow("c", 0.1)
    for _ in range(10):
        budget.request("c")
    assert budget.allow("c", 0.1)
    assert not budget.allow("other", 1.0)  # per chain


def test_the_window_slides_second_by_second() -> None:
    clock = Clock()
    budget = HedgeBudget(clock)
    for _ in range(10):
        budget.request("c")
    budget.hedged("c")
    clock.now = 30
    for _ in range(10):
        budget.request("c")
    assert budget.allow("c", 0.1)  # 1 hedge of 20 requests
    budget.hedged("c")
    assert not budget.allow("c", 0.1)
    clock.now = 60.5  # the first second's 10 requests and its hedge left
    assert not budget.allow("c", 0.1)  # 1 hedge of 10
    clock.now = 91
    assert not budget.allow("c", 0.1)  # nothing left
    budget.request("c")
    assert not budget.allow("c", 0.5)


async def test_a_slow_first_attempt_is_hedged_and_the_hedge_wins() -> None:
    a, b = Fake("a", ["hang"]), Fake("b")
    engine = engine_for((Target("a"), Target("b")), [a, b], HEDGE)
    message, outcome = await engine.create(call())
    assert message.content[0].text == "from b"  # type: ignore[union-attr]
    assert outcome.hedge == "won" and ("x-anyllm-hedged", "true") in outcome.metadata()
    assert a.cancelled == 1  # the loser's call was cancelled: its connection is closed
    assert [(x.target, x.outcome) for x in outcome.attempts] == [("b", "ok"), ("a", "hedge_lost")]
    assert engine.breakers.snapshot().get("a", {"state": "closed"})["state"] == "closed"
    assert not any(engine.in_flight_by_target.counts.values())


async def test_the_first_attempt_can_still_win_a_hedged_race() -> None:
    hedged = asyncio.Event()
    a = Fake("a", [Reply(after=hedged)])  # answers once the hedge has started
    b = Fake("b", [Reply(opens=hedged, after=asyncio.Event())])  # then never
    engine = engine_for((Target("a"), Target("b")), [a, b], HEDGE)
    _, outcome = await engine.create(call())
    assert outcome.answered_by == "a" and outcome.hedge == "lost"
    assert b.cancelled == 1
    assert ("x-anyllm-hedged", "true") in outcome.metadata()


async def test_a_fast_answer_is_not_hedged() -> None:
    a, b = Fake("a"), Fake("b")
    engine = engine_for((Target("a"), Target("b")), [a, b], HEDGE)
    _, outcome = await engine.create(call())
    assert outcome.hedge is None and b.calls == 0
    assert all(key != "x-anyllm-hedged" for key, _ in outcome.metadata())


async def test_without_budget_left_the_slow_attempt_is_waited_for() -> None:
    a, b = Fake("a", [Reply(delay=0.06)]), Fake("b")
    policy = Policy(hedge_after=0.02, hedge_budget=0.5)  # 1 request: 0.5 hedges allowed
    engine = engine_for((Target("a"), Target("b")), [a, b], policy)
    _, outcome = await engine.create(call())
    assert outcome.answered_by == "a" and outcome.hedge is None and b.calls == 0


async def test_when_both_fail_the_chain_goes_on_without_another_hedge() -> None:
    hedged = asyncio.Event()
    a = Fake("a", [Reply(after=hedged, error=status(500))])
    b = Fake("b", [Reply(opens=hedged, error=status(502))])
    c, d = Fake("c", [Reply(delay=0.06)]), Fake("d")
    engine = engine_for((Target("a"), Target("b"), Target("c"), Target("d")), [a, b, c, d], HEDGE)
    _, outcome = await engine.create(call())
    assert outcome.answered_by == "c" and d.calls == 0  # slow, but at most one hedge
    assert outcome.hedge == "failed"
    assert [x.outcome for x in outcome.attempts] == ["status", "status", "ok"]


async def test_a_failure_of_the_hedge_is_judged_while_the_first_goes_on() -> None:
    hedged = asyncio.Event()
    a = Fake("a", [Reply(after=hedged, delay=0.01)])
    b = Fake("b", [Reply(opens=hedged, error=status(503))])
    engine = engine_for((Target("a"), Target("b")), [a, b], HEDGE)
    _, outcome = await engine.create(call())
    assert outcome.answered_by == "a" and outcome.hedge == "lost"
    assert engine.breakers.snapshot()["b"]["state"] == "open"  # a real failure counts


async def test_a_chain_stopping_error_in_the_race_cancels_the_other() -> None:
    a, b = Fake("a", ["hang"]), Fake("b", [status(400)])
    engine = engine_for((Target("a"), Target("b")), [a, b], HEDGE)
    with pytest.raises(SidecarError) as info:
        await engine.create(call())
    assert info.value.error_type == "invalid_request_error"
    assert a.cancelled == 1


async def test_a_stream_is_hedged_before_its_commit_point() -> None:
    a, b = Fake("a", ["hang"]), Fake("b")
    engine = engine_for((Target("a"), Target("b")), [a, b], HEDGE)
    stream = await engine.open_stream(call())
    text = ""
    async for batch in stream:
        for event in batch:
            delta = getattr(event, "delta", None)
            text += getattr(delta, "text", "") or ""
    await stream.aclose()
    assert text == "from b"
    assert stream.outcome.hedge == "won" and a.cancelled == 1
    assert not any(engine.in_flight_by_target.counts.values())
