"""Relayed Anthropic answers (an Anthropic-protocol upstream's own bytes) as the typed model.

A door that answers in Anthropic's wire format sends a relayed answer on as bytes; one that
must translate it (the OpenAI door, to chat.completion chunks) reads it into ``sidecar.model``
types here first. The common case is one strict decode. What the typed model does not know yet
(a new block, delta or event type, a new stop reason) is read leniently instead of failing a
valid answer: an unknown block is left out (with its deltas and its stop, in a stream) and
named in ``notes`` as ``block:TYPE``; unknown deltas and events are left out; an unknown stop
reason becomes unset (the translation then names it, as for any answer without one).
"""

from __future__ import annotations

from typing import Any, get_args

import msgspec
import orjson

from sidecar import model as m

__all__ = ["TypedEvents", "typed_message"]

_BLOCKS = frozenset(str(cls.__struct_config__.tag) for cls in get_args(m.ResponseBlock))
_DELTAS = frozenset(str(cls.__struct_config__.tag) for cls in get_args(m.BlockDelta))
_EVENTS = frozenset(str(cls.__struct_config__.tag) for cls in get_args(m.StreamEvent))
_STOP_REASONS = frozenset(get_args(m.StopReason))


def _note(notes: list[str], name: str) -> None:
    if name not in notes:
        notes.append(name)


def typed_message(answer: m.Message | m.RawMessage, notes: list[str]) -> m.Message:
    if type(answer) is not m.RawMessage:
        assert isinstance(answer, m.Message)
        return answer
    try:
        return m.message_decoder.decode(answer.body)
    except msgspec.DecodeError:
        doc = orjson.loads(answer.body)
        _lenient_message(doc, notes)
        return msgspec.convert(doc, m.Message)


class TypedEvents:
    """One stream's events as the model's, batch by batch (``feed``); relayed items are read,
    the model's own pass through. Remembers the blocks left out, to leave out the rest of them."""

    __slots__ = ("_skipped", "notes")

    def __init__(self, notes: list[str]) -> None:
        self.notes = notes
        self._skipped: set[int] = set()

    def feed(self, batch: list[m.StreamItem]) -> list[m.StreamEvent]:
        out: list[m.StreamEvent] = []
        for item in batch:
            if type(item) is not m.RawEvent:
                if type(item) is not m.RawChatChunk:  # never in an Anthropic stream
                    out.append(item)  # type: ignore[arg-type]
                continue
            try:
                event: m.StreamEvent | None = m.event_decoder.decode(item.data)
            except msgspec.DecodeError:
                event = self._lenient(orjson.loads(item.data))
            if event is None or (
                self._skipped
                and type(event) in (m.ContentBlockDelta, m.ContentBlockStop)
                and event.index in self._skipped  # type: ignore[union-attr]
            ):
                continue
            out.append(event)
        return out

    def _lenient(self, doc: dict[str, Any]) -> m.StreamEvent | None:
        kind = doc.get("type")
        if kind not in _EVENTS:
            return None
        index = doc.get("index")
        if kind == "message_start" and isinstance(doc.get("message"), dict):
            _lenient_message(doc["message"], self.notes)
        elif kind == "content_block_start":
            block = (doc.get("content_block") or {}).get("type")
            if block not in _BLOCKS:
                if isinstance(index, int):
                    self._skipped.add(index)
                _note(self.notes, f"block:{block}")
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


def _lenient_message(doc: dict[str, Any], notes: list[str]) -> None:
    content = []
    for block in doc.get("content") or ():
        if block.get("type") in _BLOCKS:
            content.append(block)
        else:
            _note(notes, f"block:{block.get('type')}")
    doc["content"] = content
    if doc.get("stop_reason") not in _STOP_REASONS:
        doc["stop_reason"] = None
