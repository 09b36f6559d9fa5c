"""OpenAI Chat Completions tools and tool choice -> Anthropic ``Tool`` and ``ToolChoice``.

Part of ``openai_chat_to_anthropic`` (split out to keep each module small). Function tools
become client tools with the function's ``parameters`` as ``input_schema``; the legacy
``functions`` / ``function_call`` pair maps the same way. Tools Anthropic cannot run for the
caller (OpenAI's ``custom`` free-form tools) are a 400 naming the tool. ``tool_choice``:

    "auto" -> auto            "none" -> none            "required" -> any
    {"type": "function", "function": {"name": N}} -> {"type": "tool", "name": N}
    {"type": "allowed_tools", ...} -> the tools filtered to the allowed ones, auto / any
                                      (note tool_choice.allowed_tools)

``parallel_tool_calls: false`` sets ``disable_parallel_tool_use`` (on an ``auto`` choice when
none was given). A choice without tools is not sent: Anthropic rejects it and it means nothing.
"""

from __future__ import annotations

from typing import Any

from sidecar.errors import InvalidRequestError
from sidecar.model import (
    Tool,
    ToolChoice,
    ToolChoiceAny,
    ToolChoiceAuto,
    ToolChoiceNone,
    ToolChoiceTool,
)
from sidecar.translate.openai_chat_wire import ChatRequestWire, FunctionDef

__all__ = ["tool_choice_for", "tools_for"]

_EMPTY_SCHEMA: dict[str, Any] = {"type": "object", "properties": {}}


def _note(notes: list[str], name: str) -> None:
    if name not in notes:
        notes.append(name)


def _invalid(path: str, problem: str) -> InvalidRequestError:
    return InvalidRequestError(f"{path}: {problem}", field=path)


def _tool(function: FunctionDef, notes: list[str]) -> Tool:
    if function.strict:
        # Anthropic's strict tool use is not modelled: the schema is sent, not enforced.
        _note(notes, "tools.strict")
    return Tool(
        name=function.name,
        description=function.description or None,
        input_schema=function.parameters if function.parameters is not None else _EMPTY_SCHEMA,
    )


def tools_for(wire: ChatRequestWire, notes: list[str]) -> list[Tool]:
    """The Anthropic tools for ``tools`` and the legacy ``functions``."""
    tools: list[Tool] = []
    for i, tool in enumerate(wire.tools or ()):
        if tool.type != "function":
            raise _invalid(f"tools[{i}].type", f"{tool.type!r} tools are not supported here")
        if tool.function is None:
            raise _invalid(f"tools[{i}].function", "required for a function tool")
        tools.append(_tool(tool.function, notes))
    tools += [_tool(function, notes) for function in wire.functions or ()]
    return tools


def _named(value: dict[str, Any], path: str) -> str:
    function = value.get("function")
    name = function.get("name") if isinstance(function, dict) else None
    if not isinstance(name, str) or not name:
        raise _invalid(f"{path}.function.name", "a function name is required")
    return name


def _allowed(
    value: dict[str, Any], tools: list[Tool], notes: list[str]
) -> tuple[ToolChoice, list[Tool]]:
    path = "tool_choice.allowed_tools"
    allowed = value.get("allowed_tools")
    if not isinstance(allowed, dict) or not isinstance(allowed.get("tools"), list):
        raise _invalid(path, "expected an object with a list of tools")
    names = set()
    for j, entry in enumerate(allowed["tools"]):
        if not isinstance(entry, dict) or entry.get("type") != "function":
            raise _invalid(f"{path}.tools[{j}]", "only function tools can be allowed here")
        names.add(_named(entry, f"{path}.tools[{j}]"))
    _note(notes, "tool_choice.allowed_tools")
    mode = allowed.get("mode", "auto")
    if mode not in ("auto", "required"):
        raise _invalid(f"{path}.mode", f"expected 'auto' or 'required', got {mode!r}")
    choice: ToolChoice = ToolChoiceAny() if mode == "required" else ToolChoiceAuto()
    return choice, [t for t in tools if t.name in names]


def _choice(
    value: str | dict[str, Any], path: str, tools: list[Tool], notes: list[str]
) -> tuple[ToolChoice, list[Tool]]:
    if isinstance(value, str):
        match value:
            case "auto":
                return ToolChoiceAuto(), tools
            case "none":
                return ToolChoiceNone(), tools
            case "required":
                return ToolChoiceAny(), tools
        raise _invalid(path, f"expected 'auto', 'none', 'required' or an object, got {value!r}")
    kind = value.get("type", "function")  # legacy function_call objects have no type
    if kind == "function":
        name = value["name"] if isinstance(value.get("name"), str) else _named(value, path)
        return ToolChoiceTool(name=name), tools
    if kind == "allowed_tools":
        return _allowed(value, tools, notes)
    raise _invalid(f"{path}.type", f"{kind!r} is not supported here")


def tool_choice_for(
    wire: ChatRequestWire, tools: list[Tool], notes: list[str]
) -> tuple[ToolChoice | None, list[Tool]]:
    """The Anthropic tool choice, and the tools to send (narrowed by ``allowed_tools``)."""
    choice: ToolChoice | None = None
    if wire.tool_choice is not None:
        choice, tools = _choice(wire.tool_choice, "tool_choice", tools, notes)
    elif wire.function_call is not None:
        choice, tools = _choice(wire.function_call, "function_call", tools, notes)
    if wire.parallel_tool_calls is False:
        if choice is None or isinstance(choice, ToolChoiceAuto):
            choice = ToolChoiceAuto(disable_parallel_tool_use=True)
        elif isinstance(choice, ToolChoiceAny):
            choice = ToolChoiceAny(disable_parallel_tool_use=True)
        elif isinstance(choice, ToolChoiceTool):
            choice = ToolChoiceTool(name=choice.name, disable_parallel_tool_use=True)
    return choice, tools
