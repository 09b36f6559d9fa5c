"""Which fields of a caller's JSON request this sidecar does not model.

msgspec ignores unknown fields while decoding, which keeps newer clients working (Claude Code
sends fields newer than the documented API). A native Anthropic upstream gets them anyway (the
body is relayed as is); a translating backend drops them, and names them with this function so
the loss shows in the degradation list. Only the top level, the tools and ``thinking`` are
looked at: one cheap extra pass that parses nothing below them.
"""

from __future__ import annotations

import msgspec

from sidecar.model import MessagesRequest, ThinkingAdaptive, ThinkingEnabled, Tool

_TOP = frozenset(MessagesRequest.__struct_fields__)
_TOOL = frozenset(Tool.__struct_fields__) | {"type"}
_THINKING = (
    frozenset(ThinkingEnabled.__struct_fields__) | frozenset(ThinkingAdaptive.__struct_fields__)
) | {"type"}
_objects = msgspec.json.Decoder(dict[str, msgspec.Raw])
_list_of_objects = msgspec.json.Decoder(list[dict[str, msgspec.Raw]])


def unknown_fields(body: bytes) -> list[str]:
    """Paths of the fields of ``body`` that are not part of the model (``tools[].x`` style)."""
    try:
        top = _objects.decode(body)
    except msgspec.DecodeError:
        return []
    found = [name for name in top if name not in _TOP]
    if "tools" in top:
        try:
            tools = _list_of_objects.decode(top["tools"])
        except msgspec.DecodeError:
            tools = []
        extra = {key for tool in tools for key in tool if key not in _TOOL}
        found += [f"tools[].{key}" for key in sorted(extra)]
    if "thinking" in top:
        try:
            thinking = _objects.decode(top["thinking"])
        except msgspec.DecodeError:
            thinking = {}
        found += [f"thinking.{key}" for key in thinking if key not in _THINKING]
    return found
