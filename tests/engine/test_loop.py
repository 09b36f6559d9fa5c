"""The fallback loop over groups and rate limits, with scripted fakes and a fake clock: a group
spreads by its strategy and falls back inside itself first; targets predicted over their limit
are skipped with their reason and come back when their window resets."""

from __future__ import annotations

import collections

import pytest

from sidecar.engine.policy import BreakerPolicy, Group, Policy, Target
from sidecar.errors import ChainExhaustedError

from .fakes import Fake, FakeTime, Reply, call, engine_for, status


async def test_a_weighted_group_spreads_by_weight() -> None:
    eu, us = Fake("eu"), Fake("us")
    group = Group(group=(Target("eu"), Target("us", weight=2)))
    engine = engine_for((group,), [eu, us])
    answered = collections.Counter()
    for _ in range(30):
        _, outcome = await engine.create(call())
        answered[outcome.answered_by] += 1
    assert answered == {"eu": 10, "us": 20}


async def test_a_failed_member_moves_on_inside_the_group_before_the_next_step() -> None:
    eu, us, last = Fake("eu", [status(503)]), Fake("us"), Fake("last")
    group = Group(group=(Target("eu", weight=5), Target("us")))
    engine = engine_for((group, Target("last")), [eu, us, last])
    _, outcome = await engine.create(call())
    assert [a.target for a in outcome.attempts] == ["eu", "us"]
    assert outcome.answered_by == "us" and last.calls == 0


async def test_the_chain_goes_to_its_next_step_when_the_whole_group_failed() -> None:
    eu, us, last = Fake("eu", [status(500)]), Fake("us", [status(502)]), Fake("last")
    engine = engine_for((Group(group=(Target("eu"), Target("us"))), Target("last")), [eu, us, last])
    _, outcome = await engine.create(call())
    assert [a.target for a in outcome.attempts] == ["eu", "us", "last"]
    assert [a.status for a in outcome.attempts] == [500, 502, None]


async def test_least_busy_sends_the_next_request_where_fewer_are_in_flight() -> None:
    eu, us = Fake("eu"), Fake("us")
    engine = engine_for(
        (Group(group=(Target("eu"), Target("us")), strategy="least_busy"),), [eu, us]
    )
    held = await engine.open_stream(call())  # a stream in flight on one member...
    busy = held.outcome.answered_by
    try:
        for _ in range(3):
            _, outcome = await engine.create(call())
            assert outcome.answered_by != busy  # ...keeps the others first
    finally:
        await held.aclose()
    assert not any(engine.in_flight_by_target.counts.values())


async def test_every_error_is_kept_in_the_exhausted_error() -> None:
    a, b = Fake("a", [status(500)]), Fake("b", [status(503)])
    engine = engine_for((Target("a"), Target("b")), [a, b])
    with pytest.raises(ChainExhaustedError) as info:
        await engine.create(call())
    assert [e.status for e in info.value.errors] == [500, 503]  # type: ignore[attr-defined]


async def test_announced_remaining_zero_skips_the_target_until_its_reset() -> None:
    time = FakeTime()
    limited = Reply(
        headers={"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "6s"}
    )
    a, b = Fake("a", [limited]), Fake("b")
    engine = engine_for((Target("a"), Target("b")), [a, b], time=time)
    _, first = await engine.create(call())
    assert first.answered_by == "a"  # the answer itself is fine: it announced the limit
    _, second = await engine.create(call())
    assert second.answered_by == "b" and a.calls == 1
    assert second.skipped == [{"target": "a", "reason": "rate_limited"}]
    time.now += 6
    _, third = await engine.create(call())
    assert third.answered_by == "a" and third.skipped == []


async def test_a_429_with_retry_after_blocks_the_target_and_not_its_breaker_alone() -> None:
    time = FakeTime()
    a, b = Fake("a", [status(429, retry_after=30)]), Fake("b")
    policy = Policy(breaker=BreakerPolicy(failures=100))
    engine = engine_for((Target("a"), Target("b")), [a, b], policy, time)
    _, outcome = await engine.create(call())
    assert outcome.answered_by == "b"
    _, outcome = await engine.create(call())
    assert outcome.skipped == [{"target": "a", "reason": "rate_limited"}]
    time.now += 30
    _, outcome = await engine.create(call())
    assert outcome.answered_by == "a"


async def test_configured_rpm_skips_before_the_upstream_429s() -> None:
    time = FakeTime()
    a, b = Fake("a"), Fake("b")
    engine = engine_for((Target("a", rpm=2), Target("b")), [a, b], time=time)
    seen = []
    for _ in range(4):
        _, outcome = await engine.create(call())
        seen.append(outcome.answered_by)
        time.now += 1
    assert seen == ["a", "a", "b", "b"]
    time.now = 60.0
    _, outcome = await engine.create(call())
    assert outcome.answered_by == "a"  # the first request left the window


async def test_configured_tpm_counts_what_the_answers_used() -> None:
    time = FakeTime()
    a, b = Fake("a", usage=(40, 20)), Fake("b")
    engine = engine_for((Target("a", tpm=100), Target("b")), [a, b], time=time)
    answered = []
    for _ in range(3):
        _, outcome = await engine.create(call())
        answered.append(outcome.answered_by)
    assert answered == ["a", "a", "b"]  # 60, then 120 >= 100


async def test_when_every_target_is_limited_the_one_that_resets_first_is_tried() -> None:
    time = FakeTime()
    a = Fake(
        "a",
        [
            Reply(
                headers={"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "20s"}
            )
        ],
    )
    b = Fake(
        "b",
        [Reply(headers={"x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "5s"})],
    )
    engine = engine_for((Target("a"), Target("b")), [a, b], time=time)
    await engine.create(call())  # a answers, announcing its limit
    await engine.create(call())  # b answers (a skipped), announcing its own
    _, outcome = await engine.create(call())
    assert outcome.answered_by == "b"  # resets in 5 s, a in 20 s
    assert outcome.skipped == []


async def test_the_upstream_headers_of_an_error_reach_the_limiter_too() -> None:
    time = FakeTime()
    error = Reply(headers={"retry-after-ms": "2500"}, error=status(429))
    a, b = Fake("a", [error]), Fake("b")
    engine = engine_for((Target("a"), Target("b")), [a, b], time=time)
    await engine.create(call())
    assert engine.limits.wait_time(Target("a")) == pytest.approx(2.5)


async def test_streams_report_headers_and_count_in_flight_until_closed() -> None:
    a = Fake("a", [Reply(headers={"x-ratelimit-remaining-requests": "0"})])
    engine = engine_for((Target("a"),), [a])
    stream = await engine.open_stream(call())
    assert engine.in_flight_by_target.get("a") == 1
    async for _ in stream:
        pass
    await stream.aclose()
    assert engine.in_flight_by_target.get("a") == 0
    assert engine.limits.wait_time(Target("a")) > 0
