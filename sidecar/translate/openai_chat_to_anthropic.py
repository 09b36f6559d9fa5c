"""OpenAI Chat Completions request -> Anthropic ``MessagesRequest``: the OpenAI door's way in
when the target speaks Anthropic (anthropic, bedrock, vertex).

How it works
------------
``to_anthropic_request`` decodes the body once into the wire structs of ``openai_chat_wire``
(msgspec validates as it goes; an error becomes ``InvalidRequestError`` whose message starts with
the field's path, e.g. ``messages[2].content: Expected `str | array`, got `int```), then builds
the Anthropic request:

* ``system`` and ``developer`` messages become ``system`` blocks, in order (one not at the start
  of the conversation is moved there: note ``system.position``).
* user, assistant and tool messages become turns; consecutive messages of the same Anthropic
  role are merged into one turn, so consecutive ``tool`` messages (and a user message right after
  them) make one user turn whose ``tool_result`` blocks come first.
* content parts: text; ``image_url`` with a ``data:`` URL -> base64 image, http(s) -> URL image;
  ``file`` with ``file_data`` -> a base64 document (a PDF unless the data URL says otherwise).
* ``tool`` messages -> ``tool_result`` blocks; one answering no earlier tool call is a 400
  naming its ``tool_call_id`` (OpenAI refuses it too).
* assistant ``tool_calls`` -> ``tool_use`` blocks (arguments parsed as in responses: a fence
  stripped, double encoding unwrapped, anything else ``{}`` with the note
  ``tool_calls.arguments``); the legacy ``function_call`` / ``function`` messages likewise,
  with a generated id pairing each call with its answer.
* tools, ``tool_choice``, ``parallel_tool_calls`` (``openai_chat_tools``), limits, stop,
  sampling, ``reasoning_effort``, ``response_format`` (``openai_chat_params``) and ``user`` map
  as the table in docs/translation.md says.

Whatever is dropped or approximated appends a stable name to ``notes`` once (the OpenAI field
name, e.g. ``seed``, ``logprobs``; ``field:NAME`` for top-level fields the door does not know).
Ids come from the caller; the only generated ones (legacy function calls) are derived from the
message position, so the output is deterministic.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from sidecar.errors import InvalidRequestError
from sidecar.model import (
    Base64Source,
    DocumentBlock,
    ImageBlock,
    InputMessage,
    MessagesRequest,
    OutputConfig,
    PlainTextSource,
    RequestBlock,
    RequestMetadata,
    TextBlock,
    ToolChoiceAny,
    ToolChoiceTool,
    ToolResultBlock,
    ToolResultContent,
    ToolUseBlock,
    UrlSource,
)
from sidecar.translate.openai_chat_params import (
    BUDGET_FOR_EFFORT,
    JSON_OBJECT_INSTRUCTION,
    AnthropicOptions,
    dropped,
    json_schema_format,
    reasoning,
    sampling,
    stop_sequences,
    system_value,
)
from sidecar.translate.openai_chat_tools import tool_choice_for, tools_for
from sidecar.translate.openai_chat_wire import (
    AssistantMessage,
    ChatRequestWire,
    DeveloperMessage,
    FilePart,
    FunctionMessage,
    ImagePart,
    InputAudioPart,
    ResponseFormatJsonObject,
    ResponseFormatJsonSchema,
    SystemMessage,
    TextPart,
    ToolMessage,
    UserMessage,
    chat_request_decoder,
    unknown_chat_fields,
)
from sidecar.translate.openai_request import safe_tool_id
from sidecar.translate.openai_response import parse_tool_arguments

__all__ = [
    "BUDGET_FOR_EFFORT",
    "JSON_OBJECT_INSTRUCTION",
    "AnthropicOptions",
    "ChatRequest",
    "to_anthropic_request",
]

Json = dict[str, Any]

_MSGSPEC_PATH = re.compile(r"^(.*) - at `\$\.?(.*)`$", re.DOTALL)
_MISSING = re.compile(r"^Object missing required field `(.*)`$")
_top_level = msgspec.json.Decoder(dict[str, msgspec.Raw])


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """The translated request and what the door needs to answer in OpenAI's shape."""

    request: MessagesRequest  # model = the caller's model (routing); stream set when asked
    stream: bool
    include_usage: bool  # stream_options.include_usage: a final usage chunk


