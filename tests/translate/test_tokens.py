"""The input-token estimate: each rule of the heuristic, and monotonicity."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from sidecar.model import CountTokensRequest, MessagesRequest
from sidecar.translate.tokens import (
    IMAGE_TOKENS,
    MESSAGE_OVERHEAD,
    PDF_PAGE_TOKENS,
    TOOLS_OVERHEAD,
    estimate_input_tokens,
)


def _req(**fields: Any) -> MessagesRequest:
    raw = {"model": "m", "max_tokens": 1, "messages": [], **fields}
    return msgspec.convert(raw, MessagesRequest)


def _user(content: Any) -> dict[str, Any]:
    return {"role": "user", "content": content}


IMG = {"type": "image", "source": {"type": "url", "url": "https://x/y.png"}}

CASES = [
    ("empty", _req(), 0),
    ("system-string", _req(system="a" * 40), 10),
    (
        "system-blocks",
        _req(system=[{"type": "text", "text": "a" * 8}, {"type": "text", "text": "b" * 5}]),
        2 + 2,
    ),
    ("user-string", _req(messages=[_user("a" * 400)]), MESSAGE_OVERHEAD + 100),
    ("rounds-up", _req(messages=[_user("abcde")]), MESSAGE_OVERHEAD + 2),
    ("cjk-counts-bytes", _req(messages=[_user("世界世界")]), MESSAGE_OVERHEAD + 3),
    ("image", _req(messages=[_user([IMG, IMG])]), MESSAGE_OVERHEAD + 2 * IMAGE_TOKENS),
    (
        "pdf-one-page",
        _req(
            messages=[
                _user(
                    [
                        {
                            "type": "document",
                            "source": {
                                "type": "base64",
                                "media_type": "application/pdf",
                                "data": "JVBERi0x",
                            },
                        }
                    ]
                )
            ]
        ),
        MESSAGE_OVERHEAD + PDF_PAGE_TOKENS,
    ),
    (
        "tool-use-and-result",
        _req(
            messages=[
                {
                    "role": "assistant",
                    "content": [
                        {"type": "tool_use", "id": "t", "name": "abcd", "input": {"k": "v"}}
                    ],
                },
                _user([{"type": "tool_result", "tool_use_id": "t", "content": "a" * 8}]),
            ]
        ),
        2 * MESSAGE_OVERHEAD + 1 + 3 + 2,
    ),
    (
        "tools",
        _req(tools=[{"name": "abcd", "description": "a" * 8, "input_schema": {"type": "object"}}]),
        TOOLS_OVERHEAD + 1 + 2 + 5,
    ),
]


@pytest.mark.parametrize(("req", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_estimate(req: MessagesRequest, expected: int) -> None:
    assert estimate_input_tokens(req) == expected


def test_count_tokens_request_gives_the_same_estimate() -> None:
    fields = {"system": "be brief", "messages": [_user("hello there")], "tools": [{"name": "f"}]}
    messages_req = _req(**fields)
    count_req = msgspec.convert({"model": "m", **fields}, CountTokensRequest)
    assert estimate_input_tokens(count_req) == estimate_input_tokens(messages_req) > 0


def test_more_text_never_counts_less() -> None:
    counts = [estimate_input_tokens(_req(messages=[_user("word " * n)])) for n in range(0, 200, 7)]
    assert counts == sorted(counts)
