"""Load balancing inside a group: which member a request tries first, and the order of the rest.

A group step (``{group: [...], strategy: ...}``) is expanded, when a request reaches the chain,
into an ordered list of its members; the fallback loop then walks that list like any other run
of targets (a member that fails moves on to the next member first, then to the chain's next
step). The strategies:

``weighted``
    Smooth weighted round robin (nginx's): each pick adds every member's weight to its running
    score, takes the highest and subtracts the total from it. Over any ``sum(weights)``
    consecutive requests each member is first exactly ``weight`` times, spread out rather than
    in bursts, with no randomness. The others follow by score.
``least_busy``
    Fewest requests in flight (``InFlight``, counted by the engine per target) first; ties go
    round robin so an idle group is still spread.
``latency``
    Power of two choices over a peak-EWMA (Finagle's): two members picked at random, the one
    with the lower ``ewma * (in_flight + 1)`` first, the rest by that cost. The EWMA follows a
    sample up at once (a slow answer counts in full) and decays towards faster ones with a time
    constant of ``DECAY`` seconds; a member never measured costs 0, so it is tried.

State (scores, EWMAs) lives in ``Balancer``, keyed by the group's label, and survives reloads.
The clock and the random numbers are passed in, so tests drive both.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from .policy import Group, Target

DECAY = 10.0  # seconds: how fast the latency EWMA forgets a slow sample


class InFlight:
    """Requests in flight per target label (an attempt in progress, or a stream being read)."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def add(self, label: str) -> None:
        self.counts[label] = self.counts.get(label, 0) + 1

    def done(self, label: str) -> None:
        # kept at 0 rather than removed: the labels are the configured targets (bounded), and
        # the per-target gauge shows every target that has been used
        self.counts[label] = max(0, self.counts.get(label, 0) - 1)

    def get(self, label: str) -> int:
        return self.counts.get(label, 0)


class _Ewma:
    __slots__ = ("at", "value")

    def __init__(self) -> None:
        self.value = 0.0
        self.at = 0.0


class Balancer:
    def __init__(
        self,
        in_flight: InFlight,
        clock: Callable[[], float],
        rand: Callable[[], float],
    ) -> None:
        self._in_flight = in_flight
        self._clock = clock
        self._rand = rand
        self._scores: dict[str, dict[str, float]] = {}  # group label -> member label -> score
        self._turn: dict[str, int] = {}  # group label -> round-robin counter (least_busy ties)
        self._ewma: dict[str, _Ewma] = {}  # target label -> its latency

    def order(self, group: Group) -> list[Target]:
        """The group's members in the order this request tries them."""
        members = list(group.group)
        if len(members) == 1:
            return members
        if group.strategy == "weighted":
            return self._weighted(group.label, members)
        if group.strategy == "least_busy":
            return self._least_busy(group.label, members)
        return self._latency(members)

    def _weighted(self, key: str, members: list[Target]) -> list[Target]:
        scores = self._scores.setdefault(key, {})
        total = 0.0
        for t in members:
            scores[t.label] = scores.get(t.label, 0.0) + t.weight
            total += t.weight
        ranked = sorted(members, key=lambda t: -scores[t.label])  # stable: config order on ties
        scores[ranked[0].label] -= total
        return ranked

    def _least_busy(self, key: str, members: list[Target]) -> list[Target]:
        turn = self._turn.get(key, 0)
        self._turn[key] = turn + 1
        n = len(members)
        rotated = members[turn % n :] + members[: turn % n]
        return sorted(rotated, key=lambda t: self._in_flight.get(t.label))

    def cost(self, label: str) -> float:
        ewma = self._ewma.get(label)
        if ewma is None:
            return 0.0
        return self._decayed(ewma) * (self._in_flight.get(label) + 1)

    def _decayed(self, ewma: _Ewma) -> float:
        return ewma.value * math.exp(-max(0.0, self._clock() - ewma.at) / DECAY)

    def _latency(self, members: list[Target]) -> list[Target]:
        n = len(members)
        i = min(int(self._rand() * n), n - 1)
        j = min(int(self._rand() * (n - 1)), n - 2)
        j += j >= i  # a second, distinct member
        a, b = members[i], members[j]
        first = a if self.cost(a.label) <= self.cost(b.label) else b
        rest = sorted((t for t in members if t is not first), key=lambda t: self.cost(t.label))
        return [first, *rest]

    def observe(self, label: str, seconds: float) -> None:
        """A latency sample (time to first token for streams, the whole answer otherwise)."""
        ewma = self._ewma.get(label)
        if ewma is None:
            ewma = self._ewma[label] = _Ewma()
            ewma.value = seconds
        else:
            now = self._clock()
            w = math.exp(-max(0.0, now - ewma.at) / DECAY)
            current = ewma.value * w + seconds * (1 - w)
            ewma.value = max(seconds, current)  # peak: a slower sample counts at once
        ewma.at = self._clock()
