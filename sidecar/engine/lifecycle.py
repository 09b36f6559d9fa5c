"""The engine's lifecycle: admission, configuration generations (reload), drain and abort.

``Generation`` is one configuration's backends, their slots and routes, and how many requests
use it: a reload makes a new one for new requests while the old one serves its last requests
and is closed after them. ``Admission`` admits a request (or refuses it: draining, or at
``max_concurrent``), counts it in flight, and finishes its ``Outcome`` exactly once whatever
happens (``observed``); ``abort_all`` ends every running request with an explicit error at the
end of a drain.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Mapping
from typing import Any, TypeVar

from sidecar.backends.base import Backend
from sidecar.errors import LocalLimitError, OverloadedError, SidecarError

from .outcome import Observer, Outcome
from .policy import Routes
from .slots import Slots
from .stream import SHUTDOWN, shutdown_error

T = TypeVar("T")


class Generation:
    """One configuration's backends, their slots and routes, and how many requests use them."""

    def __init__(
        self, backends: Mapping[str, Backend], routes: Routes, limits: Mapping[str, int]
    ) -> None:
        self.backends = backends
        self.routes = routes
        self.slots = Slots(limits)
        self.in_flight = 0
        self.retired = False
        self._closing: asyncio.Task[None] | None = None

    def close_soon(self) -> None:
        if self._closing is None:
            self._closing = asyncio.get_running_loop().create_task(self.close())

    async def close(self) -> None:
        for backend in self.backends.values():
            with contextlib.suppress(Exception):
                await backend.aclose()


class Admission:
    def __init__(self, observer: Observer, max_concurrent: int) -> None:
        self.observer = observer
        self.max_concurrent = max_concurrent
        self.in_flight = 0
        self.draining = False
        self.tasks: set[asyncio.Task[Any]] = set()  # running requests, for abort_all
        self._idle: asyncio.Event | None = None  # set while nothing is in flight

    def admit(self, surface: str, kind: str) -> None:
        if self.draining:
            self.observer.request_rejected(surface, kind, "draining")
            raise OverloadedError(
                "the sidecar is shutting down; retry against its replacement", retry_after=1
            )
        if self.in_flight >= self.max_concurrent:
            self.observer.request_rejected(surface, kind, "concurrency")
            raise LocalLimitError(
                f"the sidecar is at its limit of {self.max_concurrent} concurrent requests "
                "(server.max_concurrent_requests); retry shortly",
                reason="concurrency",
            )

    def started(self, outcome: Outcome, gen: Generation) -> None:
        self.in_flight += 1
        if self._idle is not None:
            self._idle.clear()
        gen.in_flight += 1
        self.observer.request_started(outcome)

    def finish(self, outcome: Outcome, gen: Generation, result: str) -> None:
        self.in_flight -= 1
        if self.in_flight == 0 and self._idle is not None:
            self._idle.set()
        gen.in_flight -= 1
        if gen.retired and gen.in_flight == 0:
            gen.close_soon()
        outcome.result = result
        outcome.duration = asyncio.get_running_loop().time() - outcome.started
        self.observer.request_finished(outcome)

    async def wait_idle(self) -> None:
        if self._idle is None:
            self._idle = asyncio.Event()
        if self.in_flight == 0:
            self._idle.set()
        await self._idle.wait()

    async def observed(self, outcome: Outcome, gen: Generation, work: Awaitable[T]) -> T:
        """Await ``work``, finishing ``outcome`` with its result if it fails."""
        task = asyncio.current_task()
        if task is not None:
            self.tasks.add(task)
        try:
            return await work
        except asyncio.CancelledError as exc:
            error = shutdown_error(exc)
            if error is None:
                self.finish(outcome, gen, "cancelled")
                raise
            error.metadata = outcome.error_metadata()
            self.finish(outcome, gen, error.error_type)
            raise error from None
        except SidecarError as exc:
            self.finish(outcome, gen, exc.error_type)
            raise
        except BaseException:
            self.finish(outcome, gen, "cancelled")
            raise
        finally:
            if task is not None:
                self.tasks.discard(task)

    def abort_all(self) -> int:
        for task in list(self.tasks):
            task.cancel(SHUTDOWN)
        return len(self.tasks)
