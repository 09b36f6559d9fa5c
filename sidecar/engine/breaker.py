"""Circuit breakers, one per target (``backend/model``), shared by every chain that uses it.

States, as a table rather than flags:

    CLOSED     ─ N consecutive failures ─▶ OPEN (for the cool-down)
    OPEN       ─ cool-down over, a request asks ─▶ HALF_OPEN (that request is the one probe)
    HALF_OPEN  ─ probe succeeds ─▶ CLOSED
    HALF_OPEN  ─ probe fails ─▶ OPEN (cool-down doubled, up to 8x the configured one)

With shared state (engine/shared.py) the breakers of every sidecar are one: ``on_change`` tells
it of each transition to OPEN or CLOSED, ``apply_remote`` opens (until the same moment) or closes
a target from what another sidecar saw, and before an OPEN target's probe the fallback loop
claims the probe across all sidecars.

Only failures that move on (the upstream's health: connection errors, timeouts, 429, 5xx)
count; a 400 is the caller's problem and says nothing about the target. The clock is passed
in, so tests drive time by hand.
"""

from __future__ import annotations

import enum
from collections.abc import Callable

MAX_COOLDOWN_FACTOR = 8


class BreakerState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class _Target:
    __slots__ = ("cooldown", "failures", "open_until", "state")

    def __init__(self) -> None:
        self.state = BreakerState.CLOSED
        self.failures = 0
        self.open_until = 0.0
        self.cooldown = 0.0


class Breakers:
    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._targets: dict[str, _Target] = {}
        # (key, open_until or None when closed, cooldown): for shared state; None: per-pod.
        self.on_change: Callable[[str, float | None, float], None] | None = None

    def is_probe(self, key: str) -> bool:
        """Whether the next request to ``key`` would be its probe (open, cool-down over)."""
        target = self._targets.get(key)
        return (
            target is not None
            and target.state is BreakerState.OPEN
            and target.open_until <= self._clock()
        )

    def apply_remote(self, key: str, open_until: float | None, cooldown: float) -> None:
        """Another sidecar's view: open until ``open_until`` (this clock), or closed (None)."""
        target = self._targets.get(key)
        if open_until is None:
            if target is not None and target.state is BreakerState.OPEN:
                target.state, target.failures = BreakerState.CLOSED, 0
            return
        if target is None:
            target = self._get(key)
        if target.state is BreakerState.HALF_OPEN:
            return  # our own probe is out: its verdict comes first
        if target.state is BreakerState.CLOSED or open_until > target.open_until:
            target.state = BreakerState.OPEN
            target.open_until = open_until
            target.cooldown = max(target.cooldown, cooldown)

    def state(self, key: str) -> BreakerState:
        target = self._targets.get(key)
        return BreakerState.CLOSED if target is None else target.state

    def _get(self, key: str) -> _Target:
        target = self._targets.get(key)
        if target is None:
            target = self._targets[key] = _Target()
        return target

    def wait_time(self, key: str) -> float:
        """0 when a request may go to ``key`` now, else the seconds until it may."""
        target = self._targets.get(key)
        if target is None or target.state is BreakerState.CLOSED:
            return 0.0
        if target.state is BreakerState.HALF_OPEN:
            return target.cooldown or 1.0  # a probe is in flight: others wait for its verdict
        return max(0.0, target.open_until - self._clock())

    def acquire(self, key: str) -> None:
        """A request goes to ``key``: an open breaker past its cool-down lets it be the probe."""
        target = self._targets.get(key)
        if target is not None and target.state is BreakerState.OPEN:
            target.state = BreakerState.HALF_OPEN

    def success(self, key: str) -> None:
        target = self._targets.get(key)
        if target is not None:
            reopened = target.state is not BreakerState.CLOSED
            target.state, target.failures, target.cooldown = BreakerState.CLOSED, 0, 0.0
            if reopened and self.on_change is not None:
                self.on_change(key, None, 0.0)

    def failure(self, key: str, *, threshold: int, cooldown: float) -> None:
        target = self._get(key)
        target.failures += 1
        if target.state is BreakerState.HALF_OPEN:
            target.cooldown = min(target.cooldown * 2, cooldown * MAX_COOLDOWN_FACTOR)
        elif target.failures >= threshold:
            target.cooldown = cooldown
        else:
            return
        target.state = BreakerState.OPEN
        target.open_until = self._clock() + target.cooldown
        if self.on_change is not None:
            self.on_change(key, target.open_until, target.cooldown)

    def release(self, key: str) -> None:
        """The request ended without a verdict (cancelled, or the caller's fault): no probe held."""
        target = self._targets.get(key)
        if target is not None and target.state is BreakerState.HALF_OPEN:
            target.state = BreakerState.OPEN
            target.open_until = self._clock()

    def snapshot(self) -> dict[str, dict[str, object]]:
        """Every target's state, for the debug endpoint and metrics."""
        now = self._clock()
        return {
            key: {
                "state": t.state.value,
                "consecutive_failures": t.failures,
                "retry_in_seconds": round(max(0.0, t.open_until - now), 3)
                if t.state is BreakerState.OPEN
                else 0.0,
            }
            for key, t in sorted(self._targets.items())
        }