def _note(notes: list[str], name: str) -> None:
    if name not in notes:
        notes.append(name)


def _invalid(path: str, problem: str) -> InvalidRequestError:
    return InvalidRequestError(f"{path}: {problem}", field=path)


def _decode(body: bytes | Mapping[str, Any]) -> tuple[ChatRequestWire, list[str]]:
    try:
        if isinstance(body, bytes | bytearray | memoryview):
            wire = chat_request_decoder.decode(body)
            keys: Sequence[str] = list(_top_level.decode(body))
        else:
            wire = msgspec.convert(body, ChatRequestWire)
            keys = list(body)
    except msgspec.DecodeError as exc:  # ValidationError is a DecodeError too
        text = str(exc)
        match = _MSGSPEC_PATH.match(text)
        problem, path = (match.group(1), match.group(2)) if match else (text, "")
        missing = _MISSING.match(problem)
        if missing is not None:  # name the missing field itself
            path = f"{path}.{missing.group(1)}" if path else missing.group(1)
            raise _invalid(path, "required") from exc
        if path:
            raise _invalid(path, problem) from exc
        if isinstance(exc, msgspec.ValidationError):
            raise InvalidRequestError(f"Invalid request: {text}") from exc
        raise InvalidRequestError(f"The request body is not valid JSON: {text}") from exc
    return wire, unknown_chat_fields(keys)


def to_anthropic_request(
    body: bytes | Mapping[str, Any],
    *,
    notes: list[str],
    options: AnthropicOptions | None = None,
) -> ChatRequest:
    """The Anthropic request for a Chat Completions ``body``; see the module doc."""
    options = options or AnthropicOptions()
    wire, unknown = _decode(body)
    for name in unknown:
        _note(notes, f"field:{name}")
    conv = _Converter(notes)
    conv.messages(wire)
    tools = tools_for(wire, notes)
    tool_choice, tools = tool_choice_for(wire, tools, notes)
    if not tools:
        tool_choice = None  # Anthropic refuses a choice without tools; it means nothing
    system = conv.system
    output_format: Json | None = None
    if isinstance(wire.response_format, ResponseFormatJsonSchema):
        output_format = json_schema_format(wire.response_format, notes)
    elif isinstance(wire.response_format, ResponseFormatJsonObject):
        _note(notes, "response_format.json_object")  # no JSON mode: asked for in the system
        system = [*system, TextBlock(text=JSON_OBJECT_INSTRUCTION)]
    forced_tool = isinstance(tool_choice, ToolChoiceAny | ToolChoiceTool)
    max_tokens, thinking, effort = reasoning(
        wire, options, notes, forced_tool=forced_tool, tool_loop=conv.tool_loop_without_thinking()
    )
    temperature, top_p, top_k = sampling(wire, notes, thinking=thinking is not None)
    output_config = None
    if effort is not None or output_format is not None:
        output_config = OutputConfig(effort=effort, format=output_format)
    dropped(wire, notes)
    user_id = wire.user or wire.safety_identifier
    include_usage = bool(wire.stream and wire.stream_options and wire.stream_options.include_usage)
    request = MessagesRequest(
        model=wire.model,
        messages=conv.turns(),
        max_tokens=max_tokens,
        system=system_value(system),
        tools=tools or None,
        tool_choice=tool_choice,
        temperature=temperature,
        top_p=top_p,
        top_k=top_k,
        stop_sequences=stop_sequences(wire.stop, notes),
        metadata=RequestMetadata(user_id=user_id) if user_id else None,
        thinking=thinking,
        output_config=output_config,
        stream=True if wire.stream else None,
    )
    return ChatRequest(request=request, stream=bool(wire.stream), include_usage=include_usage)


# --------------------------------------------------------------------------- messages


