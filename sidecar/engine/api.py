"""The one engine API every front door calls (``sidecar.engine.engine.Engine`` satisfies it).

A surface depends on this protocol, never on the engine class, so each door is tested against
a fake engine and the engine never knows which door called it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from sidecar.model import Answer, Call, CountCall, StreamItem, TokenCount

from .outcome import Outcome


class EngineStreamApi(Protocol):
    """A committed stream (``sidecar.engine.stream.EngineStream``)."""

    outcome: Outcome

    def __aiter__(self) -> AsyncIterator[list[StreamItem]]: ...

    async def aclose(self) -> None: ...


class EngineApi(Protocol):
    async def create(self, call: Call) -> tuple[Answer, Outcome]: ...

    async def open_stream(self, call: Call) -> EngineStreamApi: ...

    async def count_tokens(self, call: CountCall) -> tuple[TokenCount, Outcome]: ...
