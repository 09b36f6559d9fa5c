"""Decoding a caller's Anthropic Messages request: strictly first, leniently when the API has
moved on.

The strict msgspec decoder checks every type in one pass; a request it accepts goes on as it
is. When it fails, the request may still be valid in today's API, only newer than our model: a
content block type we do not model (``server_tool_use``, ``container_upload``...), anywhere (in
a message, inside a ``tool_result``, in the system prompt), a ``thinking`` or ``tool_choice``
type we do not know, a toolset without ``name``. Those are left out of the typed request — the
caller's raw body still goes as it is to an Anthropic-protocol upstream — and named (for a
translating backend's degradation list), and the rest is decoded again. ``search_result`` blocks
become their text (what a translating upstream can use of them). Anything else wrong, a wrong
type in a field we do model, stays the strict decoder's error, which names the field.
"""

from __future__ import annotations

from typing import Any, TypeVar, get_args

import msgspec
import orjson

from sidecar.model import (
    CountTokensRequest,
    DocumentBlock,
    ImageBlock,
    MessagesRequest,
    RequestBlock,
    TextBlock,
    ThinkingConfig,
    ToolChoice,
)

__all__ = ["lenient_convert"]

R = TypeVar("R", MessagesRequest, CountTokensRequest)


def _tags(union: Any) -> frozenset[str]:
    return frozenset(str(cls.__struct_config__.tag) for cls in get_args(union))


_BLOCKS = _tags(RequestBlock)
_NESTED = _tags(TextBlock | ImageBlock | DocumentBlock)  # what a tool_result may hold
_THINKING = _tags(ThinkingConfig)
_TOOL_CHOICE = _tags(ToolChoice)
_IMAGE_SOURCES = frozenset({"base64", "url", "file"})
_DOCUMENT_SOURCES = _IMAGE_SOURCES | {"text", "content"}


def lenient_convert(doc: Any, into: type[R]) -> tuple[R, tuple[str, ...]] | None:
    """``doc`` (the parsed body) as ``into`` with what the model does not know left out, and the
    names of what was left out; None when nothing was left out or the rest is still invalid
    (the caller then reports the strict decoder's error)."""
    if not isinstance(doc, dict):
        return None
    dropped: list[str] = []
    _prune(doc, dropped)
    if not dropped:
        return None
    try:
        return msgspec.convert(doc, into), tuple(dict.fromkeys(dropped))
    except msgspec.ValidationError:
        return None


def parse(body: bytes) -> Any:
    """The body as Python values, or None when it is not JSON (the strict error says why)."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None


def _prune(doc: dict[str, Any], dropped: list[str]) -> None:
    messages = doc.get("messages")
    if isinstance(messages, list):
        kept = []
        emptied: dict[str, Any] | None = None
        for message in messages:
            if (
                isinstance(message, dict)
                and isinstance(message.get("content"), list)
                and message["content"]
            ):
                message["content"] = _blocks(message["content"], _BLOCKS, dropped)
                if not message["content"]:
                    emptied = message
                    continue  # nothing of it is modelled: the turn goes with its blocks
            kept.append(message)
        # A request made only of such turns is still valid, never a 400: the last one stays,
        # empty (a translating upstream leaves empty turns out).
        doc["messages"] = kept or ([emptied] if emptied is not None else [])
    if isinstance(doc.get("system"), list):
        doc["system"] = _blocks(doc["system"], frozenset({"text"}), dropped)
    for key, known in (("thinking", _THINKING), ("tool_choice", _TOOL_CHOICE)):
        value = doc.get(key)
        kind = value.get("type") if isinstance(value, dict) else None
        if isinstance(kind, str) and kind not in known:
            dropped.append(f"{key}:{kind}")
            del doc[key]
    tools = doc.get("tools")
    if isinstance(tools, list):
        kept = []
        for tool in tools:
            if isinstance(tool, dict) and "name" not in tool and isinstance(tool.get("type"), str):
                dropped.append(f"tool:{tool['type']}")  # a toolset: the upstream names its tools
            else:
                kept.append(tool)
        doc["tools"] = kept


def _blocks(blocks: list[Any], known: frozenset[str], dropped: list[str]) -> list[Any]:
    kept: list[Any] = []
    for block in blocks:
        kind = block.get("type") if isinstance(block, dict) else None
        if not isinstance(kind, str):
            kept.append(block)  # not ours to judge: the strict error will name it
        elif kind == "search_result":
            kept.append({"type": "text", "text": _search_result_text(block)})
            dropped.append("block:search_result(as_text)")
        elif kind not in known:
            dropped.append(f"block:{kind}")
        elif _unknown_source(block, dropped):
            continue
        else:
            if kind == "tool_result" and isinstance(block.get("content"), list):
                block["content"] = _blocks(block["content"], _NESTED, dropped)
            kept.append(block)
    return kept


def _unknown_source(block: dict[str, Any], dropped: list[str]) -> bool:
    """True (and named) for an image or document whose source type we do not model."""
    known = {"image": _IMAGE_SOURCES, "document": _DOCUMENT_SOURCES}.get(block["type"])
    source = block.get("source")
    if known is None or not isinstance(source, dict) or not isinstance(source.get("type"), str):
        return False
    if source["type"] in known:
        return False
    dropped.append(f"block:{block['type']}(source:{source['type']})")
    return True


def _search_result_text(block: dict[str, Any]) -> str:
    parts = [str(block.get("title") or ""), str(block.get("source") or "")]
    for item in block.get("content") or ():
        if isinstance(item, dict) and isinstance(item.get("text"), str):
            parts.append(item["text"])
    return "\n".join(part for part in parts if part)
