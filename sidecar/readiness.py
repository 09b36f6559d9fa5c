"""Readiness for both surfaces: the process's own (started, not draining) and, opt-in, the
upstreams' (``server.ready_requires_upstream``).

With the option on, the sidecar is not ready while **every** target of the default chain is
open in its breaker and still cooling down: a pod that can reach no upstream takes no traffic.
It is ready again as soon as the first cool-down ends (a probe may go), without waiting for a
request, since a pod out of service gets none: ``watch_health`` re-evaluates every
``WATCH_INTERVAL`` seconds and flips the gRPC health service; ``/readyz`` evaluates on each
probe. Shared state (``SharedState``) makes the breakers those of every sidecar, so a provider
outage takes all pods out together. ``details()`` is the body of ``GET /readyz?verbose=1``:
each target's breaker and rate-limit state, and the shared state's mode.
"""

from __future__ import annotations

import asyncio

from grpc_health.v1 import health_pb2
from grpc_health.v1._async import HealthServicer

from sidecar.engine.breaker import BreakerState
from sidecar.engine.engine import Engine
from sidecar.engine.shared import SharedState

WATCH_INTERVAL = 0.25  # seconds


class Readiness:
    def __init__(
        self, engine: Engine, *, requires_upstream: bool, shared: SharedState | None = None
    ) -> None:
        self.started = False  # set once both listeners are up; cleared by the drain
        self._engine = engine
        self.requires_upstream = requires_upstream
        self.shared = shared

    def upstream_available(self) -> bool:
        breakers = self._engine.breakers
        for target in self._engine.routes.chains["default"].members():
            label = target.label
            if breakers.state(label) is not BreakerState.OPEN or breakers.wait_time(label) == 0:
                return True
        return False

    @property
    def draining(self) -> bool:
        return not self.started or self._engine.draining

    @property
    def ready(self) -> bool:
        if self.draining:
            return False
        return not self.requires_upstream or self.upstream_available()

    @property
    def ready_status(self) -> str:
        if self.draining:
            return "draining"
        return "ready" if self.ready else "upstream_unavailable"

    def details(self) -> dict[str, object]:
        engine = self._engine
        targets = {t.label: t for c in engine.routes.chains.values() for t in c.members()}
        breakers = engine.breakers.snapshot()
        limits = engine.limits.snapshot(list(targets.values()))
        closed = {"state": "closed", "consecutive_failures": 0, "retry_in_seconds": 0.0}
        return {
            "status": self.ready_status,
            "requires_upstream": self.requires_upstream,
            "default_chain": [t.label for t in engine.routes.chains["default"].members()],
            "targets": {
                label: {
                    "breaker": breakers.get(label, closed),
                    "rate_limit": limits[label],
                    "in_flight": engine.in_flight_by_target.get(label),
                }
                for label in targets
            },
            "shared_state": {"mode": "per_pod", "configured": False}
            if self.shared is None
            else {**self.shared.status(), "configured": True},
        }


async def watch_health(
    readiness: Readiness, health: HealthServicer, services: tuple[str, ...]
) -> None:
    """Keep the gRPC health service in step with upstream readiness (until cancelled)."""
    serving = True
    while True:
        await asyncio.sleep(WATCH_INTERVAL)
        if readiness.draining:
            return  # the drain owns health from now on
        now = readiness.ready
        if now != serving:
            serving = now
            status = (
                health_pb2.HealthCheckResponse.SERVING
                if now
                else health_pb2.HealthCheckResponse.NOT_SERVING
            )
            for service in services:
                await health.set(service, status)
