"""Anthropic Messages request -> OpenAI Chat Completions request body (a JSON-ready dict).

How it works
------------
``to_openai_request`` walks the request once and builds the Chat Completions body:

* ``system`` becomes the first message (role ``options.system_role``; blocks joined by a blank
  line).
* A user turn is split in two: its ``tool_result`` blocks become ``role: tool`` messages first
  (OpenAI requires them right after the assistant's ``tool_calls``), then one user message with the
  remaining text / image / document parts, preceded by any images the tool results carried
  (a ``tool`` message can only hold text).
* An assistant turn becomes one message: text joined into ``content``, ``tool_use`` blocks into
  ``tool_calls`` (arguments as JSON text), thinking into ``reasoning_content``. A turn left with
  nothing to send (thinking only, empty text) is skipped rather than sent empty.
* Tools, tool choice, sampling, stop sequences, metadata, thinking and streaming map to their
  Chat Completions fields (see docs/translation.md for the table).

Nothing is ever silently lost: whatever cannot be expressed, or is approximated, appends a short
stable feature name to ``notes`` (once per request), which the engine reports as the degradation
list. A request that cannot be honoured at all (a server tool such as ``web_search``) raises
``InvalidRequestError`` naming the offending field.

Tool-use ids are kept when an OpenAI-compatible server accepts them; others (characters outside
``[a-zA-Z0-9_-]`` or longer than 64) are replaced by ``toolu_`` + 24 hex digits of their SHA-256,
the same function for ``tool_use.id`` and ``tool_result.tool_use_id`` so pairs stay matched.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass
from typing import Any

import orjson

from sidecar.model import (
    Base64Source,
    ContentSource,
    DocumentBlock,
    ImageBlock,
    InputMessage,
    MessagesRequest,
    PlainTextSource,
    RedactedThinkingBlock,
    TextBlock,
    ThinkingAdaptive,
    ThinkingBlock,
    ThinkingEnabled,
    Tool,
    ToolChoiceAny,
    ToolChoiceAuto,
    ToolChoiceNone,
    ToolChoiceTool,
    ToolResultBlock,
    ToolUseBlock,
    UrlSource,
)

__all__ = ["OpenAIOptions", "reasoning_effort_for", "safe_tool_id", "to_openai_request"]

# Anthropic's output_config.effort → OpenAI's reasoning_effort: the same names today. A level
# not here goes as "medium", named in the degradation list.
_EFFORT = {"low": "low", "medium": "medium", "high": "high", "xhigh": "xhigh", "max": "max"}

Json = dict[str, Any]

_SAFE_ID = re.compile(r"[a-zA-Z0-9_-]{1,64}")
_CLIENT_TOOL_TYPES = (None, "custom")


@dataclass(frozen=True, slots=True)
class OpenAIOptions:
    """What an OpenAI-compatible upstream accepts. Defaults suit vLLM and OpenAI's chat models."""

    use_max_completion_tokens: bool = False  # o-series / gpt-5: max_completion_tokens
    system_role: str = "system"  # "developer" for o-series
    drop_sampling: bool = False  # models that reject temperature / top_p
    supports_top_k: bool = False  # vLLM, Ollama, OpenRouter accept top_k
    max_stop_sequences: int = 4  # OpenAI's limit
    stream_usage: bool = True  # stream_options.include_usage
    reasoning_effort: bool = True  # map thinking.budget_tokens to reasoning_effort


def safe_tool_id(tool_id: str) -> str:
    """``tool_id`` if OpenAI-compatible servers accept it, else a stable replacement."""
    if _SAFE_ID.fullmatch(tool_id):
        return tool_id
    return "toolu_" + hashlib.sha256(tool_id.encode()).hexdigest()[:24]


def reasoning_effort_for(budget_tokens: int) -> str:
    """Thinking budget -> reasoning effort: low < 4096 <= medium < 16384 <= high."""
    if budget_tokens < 4096:
        return "low"
    if budget_tokens < 16384:
        return "medium"
    return "high"


