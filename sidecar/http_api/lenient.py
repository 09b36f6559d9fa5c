"""Content blocks of a type this sidecar does not model, in a request that is otherwise valid.

The strict decoder rejects an unknown block ``type`` (it cannot build a typed block from it).
Newer clients send such blocks in their history (``server_tool_use``, ``web_search_tool_result``
after Anthropic's server tools ran, and types not invented yet). Rather than a 400, the request
is decoded again without them: the caller's raw body still goes as is to a native Anthropic
upstream, and a translating backend names each left-out block in the degradation list. Anything
else that is wrong stays a 400 with the strict decoder's message.
"""

from __future__ import annotations

from typing import Any, get_args

import msgspec
import orjson

from sidecar.model import MessagesRequest, RequestBlock

KNOWN_BLOCKS = frozenset(str(cls.__struct_config__.tag) for cls in get_args(RequestBlock))


def without_unknown_blocks(body: bytes) -> tuple[MessagesRequest, tuple[str, ...]] | None:
    """The request with unknown content blocks left out, and their types; None when there were
    none (or the body is wrong in another way: the caller reports the strict error)."""
    try:
        doc: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    messages = doc.get("messages") if isinstance(doc, dict) else None
    if not isinstance(messages, list):
        return None
    dropped: list[str] = []
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, list):
            continue
        kept = []
        for block in content:
            kind = block.get("type") if isinstance(block, dict) else None
            if isinstance(kind, str) and kind not in KNOWN_BLOCKS:
                dropped.append(kind)
            else:
                kept.append(block)
        message["content"] = kept
    if not dropped:
        return None
    try:
        return msgspec.convert(doc, MessagesRequest), tuple(dict.fromkeys(dropped))
    except msgspec.ValidationError:
        return None
