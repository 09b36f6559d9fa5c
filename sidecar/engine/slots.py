"""A backend's configured connection limit, held by the engine outside the upstream's timers.

A backend with ``max_connections: N`` gets N slots: an attempt takes one before its timers
start (attempt, time to first token) and before its breaker is asked, and gives it back when it
is over (a stream: when the surface closes it, after its body was read to the end). Waiting for
a slot is the sidecar's own condition, not the upstream's: it is bounded by the chain's
``pool_timeout`` (and the request's budget), and when no slot frees in time the request is
answered ``LocalLimitError`` (529 overloaded_error / RESOURCE_EXHAUSTED, retry-after) without
any attempt, breaker movement or fallback. The upstream connection pool itself is as large as
the slots, so an attempt that holds a slot never queues inside the HTTP client.

A backend without a limit (``max_connections: 0``, the default) has no slots: one dict lookup.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from sidecar.errors import LocalLimitError


class Slot:
    """One taken slot; ``release`` is idempotent."""

    __slots__ = ("_semaphore",)

    def __init__(self, semaphore: asyncio.Semaphore | None) -> None:
        self._semaphore = semaphore

    def release(self) -> None:
        if self._semaphore is not None:
            self._semaphore.release()
            self._semaphore = None


NO_SLOT = Slot(None)  # for backends without a limit: releasing it does nothing


class Slots:
    """The slots of one configuration's backends, by backend name."""

    def __init__(self, limits: Mapping[str, int]) -> None:
        self._limits = {name: n for name, n in limits.items() if n > 0}
        self._semaphores = {name: asyncio.Semaphore(n) for name, n in self._limits.items()}

    def limited(self, backend: str) -> bool:
        """Whether ``backend`` has slots at all (else ``take`` gives ``NO_SLOT`` at once)."""
        return backend in self._semaphores

    async def take(self, backend: str, until: float, waits: list[tuple[str, float]]) -> Slot:
        """A slot of ``backend``, waiting for one until the loop time ``until`` at the latest.

        A wait that had to happen is appended to ``waits`` as (backend, seconds); when no slot
        frees in time, ``LocalLimitError``."""
        semaphore = self._semaphores.get(backend)
        if semaphore is None:
            return NO_SLOT
        if not semaphore.locked():
            await semaphore.acquire()  # free: returns at once, without yielding
            return Slot(semaphore)
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            async with asyncio.timeout_at(until):
                await semaphore.acquire()
        except TimeoutError:
            waited = loop.time() - started
            waits.append((backend, waited))
            raise LocalLimitError(
                f"the sidecar is at its limit of {self._limits[backend]} concurrent requests "
                f"to backend {backend!r} (max_connections); none was free after {waited:.1f} s. "
                "Retry shortly",
                reason="pool",
            ) from None
        waits.append((backend, loop.time() - started))
        return Slot(semaphore)