def to_openai_request(
    req: MessagesRequest,
    model: str,
    *,
    stream: bool,
    options: OpenAIOptions,
    notes: list[str],
) -> dict[str, Any]:
    """The Chat Completions body for ``req`` sent to upstream ``model``; see the module doc."""
    conv = _Converter(notes)
    messages: list[Json] = []
    if req.system is not None:
        conv.system(req.system, options.system_role, messages)
    for i, msg in enumerate(req.messages):
        if msg.role == "user":
            conv.user(msg, messages)
        elif msg.role == "system":  # a system message inside the conversation, in place
            conv.system(
                msg.content
                if isinstance(msg.content, str)
                else [b for b in msg.content if isinstance(b, TextBlock)],
                options.system_role,
                messages,
            )
        else:
            conv.assistant(msg, messages, last=i == len(req.messages) - 1)

    body: Json = {"model": model, "messages": messages}
    body["max_completion_tokens" if options.use_max_completion_tokens else "max_tokens"] = (
        req.max_tokens
    )
    tools = []
    for tool in req.tools or ():
        if tool.defer_loading:
            _note(notes, "tools.defer_loading")  # placeholders the client would load later
        elif tool.type not in _CLIENT_TOOL_TYPES:
            # A server tool runs at Anthropic; an OpenAI-compatible upstream cannot run it.
            _note(notes, f"tool:{tool.type}")
        else:
            tools.append(conv.tool(tool))
    if tools:
        body["tools"] = tools
        _tool_choice(req, body)
    _sampling(req, options, body, notes)
    if req.stop_sequences:
        stop = req.stop_sequences
        if len(stop) > options.max_stop_sequences:
            stop = stop[: options.max_stop_sequences]
            _note(notes, "stop_sequences")
        body["stop"] = stop
    if req.metadata is not None and req.metadata.user_id:
        body["user"] = req.metadata.user_id
    if isinstance(req.thinking, ThinkingEnabled):
        _note(notes, "thinking.budget_tokens")
        if options.reasoning_effort:
            body["reasoning_effort"] = reasoning_effort_for(req.thinking.budget_tokens)
    elif isinstance(req.thinking, ThinkingAdaptive):
        _note(notes, "thinking")
        effort = req.output_config.effort if req.output_config is not None else None
        if options.reasoning_effort and effort is not None:
            body["reasoning_effort"] = _effort(effort, notes)
        elif effort is not None:
            _note(notes, "output_config.effort")
    elif req.output_config is not None and req.output_config.effort is not None:
        _note(notes, "output_config.effort")
    if req.output_config is not None and req.output_config.format is not None:
        body["response_format"] = _response_format(req.output_config.format, notes)
    if stream:
        body["stream"] = True
        if options.stream_usage:
            body["stream_options"] = {"include_usage": True}
    return body


def _effort(effort: str, notes: list[str]) -> str:
    mapped = _EFFORT.get(effort)
    if mapped is None:
        _note(notes, f"output_config.effort:{effort}(as_medium)")
        return "medium"
    return mapped


def _response_format(fmt: dict[str, Any], notes: list[str]) -> Json:
    """Structured outputs: Anthropic's ``{type: json_schema, schema}`` as OpenAI's
    ``{type: json_schema, json_schema: {name, schema, strict}}``."""
    if fmt.get("type") == "json_schema" and isinstance(fmt.get("schema"), dict):
        return {
            "type": "json_schema",
            "json_schema": {"name": "output", "schema": fmt["schema"], "strict": True},
        }
    _note(notes, f"output_config.format:{fmt.get('type')}(as_json_object)")
    return {"type": "json_object"}


def _note(notes: list[str], name: str) -> None:
    if name not in notes:
        notes.append(name)


