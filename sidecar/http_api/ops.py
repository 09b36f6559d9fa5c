"""The operational routes: liveness, readiness, Prometheus metrics, and two debug views.

``/healthz``, ``/readyz`` and ``/metrics`` are open (probes and scrapers reach them without a
token); ``/readyz?verbose=1`` answers each target's breaker and rate-limit state as JSON.
``/debug/breakers`` shows every target's circuit breaker, ``/debug/tasks`` the tasks alive in
the loop (a leak check for load tests).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from sidecar.errors import NotFoundError, SidecarError
from sidecar.model import json_encoder

from .anthropic_door import error_body
from .asgi import Exchange, Handler, error_metadata, send_json

OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


class Readiness(Protocol):
    @property
    def ready(self) -> bool: ...


class OpsRoutes:
    def __init__(
        self,
        *,
        readiness: Readiness,
        breakers: Callable[[], Any],
        metrics: Callable[[], bytes] | None = None,
        details: Callable[[], Any] | None = None,
    ) -> None:
        self._readiness = readiness
        self._breakers = breakers
        self._metrics = metrics
        self._details = details  # the body of /readyz?verbose=1

    def routes(self) -> Mapping[tuple[str, str], Handler]:
        return {
            ("GET", "/healthz"): self._healthz,
            ("GET", "/readyz"): self._readyz,
            ("GET", "/metrics"): self._metrics_text,
            ("GET", "/debug/breakers"): self._breakers_json,
            ("GET", "/debug/tasks"): self._tasks,
        }

    def claims(self, exchange: Exchange) -> bool:
        return True

    async def send_error(self, exchange: Exchange, error: SidecarError) -> None:
        metadata = error_metadata(error, exchange.request_id)
        body = error_body(error, exchange.request_id)
        await send_json(exchange.send, error.http_status, body, metadata)

    async def _healthz(self, exchange: Exchange) -> None:
        await send_json(exchange.send, 200, b'{"status":"ok"}', [])

    async def _readyz(self, exchange: Exchange) -> None:
        ready = self._readiness.ready
        status = 200 if ready else 503
        query = exchange.scope.get("query_string", b"")
        if self._details is not None and b"verbose=1" in query.split(b"&"):
            await send_json(exchange.send, status, json_encoder.encode(self._details()), [])
        elif ready:
            await send_json(exchange.send, 200, b'{"status":"ready"}', [])
        else:
            reason = getattr(self._readiness, "ready_status", "draining")
            body = json_encoder.encode({"status": reason})
            await send_json(exchange.send, 503, body, [])

    async def _breakers_json(self, exchange: Exchange) -> None:
        await send_json(exchange.send, 200, json_encoder.encode(self._breakers()), [])

    async def _metrics_text(self, exchange: Exchange) -> None:
        if self._metrics is None:
            raise NotFoundError("no such endpoint: /metrics")
        headers = [(b"content-type", b"text/plain; version=0.0.4; charset=utf-8")]
        send = exchange.send
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": self._metrics()})

    async def _tasks(self, exchange: Exchange) -> None:
        mine = asyncio.current_task()
        names = sorted(
            getattr(task.get_coro(), "__qualname__", "?")
            for task in asyncio.all_tasks()
            if task is not mine
        )
        body = json_encoder.encode({"tasks": len(names), "names": names})
        await send_json(exchange.send, 200, body, [])
