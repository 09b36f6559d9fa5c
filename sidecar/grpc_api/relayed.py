"""Relayed answers (an Anthropic-protocol upstream's own bytes) as protobuf, nothing lost.

The HTTP door sends a relayed answer on as bytes; the gRPC door must build protobuf messages.
A relayed message, or event, is parsed once and written into the proto by ``json_proto``: what
the proto models is typed, the rest travels in its escape hatch (``raw`` cases, ``extra_json``,
``raw_*`` enum strings), so a new block, delta, event type, stop reason or field reaches the gRPC
caller too, and the sidecar's own model is never involved (relay does not depend on it).

Streams: a plain ``text_delta`` / ``input_json_delta`` / ``thinking_delta`` (the common case,
one per token) becomes a typed model delta, so that ``relay`` can merge a run of them while the
caller is behind; every other event becomes its ``pb.StreamEvent`` at once. Either way each
event's JSON is parsed once.
"""

from __future__ import annotations

from typing import Any

import orjson

from sidecar import model as m
from sidecar.grpc_api.gen.anyllm.sidecar.v1 import messages_pb2 as pb
from sidecar.grpc_api.json_proto import event_from_json, message_from_json
from sidecar.grpc_api.render import message_to_proto

__all__ = ["GrpcEvent", "grpc_events", "message_reply"]

# What the relay writes: a model event (rendered, merged when the caller is behind) or a
# ready proto event (a relayed event that is not a plain delta).
GrpcEvent = m.StreamEvent | pb.StreamEvent

_MERGEABLE: dict[str, tuple[str, Any]] = {
    "text_delta": ("text", m.TextDelta),
    "input_json_delta": ("partial_json", m.InputJsonDelta),
    "thinking_delta": ("thinking", m.ThinkingDelta),
}


def message_reply(answer: m.Answer) -> pb.Message:
    """The CreateMessage reply for an engine answer, relayed or translated."""
    if type(answer) is m.RawMessage:
        return message_from_json(orjson.loads(answer.body))
    assert isinstance(answer, m.Message)
    return message_to_proto(answer)


def grpc_events(batch: list[m.StreamItem]) -> list[GrpcEvent]:
    out: list[GrpcEvent] = []
    for item in batch:
        if type(item) is not m.RawEvent:
            out.append(item)  # type: ignore[arg-type]
            continue
        doc = orjson.loads(item.data)
        if item.type == "content_block_delta":
            delta = _plain_delta(doc)
            if delta is not None:
                out.append(delta)
                continue
        out.append(event_from_json(doc))
    return out


def _plain_delta(doc: Any) -> m.ContentBlockDelta | None:
    """A delta with nothing but its one field, as a model delta; None for anything else."""
    if type(doc) is not dict or len(doc) != 3:
        return None
    index, delta = doc.get("index"), doc.get("delta")
    if type(index) is not int or type(delta) is not dict or len(delta) != 2:
        return None
    kind = _MERGEABLE.get(delta.get("type"))  # type: ignore[arg-type]
    if kind is None:
        return None
    value = delta.get(kind[0])
    if type(value) is not str:
        return None
    return m.ContentBlockDelta(index=index, delta=kind[1](value))
