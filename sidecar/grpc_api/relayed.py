"""Engine answers as protobuf: relayed ones (an Anthropic-protocol upstream's own bytes) losing
nothing, translated ones rendered; a stream's batches as the events to write.

The HTTP door sends a relayed answer on as bytes; the gRPC door must build protobuf messages.
A relayed message, or event, is parsed once and written into the proto by ``json_proto``: what
the proto models is typed, the rest travels in its escape hatch (``raw`` cases, ``extra_json``,
``raw_*`` enum strings), so a new block, delta, event type, stop reason or field reaches the gRPC
caller too, and the sidecar's own model is never involved (relay does not depend on it).

Streams: ``grpc_events`` turns one batch (the events of one upstream read) into the messages
to write, and merges each run of adjacent plain deltas of one block and kind (``text_delta``,
``input_json_delta``, ``thinking_delta`` carrying nothing but their one field, relayed or
translated) into one message: a batch holds more than one event when they arrived while the
previous write was pending, so a caller that keeps up gets each delta as it came and one that
is behind gets fewer, larger messages. The merge is done on the way to
protobuf; the plain delta, one per token, is built straight into its ``StreamEvent`` (the
per-event hot path: one JSON parse, one message, no model object in between); every other
event goes through the general conversion (``json_proto.event_from_json`` for relayed JSON,
``render.event_to_proto`` for the model). An ``error`` event ends the stream as an
``UpstreamError`` of its type (on gRPC a failure is a status, never an OK end), before any
event of its batch is written.
"""

from __future__ import annotations

from typing import Any

import orjson

from sidecar import model as m
from sidecar.errors import FailureKind, UpstreamError
from sidecar.grpc_api.gen.anyllm.sidecar.v1 import messages_pb2 as pb
from sidecar.grpc_api.json_proto import event_from_json, message_from_json
from sidecar.grpc_api.render import event_to_proto, message_to_proto

__all__ = ["grpc_events", "message_reply"]

# A plain delta's JSON type -> (its one field, its case in ContentBlockDeltaEvent)
_PLAIN: dict[Any, tuple[str, str]] = {
    "text_delta": ("text", "text_delta"),
    "input_json_delta": ("partial_json", "input_json_delta"),
    "thinking_delta": ("thinking", "thinking_delta"),
}
_MODEL_PLAIN: dict[type, tuple[str, str]] = {
    m.TextDelta: ("text", "text_delta"),
    m.InputJsonDelta: ("partial_json", "input_json_delta"),
    m.ThinkingDelta: ("thinking", "thinking_delta"),
}
_INT32 = (-(2**31), 2**31 - 1)

# A mergeable delta: (block index, case, text)
Plain = tuple[int, str, str]


def message_reply(answer: m.Answer) -> pb.Message:
    """The CreateMessage reply for an engine answer, relayed or translated."""
    if type(answer) is m.RawMessage:
        return message_from_json(orjson.loads(answer.body))
    assert isinstance(answer, m.Message)
    return message_to_proto(answer)


def grpc_events(batch: list[m.StreamItem]) -> list[pb.StreamEvent]:
    """The messages to write for one batch, adjacent plain deltas of one block merged."""
    if len(batch) == 1:  # a paced stream: one event per read
        event = _convert(batch[0])
        return [event if type(event) is pb.StreamEvent else _delta(*event)]
    out: list[pb.StreamEvent] = []
    run: list[str] = []
    index, case = 0, ""
    for item in batch:
        event = _convert(item)
        if type(event) is pb.StreamEvent:
            if run:
                out.append(_delta(index, case, "".join(run)))
                run = []
            out.append(event)
            continue
        if run and (event[0] != index or event[1] != case):
            out.append(_delta(index, case, "".join(run)))
            run = []
        index, case = event[0], event[1]
        run.append(event[2])
    if run:
        out.append(_delta(index, case, "".join(run)))
    return out


def _delta(index: int, case: str, text: str) -> pb.StreamEvent:
    out = pb.StreamEvent()
    target = out.content_block_delta
    target.index = index
    setattr(target, case, text)
    return out


def _convert(item: m.StreamItem) -> pb.StreamEvent | Plain:
    """A plain delta as ``(index, case, text)``; any other event as its proto."""
    if type(item) is m.RawEvent:
        doc = orjson.loads(item.data)
        kind = item.type
        if kind == "content_block_delta":
            plain = _plain_json(doc)
            if plain is not None:
                return plain
        elif kind == "error":
            error = item.view.error
            if error is None:
                raise UpstreamError(
                    "stream error", kind=FailureKind.STREAM_ERROR, error_type="api_error"
                )
            raise UpstreamError(error.message, kind=FailureKind.STREAM_ERROR, error_type=error.type)
        return event_from_json(doc)
    if type(item) is m.ContentBlockDelta:
        spec = _MODEL_PLAIN.get(type(item.delta))
        if spec is not None and _INT32[0] <= item.index <= _INT32[1]:
            return item.index, spec[1], getattr(item.delta, spec[0])
    elif type(item) is m.ErrorEvent:
        raise UpstreamError(
            item.error.message, kind=FailureKind.STREAM_ERROR, error_type=item.error.type
        )
    return event_to_proto(item)  # type: ignore[arg-type]


def _plain_json(doc: Any) -> Plain | None:
    """A relayed delta with nothing but its one field; None for anything else."""
    if type(doc) is not dict or len(doc) != 3:
        return None
    index, delta = doc.get("index"), doc.get("delta")
    if type(index) is not int or type(delta) is not dict or len(delta) != 2:
        return None
    if not _INT32[0] <= index <= _INT32[1]:
        return None
    spec = _PLAIN.get(delta.get("type"))
    if spec is None:
        return None
    value = delta.get(spec[0])
    if type(value) is not str:
        return None
    return index, spec[1], value
