"""The small frozen values the fallback loop passes around.

``Try`` is one attempt's inputs (what an ``AttemptFn`` gets); ``Committed`` is a stream's
attempt result at its commit point; ``Won`` is the loop's answer: the value, the target that
gave it and the ``Lease`` it still holds (the backend slot and its in-flight count, given back
by the engine when the answer is delivered, or when a stream is closed); ``Failed`` is one
attempt's failure with the verdict on it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

import msgspec

from sidecar.backends.base import Backend
from sidecar.errors import SidecarError
from sidecar.model import StreamItem

from .balance import InFlight
from .classify import Verdict
from .policy import Policy, Target
from .slots import Slot
from .stream import Events

T = TypeVar("T")


class Try(msgspec.Struct, frozen=True):
    backend: Backend
    target: Target
    policy: Policy
    notes: list[str]  # what translation dropped, for the degradation list
    end: float  # loop time the attempt must be over by
    deadline: float  # the request's own end


AttemptFn = Callable[[Try], Awaitable[T]]


class Committed(msgspec.Struct, frozen=True):
    """A stream past its commit point: its events, those held back so far, and its timers."""

    events: Events
    held: list[StreamItem]
    end: float
    policy: Policy
    backend: str


class Lease:
    """What an answer holds until it is delivered: a backend slot and an in-flight count."""

    __slots__ = ("_in_flight", "_label", "_slot")

    def __init__(self, slot: Slot, in_flight: InFlight, label: str) -> None:
        self._slot: Slot | None = slot
        self._in_flight = in_flight
        self._label = label

    def release(self) -> None:
        if self._slot is not None:
            self._slot.release()
            self._slot = None
            self._in_flight.done(self._label)


class Won(msgspec.Struct, Generic[T], frozen=True):
    value: T
    target: Target
    lease: Lease


class Failed(msgspec.Struct, frozen=True):
    error: SidecarError
    verdict: Verdict
