"""Relayed answers (an Anthropic-protocol upstream's own bytes) as the typed model, for gRPC.

The HTTP door sends a relayed answer on as bytes; the gRPC door must build protobuf messages,
so it reads them into ``sidecar.model`` types here. The common case is one strict decode. What
the typed model does not know yet (a new block, delta or event type, a new stop reason) is
read leniently instead of failing a valid answer: unknown blocks, deltas and events are left
out, an unknown stop reason becomes unset.
"""

from __future__ import annotations

from typing import Any, get_args

import msgspec
import orjson

from sidecar import model as m

__all__ = ["typed_events", "typed_message"]

_BLOCKS = frozenset(str(cls.__struct_config__.tag) for cls in get_args(m.ResponseBlock))
_DELTAS = frozenset(str(cls.__struct_config__.tag) for cls in get_args(m.BlockDelta))
_EVENTS = frozenset(str(cls.__struct_config__.tag) for cls in get_args(m.StreamEvent))
_STOP_REASONS = frozenset(get_args(m.StopReason))


def typed_message(answer: m.Answer) -> m.Message:
    if type(answer) is not m.RawMessage:
        assert isinstance(answer, m.Message)
        return answer
    try:
        return m.message_decoder.decode(answer.body)
    except msgspec.DecodeError:
        doc = orjson.loads(answer.body)
        _lenient_message(doc)
        return msgspec.convert(doc, m.Message)


def typed_events(batch: list[m.StreamItem]) -> list[m.StreamEvent]:
    out: list[m.StreamEvent] = []
    for item in batch:
        if type(item) is not m.RawEvent:
            out.append(item)  # type: ignore[arg-type]
            continue
        try:
            out.append(m.event_decoder.decode(item.data))
        except msgspec.DecodeError:
            event = _lenient_event(orjson.loads(item.data))
            if event is not None:
                out.append(event)
    return out


def _lenient_message(doc: dict[str, Any]) -> None:
    doc["content"] = [b for b in doc.get("content") or () if b.get("type") in _BLOCKS]
    if doc.get("stop_reason") not in _STOP_REASONS:
        doc["stop_reason"] = None


def _lenient_event(doc: dict[str, Any]) -> m.StreamEvent | None:
    kind = doc.get("type")
    if kind not in _EVENTS:
        return None
    if kind == "message_start" and isinstance(doc.get("message"), dict):
        _lenient_message(doc["message"])
    elif kind == "content_block_start":
        if (doc.get("content_block") or {}).get("type") not in _BLOCKS:
            return None
    elif kind == "content_block_delta":
        if (doc.get("delta") or {}).get("type") not in _DELTAS:
            return None
    elif (
        kind == "message_delta"
        and isinstance(doc.get("delta"), dict)
        and doc["delta"].get("stop_reason") not in _STOP_REASONS
    ):
        doc["delta"]["stop_reason"] = None
    try:
        event: m.StreamEvent = msgspec.convert(doc, m.StreamEvent)
        return event
    except msgspec.ValidationError:
        return None
