"""The rate-limit predictor with a fake clock: configured rpm / tpm windows and what the
upstreams announce."""

from __future__ import annotations

import pytest

from sidecar.engine.limits import DEFAULT_RESET, WINDOW, RateLimits
from sidecar.engine.policy import Target
from sidecar.translate.ratelimit_headers import Announced


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_rpm_is_a_sliding_window_of_60_s() -> None:
    clock = Clock()
    limits = RateLimits(clock)
    t = Target(backend="a", rpm=3)
    for at in (0.0, 10.0, 20.0):
        clock.now = 1000.0 + at
        assert limits.wait_time(t) == 0.0
        limits.started(t)
    assert limits.wait_time(t) == pytest.approx(40.0)  # the first leaves the window at 1060
    clock.now = 1059.9
    assert limits.wait_time(t) > 0
    clock.now = 1060.0
    assert limits.wait_time(t) == 0.0
    limits.started(t)
    assert limits.wait_time(t) == pytest.approx(10.0)  # now the one from 1010 is the oldest


def test_tpm_counts_input_and_output_tokens_in_the_window() -> None:
    clock = Clock()
    limits = RateLimits(clock)
    t = Target(backend="a", tpm=100)
    limits.used(t, 60)
    clock.now += 30
    assert limits.wait_time(t) == 0.0
    limits.used(t, 50)  # 110 in the window
    assert limits.wait_time(t) == pytest.approx(30.0)  # until the 60 of t=0 leave
    clock.now += 30
    assert limits.wait_time(t) == 0.0
    assert limits.snapshot([t])["a"]["tokens_in_window"] == 50


def test_a_target_without_limits_never_waits() -> None:
    limits = RateLimits(Clock())
    t = Target(backend="a")
    for _ in range(1000):
        limits.started(t)
        limits.used(t, 10**6)
    assert limits.wait_time(t) == 0.0


@pytest.mark.parametrize(
    ("announced", "limited", "wait"),
    [
        pytest.param(
            Announced(remaining_requests=0, reset_requests=2.0), False, 2.0, id="requests-0"
        ),
        pytest.param(Announced(remaining_tokens=0, reset_tokens=20.0), False, 20.0, id="tokens-0"),
        pytest.param(Announced(remaining_requests=0), False, DEFAULT_RESET, id="no-reset-given"),
        pytest.param(
            Announced(remaining_requests=5, reset_requests=60.0), False, 0.0, id="some-left"
        ),
        pytest.param(Announced(retry_after=7.0), True, 7.0, id="retry-after-on-429"),
        pytest.param(Announced(retry_after=7.0), False, 0.0, id="retry-after-on-success"),
        pytest.param(
            Announced(
                remaining_requests=0, reset_requests=1.0, remaining_tokens=0, reset_tokens=9.0
            ),
            False,
            9.0,
            id="the-later-reset",
        ),
    ],
)
def test_announced_limits(announced: Announced, limited: bool, wait: float) -> None:
    clock = Clock()
    limits = RateLimits(clock)
    t = Target(backend="a")
    limits.announce("a", announced, limited=limited)
    assert limits.wait_time(t) == pytest.approx(wait)
    clock.now += wait
    assert limits.wait_time(t) == 0.0  # eligible again when the window resets


def test_blocks_are_told_to_shared_state_and_remote_views_count() -> None:
    clock = Clock()
    limits = RateLimits(clock)
    told: list[tuple[str, float]] = []
    limits.on_block = lambda label, until: told.append((label, until))
    limits.announce("a", Announced(remaining_requests=0, reset_requests=5.0))
    limits.announce("a", Announced(remaining_requests=0, reset_requests=1.0))  # earlier: no news
    assert told == [("a", 1005.0)]
    limits.remote["b"] = clock.now + 3
    assert limits.wait_time(Target(backend="b")) == pytest.approx(3.0)
    assert WINDOW == 60.0
