"""A small synchronous client for the fake upstream's control API (see ``tests.upstream.server``).

    control = UpstreamControl("http://127.0.0.1:PORT")
    control.script({"status": 429, "headers": {"retry-after": "0"}}, {"stream_cut_after": 3})
    ...  # drive the sidecar
    entries = control.wait_for(lambda log: any(e["disconnected"] for e in log), timeout=5)

``script`` appends behaviours to the server's queue (a bad key fails here, at once, with the
server's message), ``reset`` empties queue and log, ``log`` returns the request entries, and
``wait_for`` polls the log until a predicate holds (for things that happen after the client under
test has returned, such as the upstream noticing a disconnect). It is a bound, not a measurement:
tests never assert how long anything took.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable
from typing import Any

import httpx

LogEntry = dict[str, Any]


class UpstreamControl:
    """Script the fake upstream and read what it saw."""

    def __init__(self, base_url: str, timeout: float = 10.0, ca_file: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        verify = ssl.create_default_context(cafile=ca_file) if ca_file else True
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, verify=verify)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> UpstreamControl:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._http.request(method, path, **kwargs)
        if response.status_code != 200:
            raise AssertionError(
                f"fake upstream control {method} {path} → {response.status_code}: {response.text}"
            )
        return response.json()

    def script(self, *behaviours: dict[str, Any]) -> int:
        """Append ``behaviours`` to the queue; return the queue's length."""
        result = self._call("POST", "/_control/script", json=list(behaviours))
        return int(result["queued"])

    def pending(self) -> list[dict[str, Any]]:
        """Behaviours not consumed yet."""
        result: list[dict[str, Any]] = self._call("GET", "/_control/script")["pending"]
        return result

    def reset(self) -> None:
        """Empty the queue and the log."""
        self._call("POST", "/_control/reset")

    def log(self, path: str | None = None) -> list[LogEntry]:
        """Every upstream request seen since the last reset, oldest first (optionally one path)."""
        entries: list[LogEntry] = self._call("GET", "/_control/log")["requests"]
        return [e for e in entries if path is None or e["path"] == path]

    def bodies(self, path: str | None = None) -> list[Any]:
        """The JSON bodies of the logged requests."""
        return [e["body"] for e in self.log(path)]

    def wait_for(
        self,
        predicate: Callable[[list[LogEntry]], object],
        timeout: float = 10.0,
        interval: float = 0.02,
    ) -> list[LogEntry]:
        """Poll the log until ``predicate(log)`` is truthy; return that log.

        Raise ``AssertionError`` with the last log seen when ``timeout`` seconds pass first.
        """
        deadline = time.monotonic() + timeout
        while True:
            entries = self.log()
            if predicate(entries):
                return entries
            if time.monotonic() >= deadline:
                raise _not_met(timeout, entries)
            time.sleep(interval)

    async def wait_for_async(
        self,
        predicate: Callable[[list[LogEntry]], object],
        within: float = 10.0,
        interval: float = 0.02,
    ) -> list[LogEntry]:
        """``wait_for`` for async tests (``within`` seconds); polls without blocking the loop."""
        deadline = time.monotonic() + within
        while True:
            entries = await asyncio.to_thread(self.log)
            if predicate(entries):
                return entries
            if time.monotonic() >= deadline:
                raise _not_met(within, entries)
            await asyncio.sleep(interval)


def _not_met(timeout: float, entries: list[LogEntry]) -> AssertionError:
    keys = ("seq", "method", "path", "status", "events_sent", "outcome")
    summary = [{k: e.get(k) for k in keys} for e in entries]
    return AssertionError(f"fake upstream: condition not met within {timeout}s; log: {summary}")
