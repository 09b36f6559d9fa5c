"""Metrics and the per-request log line, both fed from the engine's ``Outcome`` records.

``Telemetry`` is the engine's ``Observer``: when a request starts it counts it in flight; when it
is finished it updates the Prometheus metrics and writes one JSON log line. Label values are
bounded: surfaces, chain and backend names, route globs and error types all come from the
configuration or from fixed sets, never from a caller's model string or request id.

The breaker gauge is read at scrape time from the engine's breakers (a custom collector), so
nothing is updated on the request path for it. ``render()`` is what ``GET /metrics`` serves.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from sidecar.engine.outcome import Outcome
from sidecar.logs import log

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160)
_BREAKER_VALUES = {"closed": 0.0, "open": 1.0, "half_open": 2.0}


class _BreakerCollector(Collector):
    def __init__(self, snapshot: Callable[[], dict[str, dict[str, object]]]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "anyllm_breaker_state",
            "Circuit breaker per target: 0 closed, 1 open, 2 half-open (one probe in flight).",
            labels=["target"],
        )
        for target, state in self._snapshot().items():
            family.add_metric([target], _BREAKER_VALUES.get(str(state["state"]), 0.0))
        yield family


class _TrafficCollector(Collector):
    """Per-target requests in flight and the shared state's errors, read at scrape time."""

    def __init__(self, in_flight: dict[str, int], shared: Any) -> None:
        self._in_flight = in_flight
        self._shared = shared

    def collect(self) -> Iterator[Any]:
        family = GaugeMetricFamily(
            "anyllm_upstream_in_flight",
            "Requests in flight per target (an attempt, or a stream being relayed).",
            labels=["target"],
        )
        for target, n in sorted(self._in_flight.items()):
            family.add_metric([target], float(n))
        yield family
        errors = CounterMetricFamily(
            "anyllm_state_errors",
            "Shared-state (Redis) calls that failed or ran past state.timeout; each one leaves "
            "that round to per-pod state.",
        )
        errors.add_metric([], float(0 if self._shared is None else self._shared.errors))
        yield errors
        mode = GaugeMetricFamily(
            "anyllm_state_shared",
            "1 while breaker and rate-limit state is shared through Redis, 0 while per pod.",
        )
        mode.add_metric([], 1.0 if self._shared is not None and self._shared.healthy else 0.0)
        yield mode