def _tool_choice(req: MessagesRequest, body: Json) -> None:
    choice = req.tool_choice
    if choice is None:
        return
    if isinstance(choice, ToolChoiceAuto):
        body["tool_choice"] = "auto"
    elif isinstance(choice, ToolChoiceAny):
        body["tool_choice"] = "required"
    elif isinstance(choice, ToolChoiceTool):
        body["tool_choice"] = {"type": "function", "function": {"name": choice.name}}
    elif isinstance(choice, ToolChoiceNone):
        body["tool_choice"] = "none"
        return
    if choice.disable_parallel_tool_use:
        body["parallel_tool_calls"] = False


def _sampling(req: MessagesRequest, options: OpenAIOptions, body: Json, notes: list[str]) -> None:
    if req.temperature is not None:
        if options.drop_sampling:
            _note(notes, "temperature")
        else:
            body["temperature"] = req.temperature
    if req.top_p is not None:
        if options.drop_sampling:
            _note(notes, "top_p")
        else:
            body["top_p"] = req.top_p
    if req.top_k is not None:
        if options.supports_top_k:
            body["top_k"] = req.top_k
        else:
            _note(notes, "top_k")


class _Converter:
    """Per-request conversion of messages and tools; holds only the notes list."""

    __slots__ = ("notes",)

    def __init__(self, notes: list[str]) -> None:
        self.notes = notes

    def note(self, name: str) -> None:
        _note(self.notes, name)

    # ------------------------------------------------------------------ system

    def system(self, system: str | list[TextBlock], role: str, out: list[Json]) -> None:
        if isinstance(system, str):
            text = system
        else:
            parts = []
            for block in system:
                if block.cache_control is not None:
                    self.note("cache_control")
                if block.text:
                    parts.append(block.text)
            text = "\n\n".join(parts)
        if text:
            out.append({"role": role, "content": text})

    # ------------------------------------------------------------------ user

    def user(self, msg: InputMessage, out: list[Json]) -> None:
        if isinstance(msg.content, str):
            if msg.content:
                out.append({"role": "user", "content": msg.content})
            return
        tool_images: list[Json] = []
        parts: list[Json] = []
        for block in msg.content:
            if isinstance(block, ToolResultBlock):
                out.append(self.tool_result(block, tool_images))
            elif isinstance(block, TextBlock):
                self.text_part(block, parts)
            elif isinstance(block, ImageBlock):
                self.image_part(block, parts)
            elif isinstance(block, DocumentBlock):
                self.document_parts(block, parts)
            elif isinstance(block, ToolUseBlock):
                self.note("tool_use")  # not valid in a user turn
            else:  # thinking in a user turn: not valid either
                self.note("thinking")
        parts = tool_images + parts
        if not parts:
            return
        if len(parts) == 1 and parts[0]["type"] == "text":
            out.append({"role": "user", "content": parts[0]["text"]})
        else:
            out.append({"role": "user", "content": parts})

    def text_part(self, block: TextBlock, parts: list[Json]) -> None:
        if block.cache_control is not None:
            self.note("cache_control")
        if block.text:
            parts.append({"type": "text", "text": block.text})

    def image_part(self, block: ImageBlock, parts: list[Json]) -> None:
        if block.cache_control is not None:
            self.note("cache_control")
        source = block.source
        if isinstance(source, Base64Source):
            url = f"data:{source.media_type};base64,{source.data}"
        elif isinstance(source, UrlSource):
            url = source.url
        else:
            self.note("image.file")
            return
        parts.append({"type": "image_url", "image_url": {"url": url}})

    def document_parts(self, block: DocumentBlock, parts: list[Json]) -> None:
        if block.cache_control is not None:
            self.note("cache_control")
        if block.citations and block.citations.get("enabled"):
            self.note("citations")
        source = block.source
        header = "\n\n".join(p for p in (block.title, block.context) if p)
        if isinstance(source, PlainTextSource):
            text = source.data
        elif isinstance(source, Base64Source) and source.media_type == "application/pdf":
            filename = (block.title or "document") + ".pdf"
            data_url = "data:application/pdf;base64," + source.data
            parts.append({"type": "file", "file": {"filename": filename, "file_data": data_url}})
            return
        elif isinstance(source, Base64Source) and source.media_type.startswith("text/"):
            try:
                text = base64.b64decode(source.data, validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                self.note("document")
                return
        elif isinstance(source, ContentSource):
            if header:
                parts.append({"type": "text", "text": header})
            if isinstance(source.content, str):
                if source.content:
                    parts.append({"type": "text", "text": source.content})
                return
            for inner in source.content:
                if isinstance(inner, TextBlock):
                    self.text_part(inner, parts)
                else:
                    self.image_part(inner, parts)
            return
        else:  # URL or file documents, other binary media
            self.note("document")
            return
        if header:
            text = header + "\n\n" + text
        if text:
            parts.append({"type": "text", "text": text})

    def tool_result(self, block: ToolResultBlock, images: list[Json]) -> Json:
        if block.cache_control is not None:
            self.note("cache_control")
        content = block.content
        if content is None:
            text = ""
        elif isinstance(content, str):
            text = content
        else:
            texts: list[Json] = []
            for inner in content:
                if isinstance(inner, TextBlock):
                    self.text_part(inner, texts)
                elif isinstance(inner, ImageBlock):
                    self.note("tool_result.image")
                    self.image_part(inner, images)
                else:
                    self.document_parts(inner, texts)
            for part in texts:
                if part["type"] != "text":  # a PDF inside a tool result: move it like images
                    self.note("tool_result.document")
                    images.append(part)
            text = "\n".join(p["text"] for p in texts if p["type"] == "text")
        if block.is_error:
            text = "Error: " + text if text else "Error"
        return {"role": "tool", "tool_call_id": safe_tool_id(block.tool_use_id), "content": text}

    # ------------------------------------------------------------------ assistant

    def assistant(self, msg: InputMessage, out: list[Json], *, last: bool) -> None:
        if last:
            self.note("assistant_prefill")
        if isinstance(msg.content, str):
            if msg.content:
                out.append({"role": "assistant", "content": msg.content})
            return
        texts: list[str] = []
        thinking: list[str] = []
        calls: list[Json] = []
        for block in msg.content:
            if isinstance(block, TextBlock):
                if block.cache_control is not None:
                    self.note("cache_control")
                if block.text:
                    texts.append(block.text)
            elif isinstance(block, ToolUseBlock):
                if block.cache_control is not None:
                    self.note("cache_control")
                arguments = orjson.dumps(block.input).decode()
                calls.append(
                    {
                        "id": safe_tool_id(block.id),
                        "type": "function",
                        "function": {"name": block.name, "arguments": arguments},
                    }
                )
            elif isinstance(block, ThinkingBlock):
                if block.thinking:
                    thinking.append(block.thinking)
            elif isinstance(block, RedactedThinkingBlock):
                self.note("redacted_thinking")
            elif isinstance(block, ImageBlock):  # not valid in an assistant turn
                self.note("image")
            elif isinstance(block, DocumentBlock):
                self.note("document")
            else:
                self.note("tool_result")
        if not texts and not calls:
            return  # thinking-only or empty: an empty assistant message is rejected upstream
        # "" rather than null beside tool_calls: OpenAI takes both, llama.cpp's server only "".
        message: Json = {"role": "assistant", "content": "\n\n".join(texts)}
        if thinking:
            message["reasoning_content"] = "\n\n".join(thinking)
        if calls:
            message["tool_calls"] = calls
        out.append(message)

    # ------------------------------------------------------------------ tools

    def tool(self, tool: Tool) -> Json:
        if tool.cache_control is not None:
            self.note("cache_control")
        function: Json = {"name": tool.name}
        if tool.description:
            function["description"] = tool.description
        function["parameters"] = (
            tool.input_schema
            if tool.input_schema is not None
            else {"type": "object", "properties": {}}
        )
        if tool.strict is not None:
            function["strict"] = tool.strict
        return {"type": "function", "function": function}
