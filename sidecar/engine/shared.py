"""Breaker and rate-limit state shared by every sidecar that uses the same store (Redis).

Nothing on a request's path waits for the store, but one thing: claiming a breaker's probe. All
else runs in one background task, ``run``, every ``INTERVAL`` seconds:

1. **write** what changed here since the last round (kept in ``_pending``): a breaker that
   opened (``breaker:<target>`` = its end of cool-down as wall-clock time and its cool-down,
   kept well past the cool-down so the others probe rather than all rush in), a breaker that
   closed (the key deleted), a target an upstream said is rate-limited (``limit:<target>`` =
   until when, expiring then), and this sidecar's requests and tokens to targets with ``rpm`` /
   ``tpm`` (added to counters in 10 s buckets, ``rpm:<target>:<bucket>``);
2. **read** the same keys for every target of the configuration in one round trip and apply
   them: another sidecar's open breaker opens ours until the same moment (``apply_remote``), a
   deleted one closes ours, a remote rate-limit block and shared windows over ``rpm`` / ``tpm``
   (the last 60 s of buckets, all sidecars together) become ``RateLimits.remote``.

A breaker opened by one sidecar is thus seen by the others within about two rounds. Before a
probe (an open breaker past its cool-down) the loop calls ``claim_probe``: ``probe:<target>`` is
set if absent, for the attempt's timeout, so one sidecar at a time probes.

Every store call is bounded by ``timeout``. When one fails or is late the state is *per pod*:
remote views are dropped, probes are claimed locally, the error is counted (``errors``) and
shown in the readiness details; rounds go on (every ``RETRY`` seconds) and the shared view comes
back with the store. A request never fails because of the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable
from typing import Protocol

from .breaker import Breakers
from .limits import RateLimits
from .policy import Target

INTERVAL = 0.1  # seconds between rounds
RETRY = 1.0  # seconds between rounds while the store is unreachable
BUCKET = 10  # seconds per shared rpm / tpm counter
BREAKER_TTL_FACTOR = 8  # a breaker key outlives the cool-down (probes, doubled cool-downs)


class Store(Protocol):
    """The few operations shared state needs (sidecar/shared_redis.py: Redis)."""

    async def read(self, keys: list[str]) -> list[bytes | None]: ...

    async def write(
        self,
        sets: list[tuple[str, str, int]],  # key, value, time to live (ms)
        deletes: list[str],
        increments: list[tuple[str, int, int]],  # key, amount, time to live (s)
    ) -> None: ...

    async def claim(self, key: str, value: str, ttl_ms: int) -> bool:
        """Set ``key`` if it is absent; whether it was set."""
        ...

    async def aclose(self) -> None: ...


class SharedState:
    def __init__(
        self,
        store: Store,
        *,
        prefix: str,
        timeout: float,
        breakers: Breakers,
        limits: RateLimits,
        targets: Callable[[], Iterable[Target]],
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        owner: str = "",
    ) -> None:
        self._store = store
        self._prefix = prefix
        self.timeout = timeout
        self._breakers = breakers
        self._limits = limits
        self._targets = targets
        self._clock = clock
        self._wall = wall
        self._owner = owner
        self.healthy = False  # until the first round succeeds
        self.errors = 0
        self.last_error: str | None = None
        # Told ("shared" | "per_pod", the error's type) when the mode changes (a log line).
        self.on_mode: Callable[[str, str | None], None] | None = None
        self._breaker_writes: dict[str, tuple[float, float] | None] = {}  # label -> (until, cd)
        self._limit_writes: dict[str, float] = {}  # label -> blocked until (wall)
        self._counts: dict[tuple[str, str, int], int] = {}  # (kind, label, bucket) -> amount
        breakers.on_change = self._breaker_changed
        limits.on_block = self._limit_blocked
        limits.on_use = self._used

    # ------------------------------------------------------------------ local changes

    def _to_wall(self, monotonic: float) -> float:
        return monotonic - self._clock() + self._wall()

    def _to_local(self, wall: float) -> float:
        return wall - self._wall() + self._clock()

    def _breaker_changed(self, label: str, open_until: float | None, cooldown: float) -> None:
        self._breaker_writes[label] = (
            None if open_until is None else (self._to_wall(open_until), cooldown)
        )

    def _limit_blocked(self, label: str, until: float) -> None:
        self._limit_writes[label] = self._to_wall(until)

    def _used(self, target: Target, requests: int, tokens: int) -> None:
        bucket = int(self._wall()) // BUCKET
        if requests and target.rpm is not None:
            key = ("rpm", target.label, bucket)
            self._counts[key] = self._counts.get(key, 0) + requests
        if tokens and target.tpm is not None:
            key = ("tpm", target.label, bucket)
            self._counts[key] = self._counts.get(key, 0) + tokens

    # ------------------------------------------------------------------ the request path

    async def claim_probe(self, label: str, ttl: float) -> bool:
        """Whether this sidecar may send ``label``'s probe (True when the store is away)."""
        if not self.healthy:
            return True
        try:
            async with asyncio.timeout(self.timeout):
                return await self._store.claim(
                    f"{self._prefix}probe:{label}", self._owner, max(1, int(ttl * 1000))
                )
        except Exception as exc:  # any failure of the store: per pod
            self._failed(exc)
            return True

    # ------------------------------------------------------------------ the background round

    async def run(self) -> None:
        """Rounds until cancelled."""
        while True:
            ok = await self.round()
            await asyncio.sleep(INTERVAL if ok else RETRY)

    async def round(self) -> bool:
        """One write-and-read round; whether the store answered."""
        breaker_writes, self._breaker_writes = self._breaker_writes, {}
        limit_writes, self._limit_writes = self._limit_writes, {}
        counts, self._counts = self._counts, {}
        try:
            async with asyncio.timeout(self.timeout):
                await self._write(breaker_writes, limit_writes, counts)
            targets = {t.label: t for t in self._targets()}
            keys, layout = self._keys(targets)
            async with asyncio.timeout(self.timeout):
                values = await self._store.read(keys) if keys else []
        except Exception as exc:  # timeouts, connection errors, anything: per pod
            self._failed(exc)
            self._restore(breaker_writes, limit_writes, counts)
            return False
        if not self.healthy:
            self.healthy = True
            if self.on_mode is not None:
                self.on_mode("shared", None)
        self._apply(targets, layout, values)
        return True

    def _restore(
        self,
        breaker_writes: dict[str, tuple[float, float] | None],
        limit_writes: dict[str, float],
        counts: dict[tuple[str, str, int], int],
    ) -> None:
        """Keep what could not be written for the next round (newer changes win)."""
        self._breaker_writes = {**breaker_writes, **self._breaker_writes}
        self._limit_writes = {**limit_writes, **self._limit_writes}
        current = int(self._wall()) // BUCKET
        for key, n in counts.items():
            if key[2] > current - 60 // BUCKET:
                self._counts[key] = self._counts.get(key, 0) + n

    def _failed(self, exc: BaseException) -> None:
        self.errors += 1
        self.last_error = type(exc).__name__
        if self.healthy:
            self.healthy = False
            self._limits.remote.clear()  # per pod from now on
            if self.on_mode is not None:
                self.on_mode("per_pod", self.last_error)

    async def _write(
        self,
        breaker_writes: dict[str, tuple[float, float] | None],
        limit_writes: dict[str, float],
        counts: dict[tuple[str, str, int], int],
    ) -> None:
        p, now = self._prefix, self._wall()
        sets: list[tuple[str, str, int]] = []
        deletes: list[str] = []
        for label, change in breaker_writes.items():
            if change is None:
                deletes.append(f"{p}breaker:{label}")
                continue
            until, cooldown = change
            ttl = (until - now) + cooldown * BREAKER_TTL_FACTOR + 60
            sets.append((f"{p}breaker:{label}", f"{until:.3f} {cooldown:g}", int(ttl * 1000)))
        for label, until in limit_writes.items():
            if until > now:
                sets.append((f"{p}limit:{label}", f"{until:.3f}", int((until - now) * 1000) + 1))
        increments = [
            (f"{p}{kind}:{label}:{bucket}", n, 60 + 2 * BUCKET)
            for (kind, label, bucket), n in counts.items()
        ]
        if sets or deletes or increments:
            await self._store.write(sets, deletes, increments)

    def _keys(self, targets: dict[str, Target]) -> tuple[list[str], list[tuple[str, str, int]]]:
        """Every key to read, and for each what it is: (kind, label, bucket or 0)."""
        p = self._prefix
        current = int(self._wall()) // BUCKET
        keys: list[str] = []
        layout: list[tuple[str, str, int]] = []
        for label, target in targets.items():
            keys += [f"{p}breaker:{label}", f"{p}limit:{label}"]
            layout += [("breaker", label, 0), ("limit", label, 0)]
            for kind, limit in (("rpm", target.rpm), ("tpm", target.tpm)):
                if limit is None:
                    continue
                for bucket in range(current - 60 // BUCKET, current + 1):
                    keys.append(f"{p}{kind}:{label}:{bucket}")
                    layout.append((kind, label, bucket))
        return keys, layout

    def _apply(
        self,
        targets: dict[str, Target],
        layout: list[tuple[str, str, int]],
        values: list[bytes | None],
    ) -> None:
        now_wall = self._wall()
        oldest = now_wall - 60
        remote: dict[str, float] = {}
        used: dict[tuple[str, str], float] = {}
        for (kind, label, bucket), value in zip(layout, values, strict=True):
            if kind == "breaker":
                if label in self._breaker_writes:
                    continue  # changed here meanwhile: ours goes out next round
                if value is None:
                    self._breakers.apply_remote(label, None, 0.0)
                else:
                    until, _, cooldown = value.decode().partition(" ")
                    local = self._to_local(float(until))
                    self._breakers.apply_remote(label, local, float(cooldown or 0))
            elif kind == "limit":
                if value is not None:
                    remote[label] = max(remote.get(label, 0.0), self._to_local(float(value)))
            elif value is not None:
                # the oldest bucket counts for the part of it still inside the window
                start = bucket * BUCKET
                share = min(1.0, max(0.0, (start + BUCKET - oldest) / BUCKET))
                used[kind, label] = used.get((kind, label), 0.0) + int(value) * share
        next_bucket = self._to_local((int(now_wall) // BUCKET + 1) * BUCKET)
        for (kind, label), amount in used.items():
            target = targets[label]
            limit = target.rpm if kind == "rpm" else target.tpm
            if limit is not None and amount >= limit:
                remote[label] = max(remote.get(label, 0.0), next_bucket)
        self._limits.remote = remote

    def status(self) -> dict[str, object]:
        """For the readiness details and metrics."""
        return {
            "mode": "shared" if self.healthy else "per_pod",
            "errors": self.errors,
            "last_error": self.last_error,
        }

    async def aclose(self) -> None:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(self.timeout):
                await self._store.aclose()
