"""Which fields of a caller's JSON request this sidecar does not model, at any depth.

msgspec ignores unknown fields while decoding, which keeps newer clients working (Claude Code
sends fields newer than the documented API). A native Anthropic upstream gets them anyway (the
body is relayed as is); a translating backend drops them, and names them with this function so
that nothing is ever lost without a word in the degradation list.

How: the request's type (``MessagesRequest``) is turned once, with ``msgspec.inspect``, into a
small shape tree (struct → its fields, tagged unions → the member by tag, lists → their item);
the parsed body is walked along it and every key a struct does not have is named by its path
(``context_management``, ``tools[].eager_input_streaming``, ``messages[].content[].x``).
Values typed ``dict[str, Any]`` (a tool's ``input_schema``, a tool call's ``input``) are opaque.
Blocks of a type we do not model are not walked: they are named as ``block:TYPE`` elsewhere.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson
from msgspec import inspect as mi

from sidecar.model import MessagesRequest


@dataclasses.dataclass(slots=True)
class _Struct:
    fields: dict[str, Any]  # encoded name -> shape
    tag_field: str | None


@dataclasses.dataclass(slots=True)
class _Union:
    structs: list[_Struct]  # untagged: at most one
    by_tag: dict[str, _Struct]
    tag_field: str | None
    items: Any  # a list member's item shape, or None


_OPAQUE = None


def _shape(info: mi.Type, cache: dict[int, Any]) -> Any:
    if isinstance(info, mi.StructType):
        key = id(info.cls)
        if key in cache:
            return cache[key]
        struct = _Struct(fields={}, tag_field=info.tag_field)
        cache[key] = struct
        for field in info.fields:
            struct.fields[field.encode_name] = _shape(field.type, cache)
        return struct
    if isinstance(info, mi.ListType):
        return _Union([], {}, None, _shape(info.item_type, cache))
    if isinstance(info, mi.UnionType):
        union = _Union([], {}, None, None)
        for member in info.types:
            shape = _shape(member, cache)
            if isinstance(shape, _Struct):
                if isinstance(member, mi.StructType) and member.tag is not None:
                    union.by_tag[str(member.tag)] = shape
                    union.tag_field = member.tag_field
                else:
                    union.structs.append(shape)
            elif isinstance(shape, _Union) and shape.items is not None:
                union.items = shape.items
        return union
    return _OPAQUE  # scalars, Literal, dict[str, Any], Any


_REQUEST = _shape(mi.type_info(MessagesRequest), {})


def _walk(value: Any, shape: Any, path: str, found: list[str]) -> None:
    if shape is None:
        return
    if isinstance(shape, _Union):
        if isinstance(value, list):
            if shape.items is not None:
                for item in value:
                    _walk(item, shape.items, path + "[]", found)
            return
        if not isinstance(value, dict):
            return
        if shape.tag_field is not None and isinstance(value.get(shape.tag_field), str):
            member = shape.by_tag.get(value[shape.tag_field])
            if member is not None:
                _walk(value, member, path, found)
            return  # an unknown tag: named as block:TYPE (or tool_choice:TYPE...) elsewhere
        if shape.structs:
            _walk(value, shape.structs[0], path, found)
        return
    if not isinstance(value, dict):
        return
    prefix = path + "." if path else ""
    for key, item in value.items():
        if key == shape.tag_field:
            continue
        sub = shape.fields.get(key, _MISSING)
        if sub is _MISSING:
            found.append(prefix + key)
        else:
            _walk(item, sub, prefix + key, found)


_MISSING = object()


def unknown_fields(body: bytes) -> list[str]:
    """Paths of the fields of ``body`` that are not part of the model (``tools[].x`` style)."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return []
    found: list[str] = []
    _walk(doc, _REQUEST, "", found)
    return list(dict.fromkeys(found))


__all__ = ["unknown_fields"]
