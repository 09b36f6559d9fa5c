"""Relayed Anthropic answers read into the typed model: strictly when it knows everything,
leniently (what it does not know left out and named) when it does not."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sidecar import model as m
from sidecar.translate.relayed_to_model import TypedEvents, typed_message


def raw_message(doc: dict[str, Any]) -> m.RawMessage:
    body = json.dumps(doc).encode()
    return m.RawMessage(body=body, view=m.message_view_decoder.decode(body))


def raw(doc: dict[str, Any]) -> m.RawEvent:
    return m.RawEvent(
        type=doc["type"], data=json.dumps(doc).encode(), view=m.EventView(doc["type"])
    )


MESSAGE = {"id": "msg_1", "type": "message", "role": "assistant", "model": "c"}
TEXT = {"type": "text", "text": "hi"}
SEARCH = {"type": "server_tool_use", "id": "s", "name": "web_search", "input": {}}


@pytest.mark.parametrize(
    ("content", "stop_reason", "blocks", "stop", "notes"),
    [
        pytest.param([TEXT], "end_turn", ["text"], "end_turn", [], id="strict"),
        pytest.param([SEARCH, TEXT], "end_turn", ["text"], "end_turn",
                     ["block:server_tool_use"], id="unknown-block"),
        pytest.param([TEXT], "a_new_reason", ["text"], None, [], id="unknown-stop-reason"),
    ],
)  # fmt: skip
def test_typed_message(
    content: list[Any], stop_reason: str, blocks: list[str], stop: str | None, notes: list[str]
) -> None:
    seen: list[str] = []
    message = typed_message(
        raw_message({**MESSAGE, "content": content, "stop_reason": stop_reason}), seen
    )
    assert [b.__struct_config__.tag for b in message.content] == blocks
    assert message.stop_reason == stop
    assert seen == notes


def test_ours_pass_through() -> None:
    ours = m.Message(id="x", model="c", content=[])
    assert typed_message(ours, []) is ours
    events = [m.MessageStop()]
    assert TypedEvents([]).feed(events) == events  # type: ignore[arg-type]


def test_an_unknown_block_is_left_out_with_its_deltas_and_stop() -> None:
    notes: list[str] = []
    reader = TypedEvents(notes)
    first = reader.feed([raw({"type": "content_block_start", "index": 0, "content_block": SEARCH})])
    later = reader.feed(
        [
            raw({"type": "content_block_delta", "index": 0,
                 "delta": {"type": "input_json_delta", "partial_json": "{}"}}),
            raw({"type": "content_block_stop", "index": 0}),
            raw({"type": "content_block_start", "index": 1, "content_block": TEXT}),
            raw({"type": "a_new_event"}),
            raw({"type": "content_block_stop", "index": 1}),
        ]
    )  # fmt: skip
    assert first == []
    assert later == [
        m.ContentBlockStart(index=1, content_block=m.TextBlock(text="hi")),
        m.ContentBlockStop(index=1),
    ]
    assert notes == ["block:server_tool_use"]
