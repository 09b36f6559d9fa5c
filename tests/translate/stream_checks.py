"""Checks shared by the stream tests: protocol validity and the official SDK's view of events."""

from __future__ import annotations

from typing import Any

import msgspec
from anthropic.lib.streaming._messages import accumulate_event
from anthropic.types import Message as SDKMessage
from anthropic.types import RawMessageStreamEvent
from pydantic import TypeAdapter

from sidecar.model import (
    ContentBlockDelta,
    ContentBlockStart,
    ContentBlockStop,
    InputJsonDelta,
    MessageDelta,
    MessageStart,
    MessageStop,
    StreamEvent,
    TextBlock,
    TextDelta,
    ThinkingBlock,
    ThinkingDelta,
    ToolUseBlock,
)

EVENT_ADAPTER: TypeAdapter[Any] = TypeAdapter(RawMessageStreamEvent)

_DELTA_FOR_BLOCK: dict[type, type] = {
    TextBlock: TextDelta,
    ThinkingBlock: ThinkingDelta,
    ToolUseBlock: InputJsonDelta,
}


def assert_valid(events: list[StreamEvent], *, complete: bool = True) -> None:
    """The Anthropic stream protocol: message_start first; block starts numbered 0, 1, 2...;
    deltas only to open blocks, of the block's kind; each block stopped once; then
    message_delta and message_stop last (when ``complete``)."""
    if not events:
        assert not complete
        return
    assert isinstance(events[0], MessageStart)
    kinds: dict[int, type] = {}
    stopped: set[int] = set()
    end = len(events) - 2 if complete else len(events)
    for event in events[1:end]:
        if isinstance(event, ContentBlockStart):
            assert event.index == len(kinds), "block indices must be 0, 1, 2..."
            kinds[event.index] = type(event.content_block)
        elif isinstance(event, ContentBlockDelta):
            assert event.index in kinds and event.index not in stopped
            assert isinstance(event.delta, _DELTA_FOR_BLOCK[kinds[event.index]])
        elif isinstance(event, ContentBlockStop):
            assert event.index in kinds and event.index not in stopped
            stopped.add(event.index)
        else:
            raise AssertionError(f"unexpected {type(event).__name__} inside the message")
    if complete:
        assert stopped == set(kinds), "every started block is stopped"
        assert isinstance(events[-2], MessageDelta)
        assert isinstance(events[-1], MessageStop)


def sdk_message(events: list[StreamEvent]) -> SDKMessage:
    """Each event validated by the SDK's types, then folded by the SDK's own accumulator."""
    snapshot: Any = None
    json_bufs: dict[int, bytes] = {}
    for event in events:
        parsed = EVENT_ADAPTER.validate_python(msgspec.to_builtins(event))
        snapshot = accumulate_event(event=parsed, current_snapshot=snapshot, json_bufs=json_bufs)
    return SDKMessage.model_validate(snapshot.model_dump())