def _data_url(url: str, path: str) -> tuple[str, str]:
    """``data:<media type>[;...];base64,<data>`` -> (media type, data)."""
    header, sep, data = url[5:].partition(",")
    if not sep or not header.endswith(";base64"):
        raise _invalid(path, "a data URL must be base64: data:<media type>;base64,<data>")
    return header[: -len(";base64")].split(";")[0], data


class _Converter:
    """Per-request conversion of the messages: system blocks and merged turns."""

    __slots__ = ("_call_ids", "_pending_function", "_turns", "notes", "system")

    def __init__(self, notes: list[str]) -> None:
        self.notes = notes
        self.system: list[TextBlock] = []
        self._turns: list[tuple[str, list[RequestBlock]]] = []
        self._pending_function: str | None = None  # id of the last legacy function_call
        self._call_ids: set[str] = set()  # tool call ids seen so far, for the tool messages

    def note(self, name: str) -> None:
        _note(self.notes, name)

    def messages(self, wire: ChatRequestWire) -> None:
        for i, msg in enumerate(wire.messages):
            path = f"messages[{i}]"
            if not isinstance(msg, FunctionMessage) and getattr(msg, "name", None):
                self.note("messages.name")  # a function message's name is what it answers
            if isinstance(msg, SystemMessage | DeveloperMessage):
                self.system_message(msg)
            elif isinstance(msg, UserMessage):
                self.add("user", self.user(msg, path))
            elif isinstance(msg, AssistantMessage):
                self.add("assistant", self.assistant(msg, i, path))
            elif isinstance(msg, ToolMessage):
                self.add("user", [self.tool(msg, path)])
            elif isinstance(msg, FunctionMessage):
                self.add("user", [self.function(msg, path)])
        if not self._turns:
            raise _invalid("messages", "at least one user or assistant message is required")
        if self._turns[-1][0] == "assistant":
            self.note("assistant_prefill")  # Anthropic continues it; OpenAI starts a new one

    def add(self, role: str, blocks: list[RequestBlock]) -> None:
        if not blocks:
            return
        if self._turns and self._turns[-1][0] == role:
            self._turns[-1][1].extend(blocks)
        else:
            self._turns.append((role, blocks))

    def turns(self) -> list[InputMessage]:
        out = []
        for role, blocks in self._turns:
            content: str | list[RequestBlock] = blocks
            if len(blocks) == 1 and isinstance(blocks[0], TextBlock):
                content = blocks[0].text
            out.append(
                InputMessage(role="user" if role == "user" else "assistant", content=content)
            )
        return out

    def tool_loop_without_thinking(self) -> bool:
        """The conversation ends in tool results for an assistant turn with no thinking."""
        if len(self._turns) < 2 or self._turns[-1][0] != "user":
            return False
        # Assistant turns never hold thinking here: reasoning_content has no signature.
        return any(isinstance(b, ToolUseBlock) for b in self._turns[-2][1])

    # ------------------------------------------------------------------ system

    def system_message(self, msg: SystemMessage | DeveloperMessage) -> None:
        if self._turns:
            self.note("system.position")
        parts = [msg.content] if isinstance(msg.content, str) else [p.text for p in msg.content]
        self.system.extend(TextBlock(text=t) for t in parts if t)

    # ------------------------------------------------------------------ user

    def user(self, msg: UserMessage, path: str) -> list[RequestBlock]:
        if isinstance(msg.content, str):
            return [TextBlock(text=msg.content)] if msg.content else []
        blocks: list[RequestBlock] = []
        for j, part in enumerate(msg.content):
            ppath = f"{path}.content[{j}]"
            if isinstance(part, TextPart):
                if part.text:
                    blocks.append(TextBlock(text=part.text))
            elif isinstance(part, ImagePart):
                blocks.append(self.image(part, ppath))
            elif isinstance(part, FilePart):
                document = self.file(part, ppath)
                if document is not None:
                    blocks.append(document)
            elif isinstance(part, InputAudioPart):
                self.note("input_audio")
        return blocks

    def image(self, part: ImagePart, path: str) -> ImageBlock:
        url = part.image_url.url
        if part.image_url.detail not in (None, "auto"):
            self.note("image_url.detail")
        scheme = url[:8].lower()
        if scheme.startswith("data:"):
            media_type, data = _data_url(url, f"{path}.image_url.url")
            if not media_type.startswith("image/"):
                raise _invalid(f"{path}.image_url.url", f"not an image: {media_type!r}")
            return ImageBlock(source=Base64Source(media_type=media_type, data=data))
        if scheme.startswith(("https://", "http://")):
            return ImageBlock(source=UrlSource(url=url))
        raise _invalid(f"{path}.image_url.url", "expected an http(s) URL or a data: URL")

    def file(self, part: FilePart, path: str) -> DocumentBlock | None:
        ref = part.file
        if not ref.file_data:
            if ref.file_id:
                self.note("file.file_id")  # an OpenAI file id means nothing to Anthropic
                return None
            raise _invalid(f"{path}.file", "file_data or file_id is required")
        media_type, data = "application/pdf", ref.file_data
        if data.startswith("data:"):
            media_type, data = _data_url(data, f"{path}.file.file_data")
        if media_type == "text/plain":
            try:
                text = base64.b64decode(data, validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError) as exc:
                raise _invalid(f"{path}.file.file_data", "not base64 UTF-8 text") from exc
            return DocumentBlock(source=PlainTextSource(data=text))
        return DocumentBlock(source=Base64Source(media_type=media_type, data=data))

    # ------------------------------------------------------------------ assistant

    def assistant(self, msg: AssistantMessage, i: int, path: str) -> list[RequestBlock]:
        if msg.reasoning_content:
            self.note("reasoning_content")  # no signature: Anthropic cannot take it back
        if msg.audio is not None:
            self.note("audio")
        texts: list[str] = []
        if isinstance(msg.content, str):
            texts.append(msg.content)
        elif msg.content is not None:
            texts += [p.text if isinstance(p, TextPart) else p.refusal for p in msg.content]
        if msg.refusal and not any(texts):
            texts.append(msg.refusal)
        blocks: list[RequestBlock] = [TextBlock(text=t) for t in texts if t]
        for j, call in enumerate(msg.tool_calls or ()):
            cpath = f"{path}.tool_calls[{j}]"
            if call.type != "function":
                raise _invalid(f"{cpath}.type", f"{call.type!r} tool calls cannot be sent")
            if call.function is None:
                raise _invalid(f"{cpath}.function", "required for a function tool call")
            self._call_ids.add(safe_tool_id(call.id))
            blocks.append(
                ToolUseBlock(
                    id=safe_tool_id(call.id),
                    name=call.function.name,
                    input=self.arguments(call.function.arguments),
                )
            )
        if msg.function_call is not None:
            self._pending_function = f"call_function_{i}"
            blocks.append(
                ToolUseBlock(
                    id=self._pending_function,
                    name=msg.function_call.name,
                    input=self.arguments(msg.function_call.arguments),
                )
            )
        return blocks

    def arguments(self, text: str) -> dict[str, Any]:
        scratch: list[str] = []
        value = parse_tool_arguments(text, scratch)
        if scratch:
            self.note("tool_calls.arguments")
        return value

    # ------------------------------------------------------------------ tool results

    def tool(self, msg: ToolMessage, path: str) -> ToolResultBlock:
        tool_use_id = safe_tool_id(msg.tool_call_id)
        if tool_use_id not in self._call_ids:  # OpenAI refuses it too; Anthropic would 400
            raise _invalid(
                f"{path}.tool_call_id",
                f"{msg.tool_call_id!r} answers no tool call of an earlier assistant message",
            )
        if isinstance(msg.content, str):
            return ToolResultBlock(tool_use_id=tool_use_id, content=msg.content or None)
        blocks: list[ToolResultContent] = [TextBlock(text=p.text) for p in msg.content if p.text]
        return ToolResultBlock(tool_use_id=tool_use_id, content=blocks or None)

    def function(self, msg: FunctionMessage, path: str) -> ToolResultBlock:
        if self._pending_function is None:
            raise _invalid(path, "a function message must follow an assistant function_call")
        tool_use_id, self._pending_function = self._pending_function, None
        return ToolResultBlock(tool_use_id=tool_use_id, content=msg.content or None)