class Telemetry:
    def __init__(self, *, log_requests: bool = True) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._c_in_flight: dict[tuple[str, ...], Any] = {}
        self._c_requests: dict[tuple[str, ...], Any] = {}
        self._c_request_seconds: dict[tuple[str, ...], Any] = {}
        self._c_attempts: dict[tuple[str, ...], Any] = {}
        self._c_attempt_seconds: dict[tuple[str, ...], Any] = {}
        self._c_ttft: dict[tuple[str, ...], Any] = {}
        self._c_tokens: dict[tuple[str, ...], Any] = {}
        # Per finished-request key and per attempt key: the children it updates, looked up once.
        self._c_finished: dict[tuple[str, str, str, str, str], tuple[Any, Any, Any]] = {}
        self._c_attempt: dict[tuple[str, str], tuple[Any, Any]] = {}
        self._log_requests = log_requests
        r = self.registry
        self.requests = Counter(
            "anyllm_requests",
            "Finished requests by surface, kind, route, chain and result "
            "(ok, an Anthropic error type, or cancelled).",
            ["surface", "kind", "route", "chain", "result"],
            registry=r,
        )
        self.exhausted = Counter(
            "anyllm_fallback_exhausted",
            "Requests for which every target of the chain failed.",
            ["chain"],
            registry=r,
        )
        self.attempts = Counter(
            "anyllm_upstream_attempts",
            "Upstream attempts by target and result (ok, status, connect, ttft_timeout, ...).",
            ["target", "result"],
            registry=r,
        )
        self.fallbacks = Counter(
            "anyllm_fallbacks",
            "Moves from a failed target to the next one, by the failed target and reason.",
            ["chain", "target", "reason"],
            registry=r,
        )
        self.attempt_seconds = Histogram(
            "anyllm_upstream_attempt_duration_seconds",
            "Duration of one upstream attempt (for streams: up to the commit point).",
            ["target"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.ttft_seconds = Histogram(
            "anyllm_time_to_first_token_seconds",
            "Streams: from the request's start to its first content, fallbacks included.",
            ["chain"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.request_seconds = Histogram(
            "anyllm_request_duration_seconds",
            "Whole requests, start to end (streams: to their last event).",
            ["surface", "kind", "chain"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge(
            "anyllm_in_flight_requests",
            "Requests being served, by surface and kind (create, stream, count_tokens).",
            ["surface", "kind"],
            registry=r,
        )
        self.tokens = Counter(
            "anyllm_tokens",
            "Tokens by answering target and direction (input, output).",
            ["target", "direction"],
            registry=r,
        )
        self.local_rejections = Counter(
            "anyllm_local_rejections",
            "Requests refused by the sidecar's own limits, not by an upstream: concurrency "
            "(server.max_concurrent_requests), pool (no slot of a backend's max_connections "
            "within pool_timeout), draining.",
            ["surface", "kind", "reason"],
            registry=r,
        )
        self.pool_wait_seconds = Histogram(
            "anyllm_pool_wait_seconds",
            "Waits for a free slot of a backend's max_connections (only requests that waited); "
            "not part of any upstream attempt.",
            ["backend"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.skipped = Counter(
            "anyllm_skipped",
            "Targets passed over without an attempt, by reason (breaker_open, rate_limited).",
            ["target", "reason"],
            registry=r,
        )
        self.hedges = Counter(
            "anyllm_hedges",
            "Hedged requests by chain and outcome: won (the hedge answered), lost (the first "
            "attempt did), failed (both failed).",
            ["chain", "outcome"],
            registry=r,
        )
        self.upstream_ttft = Histogram(
            "anyllm_upstream_ttft_seconds",
            "Streams: one attempt's time to its first content (the commit point), per target.",
            ["target"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.degradations = Counter(
            "anyllm_degradations",
            "Features dropped or approximated in translation, by feature.",
            ["feature"],
            registry=r,
        )

    @staticmethod
    def _child(metric: Any, cache: dict[tuple[str, ...], Any], *labels: str) -> Any:
        # ``labels()`` takes a lock and builds a key every call; children are cached here
        # (label values are bounded, so is the cache).
        child = cache.get(labels)
        if child is None:
            child = cache[labels] = metric.labels(*labels)
        return child

    def watch_breakers(self, snapshot: Callable[[], dict[str, dict[str, object]]]) -> None:
        self.registry.register(_BreakerCollector(snapshot))

    def watch_traffic(self, in_flight: dict[str, int], shared: Any = None) -> None:
        """Per-target in-flight counts (the engine's live dict) and the shared state."""
        self.registry.register(_TrafficCollector(in_flight, shared))

    def render(self) -> bytes:
        return generate_latest(self.registry)

    # ------------------------------------------------------------------ Observer

    def request_started(self, outcome: Outcome) -> None:
        self._child(self.in_flight, self._c_in_flight, outcome.surface, outcome.kind).inc()

    def request_rejected(self, surface: str, kind: str, reason: str) -> None:
        self.local_rejections.labels(surface, kind, reason).inc()

    def request_finished(self, outcome: Outcome) -> None:
        child = self._child
        for backend, seconds in outcome.pool_waits:
            self.pool_wait_seconds.labels(backend).observe(seconds)
        key = (outcome.surface, outcome.kind, outcome.route, outcome.chain, outcome.result)
        finished = self._c_finished.get(key)
        if finished is None:  # children made at first use as before: the same series order
            finished = self._c_finished[key] = (
                child(self.in_flight, self._c_in_flight, outcome.surface, outcome.kind),
                child(self.requests, self._c_requests, *key),
                child(
                    self.request_seconds,
                    self._c_request_seconds,
                    outcome.surface,
                    outcome.kind,
                    outcome.chain,
                ),
            )
        in_flight, requests, request_seconds = finished
        in_flight.dec()
        requests.inc()
        request_seconds.observe(outcome.duration)
        if outcome.exhausted:
            self.exhausted.labels(outcome.chain).inc()
        for i, attempt in enumerate(outcome.attempts):
            per_attempt = self._c_attempt.get((attempt.target, attempt.outcome))
            if per_attempt is None:
                per_attempt = self._c_attempt[attempt.target, attempt.outcome] = (
                    child(self.attempts, self._c_attempts, attempt.target, attempt.outcome),
                    child(self.attempt_seconds, self._c_attempt_seconds, attempt.target),
                )
            per_attempt[0].inc()
            per_attempt[1].observe(attempt.duration)
            if outcome.kind == "stream" and attempt.outcome == "ok":
                self.upstream_ttft.labels(attempt.target).observe(attempt.duration)
            if attempt.outcome not in ("ok", "hedge_lost") and i + 1 < len(outcome.attempts):
                reason = f"http_{attempt.status}" if attempt.status else attempt.outcome
                self.fallbacks.labels(outcome.chain, attempt.target, reason).inc()
        for skip in outcome.skipped:
            self.skipped.labels(skip["target"], skip["reason"]).inc()
        if outcome.hedge is not None:
            self.hedges.labels(outcome.chain, outcome.hedge).inc()
        if outcome.ttft is not None:
            child(self.ttft_seconds, self._c_ttft, outcome.chain).observe(outcome.ttft)
        if outcome.answered_target is not None and outcome.kind != "count_tokens":
            if outcome.input_tokens:
                child(self.tokens, self._c_tokens, outcome.answered_target, "input").inc(
                    outcome.input_tokens
                )
            if outcome.output_tokens:
                child(self.tokens, self._c_tokens, outcome.answered_target, "output").inc(
                    outcome.output_tokens
                )
        for feature in dict.fromkeys(outcome.degradations):
            # What follows a ``:`` comes from callers (field names, block and tool types,
            # effort levels): one bounded label per kind of note.
            kind = feature.partition(":")[0]
            label = {"field": "unknown_field", "block": "unknown_block"}.get(kind, kind)
            self.degradations.labels(label).inc()
        if self._log_requests:
            log(
                "request",
                request_id=outcome.request_id,
                surface=outcome.surface,
                kind=outcome.kind,
                chain=outcome.chain,
                route=outcome.route,
                result=outcome.result,
                backend=outcome.answered_by,
                target=outcome.answered_target,
                exhausted=outcome.exhausted,
                duration_ms=round(outcome.duration * 1000, 2),
                ttft_ms=None if outcome.ttft is None else round(outcome.ttft * 1000, 2),
                input_tokens=outcome.input_tokens,
                output_tokens=outcome.output_tokens,
                attempts=[
                    {
                        "target": a.target,
                        "result": a.outcome,
                        "status": a.status,
                        "duration_ms": round(a.duration * 1000, 2),
                    }
                    for a in outcome.attempts
                ],
                skipped=outcome.skipped or None,
                hedge=outcome.hedge,
                pool_wait_ms=round(sum(s for _, s in outcome.pool_waits) * 1000, 2)
                if outcome.pool_waits
                else None,
                rejected=outcome.rejected,
                degradations=list(dict.fromkeys(outcome.degradations)) or None,
            )
