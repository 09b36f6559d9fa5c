"""Lenient decoding of a caller's request: what the model does not know is left out of the
typed request and named; a wrong type in what the model does know stays an error."""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest

from sidecar.model import CountTokensRequest, MessagesRequest, TextBlock, ToolResultBlock
from sidecar.translate.anthropic_request import lenient_convert, parse


def doc(content: object, **extra: object) -> dict[str, Any]:
    base = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": content}]}
    return {**base, **extra}


TEXT = {"type": "text", "text": "a"}
CASES = [
    pytest.param(
        doc([TEXT, {"type": "server_tool_use", "id": "s", "name": "web_search", "input": {}}]),
        ("block:server_tool_use",),
        id="unknown-block",
    ),
    pytest.param(
        doc([{"type": "future_a"}, {"type": "future_a"}, TEXT, {"type": "future_b"}]),
        ("block:future_a", "block:future_b"),
        id="named-once-each",
    ),
    pytest.param(
        doc(
            [
                {
                    "type": "tool_result",
                    "tool_use_id": "t",
                    "content": [TEXT, {"type": "tool_reference", "tool_name": "x"}],
                }
            ]
        ),
        ("block:tool_reference",),
        id="nested-in-tool-result",
    ),
    pytest.param(
        doc(
            [
                {
                    "type": "tool_result",
                    "tool_use_id": "t",
                    "content": [
                        {
                            "type": "search_result",
                            "source": "https://x",
                            "title": "T",
                            "content": [TEXT],
                        }
                    ],
                }
            ]
        ),
        ("block:search_result(as_text)",),
        id="search-result-as-text",
    ),
    pytest.param(
        doc("hi", thinking={"type": "between_tools"}), ("thinking:between_tools",), id="thinking"
    ),
    pytest.param(
        doc("hi", tool_choice={"type": "future"}), ("tool_choice:future",), id="tool-choice"
    ),
    pytest.param(
        doc("hi", tools=[{"type": "browser_toolset_20260801"}]),
        ("tool:browser_toolset_20260801",),
        id="toolset-without-name",
    ),
    pytest.param(
        doc([{"type": "image", "source": {"type": "hologram", "x": 1}}, TEXT]),
        ("block:image(source:hologram)",),
        id="unknown-source",
    ),
    pytest.param(
        doc("hi", system=[TEXT, {"type": "future_system_block"}]),
        ("block:future_system_block",),
        id="system-block",
    ),
]


@pytest.mark.parametrize(("body", "dropped"), CASES)
def test_left_out_and_named(body: dict[str, Any], dropped: tuple[str, ...]) -> None:
    result = lenient_convert(copy.deepcopy(body), MessagesRequest)
    assert result is not None
    request, names = result
    assert names == dropped
    assert isinstance(request, MessagesRequest)


def test_search_result_keeps_its_text() -> None:
    body = copy.deepcopy(CASES[3].values[0])
    result = lenient_convert(body, MessagesRequest)
    assert result is not None
    content = result[0].messages[0].content
    assert isinstance(content, list) and isinstance(content[0], ToolResultBlock)
    inner = content[0].content
    assert isinstance(inner, list) and isinstance(inner[0], TextBlock)
    assert inner[0].text == "T\nhttps://x\na"


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(doc([TEXT]), id="nothing-unknown"),
        pytest.param(doc([{"type": "zzz"}], max_tokens="x"), id="known-field-wrong-type"),
        pytest.param([1, 2], id="not-an-object"),
    ],
)
def test_other_errors_stay(body: Any) -> None:
    assert lenient_convert(body, MessagesRequest) is None


def test_count_tokens_too() -> None:
    body = doc([TEXT, {"type": "container_upload", "file_id": "f"}])
    del body["max_tokens"]
    result = lenient_convert(body, CountTokensRequest)
    assert result is not None and result[1] == ("block:container_upload",)


def test_parse() -> None:
    assert parse(b"{broken") is None
    assert parse(orjson.dumps({"a": 1})) == {"a": 1}


ONLY_UNMODELLED = {"type": "server_tool_use", "id": "s", "name": "web_search", "input": {}}


@pytest.mark.parametrize(
    ("turns", "kept"),
    [
        ([[ONLY_UNMODELLED]], [[]]),  # the only turn stays, empty: still a valid request
        ([[ONLY_UNMODELLED], [{"type": "text", "text": "hi"}]], [[TextBlock(text="hi")]]),
    ],
    ids=["only_turn", "one_of_two"],
)
def test_a_turn_of_unmodelled_blocks(turns: list[Any], kept: list[Any]) -> None:
    body = {
        "model": "m",
        "max_tokens": 1,
        "messages": [{"role": "user", "content": c} for c in turns],
    }
    result = lenient_convert(body, MessagesRequest)
    assert result is not None
    assert [message.content for message in result[0].messages] == kept
    assert result[1] == ("block:server_tool_use",)
