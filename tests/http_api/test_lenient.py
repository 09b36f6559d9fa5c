"""Unknown content block types: left out of the typed request, named; other errors untouched."""

from __future__ import annotations

import orjson
import pytest

from sidecar.http_api.lenient import without_unknown_blocks


def body(content: object, **extra: object) -> bytes:
    doc = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": content}]}
    return orjson.dumps({**doc, **extra})


CASES = [
    pytest.param(
        body([{"type": "text", "text": "a"}, {"type": "server_tool_use", "id": "s", "input": {}}]),
        ("server_tool_use",),
        1,
        id="one-unknown-block",
    ),
    pytest.param(
        body([{"type": "future_a"}, {"type": "future_a"}, {"type": "future_b"}]),
        ("future_a", "future_b"),
        0,
        id="named-once-each",
    ),
    pytest.param(body([{"type": "text", "text": "a"}]), None, None, id="nothing-unknown"),
    pytest.param(body([{"type": "zzz"}], max_tokens="x"), None, None, id="other-errors-stay"),
    pytest.param(b"{broken", None, None, id="not-json"),
]


@pytest.mark.parametrize(("raw", "dropped", "kept"), CASES)
def test_without_unknown_blocks(
    raw: bytes, dropped: tuple[str, ...] | None, kept: int | None
) -> None:
    result = without_unknown_blocks(raw)
    if dropped is None:
        assert result is None
        return
    assert result is not None
    request, names = result
    assert names == dropped
    content = request.messages[0].content
    assert isinstance(content, list) and len(content) == kept
