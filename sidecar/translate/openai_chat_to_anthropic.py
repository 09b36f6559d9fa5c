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
* assistant ``tool_calls`` -> ``tool_use`` blocks (arguments parsed as in responses: a fence
  stripped, double encoding unwrapped, anything else ``{}`` with the note
  ``tool_calls.arguments``); the legacy ``function_call`` / ``function`` messages likewise,
  with a generated id pairing each call with its answer.
* tools, ``tool_choice``, ``parallel_tool_calls``, limits, stop, sampling, ``reasoning_effort``,
  ``response_format`` and ``user`` map as the table in docs/translation.md says.

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
    ThinkingAdaptive,
    ThinkingConfig,
    ThinkingEnabled,
    ToolChoiceAny,
    ToolChoiceTool,
    ToolResultBlock,
    ToolResultContent,
    ToolUseBlock,
    UrlSource,
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

# reasoning_effort -> thinking.budget_tokens (the inverse of openai_request.reasoning_effort_for:
# each budget maps back to its own effort). Anthropic's minimum budget is 1024.
BUDGET_FOR_EFFORT: Mapping[str, int] = {
    "minimal": 1024,
    "low": 2048,
    "medium": 8192,
    "high": 16384,
    "xhigh": 32000,
    "max": 32000,
}
# reasoning_effort -> output_config.effort, for adaptive thinking.
_ADAPTIVE_EFFORT: Mapping[str, str] = {
    "minimal": "low",
    "low": "low",
    "medium": "medium",
    "high": "high",
    "xhigh": "xhigh",
    "max": "max",
}
_MIN_BUDGET = 1024
JSON_OBJECT_INSTRUCTION = "Respond with a single valid JSON object and nothing else."
_MSGSPEC_PATH = re.compile(r"^(.*) - at `\$\.?(.*)`$", re.DOTALL)
_MISSING = re.compile(r"^Object missing required field `(.*)`$")
_top_level = msgspec.json.Decoder(dict[str, msgspec.Raw])


@dataclass(frozen=True, slots=True)
class AnthropicOptions:
    """What the Anthropic target accepts; the defaults suit every current Claude model."""

    # OpenAI's max_tokens is optional, Anthropic's is not. 4096 is the largest output every
    # Claude model still served accepts (Claude 3 Haiku's limit); set it higher per target.
    default_max_tokens: int = 4096
    # reasoning_effort as adaptive thinking + output_config.effort (Claude 4.6 and later)
    # instead of thinking.budget_tokens (every thinking model).
    adaptive_thinking: bool = False


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
    system = conv.system
    output_format: Json | None = None
    if isinstance(wire.response_format, ResponseFormatJsonSchema):
        output_format = _json_schema_format(wire.response_format, notes)
    elif isinstance(wire.response_format, ResponseFormatJsonObject):
        _note(notes, "response_format.json_object")  # no JSON mode: asked for in the system
        system = [*system, TextBlock(text=JSON_OBJECT_INSTRUCTION)]
    forced_tool = isinstance(tool_choice, ToolChoiceAny | ToolChoiceTool)
    max_tokens, thinking, effort = _reasoning(wire, options, notes, forced_tool, conv)
    temperature, top_p, top_k = _sampling(wire, notes, thinking=thinking is not None)
    output_config = None
    if effort is not None or output_format is not None:
        output_config = OutputConfig(effort=effort, format=output_format)
    _dropped(wire, notes)
    user_id = wire.user or wire.safety_identifier
    include_usage = bool(wire.stream_options and wire.stream_options.include_usage)
    request = MessagesRequest(
        model=wire.model,
        messages=conv.turns(),
        max_tokens=max_tokens,
        system=_system_value(system),
        tools=tools or None,
        tool_choice=tool_choice if tools else None,
        temperature=temperature,
        top_p=top_p,
        top_k=top_k,
        stop_sequences=_stop(wire.stop, notes),
        metadata=RequestMetadata(user_id=user_id) if user_id else None,
        thinking=thinking,
        output_config=output_config,
        stream=True if wire.stream else None,
    )
    return ChatRequest(request=request, stream=bool(wire.stream), include_usage=include_usage)


# --------------------------------------------------------------------------- top-level fields


def _system_value(blocks: list[TextBlock]) -> str | list[TextBlock] | None:
    if not blocks:
        return None
    if len(blocks) == 1:
        return blocks[0].text
    return blocks


def _json_schema_format(fmt: ResponseFormatJsonSchema, notes: list[str]) -> Json:
    spec = fmt.json_schema
    if spec.description:
        _note(notes, "response_format.json_schema.description")
    # Anthropic's structured outputs are always strict; the schema name is only a label.
    schema = spec.schema if spec.schema is not None else {"type": "object"}
    return {"type": "json_schema", "schema": schema}


def _stop(stop: str | list[str] | None, notes: list[str]) -> list[str] | None:
    values = [stop] if isinstance(stop, str) else list(stop or ())
    # Anthropic rejects a stop sequence made only of whitespace.
    kept = [s for s in values if s and not s.isspace()]
    if len(kept) < len(values):
        _note(notes, "stop")
    return kept or None


def _reasoning(
    wire: ChatRequestWire,
    options: AnthropicOptions,
    notes: list[str],
    forced_tool: bool,
    conv: _Converter,
) -> tuple[int, ThinkingConfig | None, str | None]:
    """max_tokens, the thinking config and output_config.effort for ``reasoning_effort``."""
    asked = wire.max_completion_tokens or wire.max_tokens
    effort = wire.reasoning_effort
    if effort is None or effort == "none":
        if asked is None:
            _note(notes, "max_tokens.default")
        return asked or options.default_max_tokens, None, None
    if effort not in BUDGET_FOR_EFFORT:  # a level newer than this table
        _note(notes, "reasoning_effort")
        effort = "medium"
    budget = BUDGET_FOR_EFFORT[effort]
    if asked is None:
        _note(notes, "max_tokens.default")
    max_tokens = asked or options.default_max_tokens + budget
    # Anthropic refuses thinking with a forced tool, and in a tool loop whose last assistant
    # turn has no thinking block to send back (OpenAI clients have none to send).
    if forced_tool or conv.tool_loop_without_thinking():
        _note(notes, "reasoning_effort")
        return max_tokens, None, None
    if options.adaptive_thinking:
        return max_tokens, ThinkingAdaptive(), _ADAPTIVE_EFFORT[effort]
    _note(notes, "reasoning_effort")  # a level becomes a token budget: approximate
    if asked is not None:
        # Thinking counts against max_tokens: keep at least half of the caller's for the answer.
        budget = min(budget, asked // 2)
    if budget < _MIN_BUDGET:  # no room to think within the caller's max_tokens
        return max_tokens, None, None
    return max_tokens, ThinkingEnabled(budget_tokens=budget), None


def _sampling(
    wire: ChatRequestWire, notes: list[str], *, thinking: bool
) -> tuple[float | None, float | None, int | None]:
    temperature, top_p, top_k = wire.temperature, wire.top_p, wire.top_k
    if temperature is not None and temperature > 1:  # OpenAI's range is 0-2, Anthropic's 0-1
        _note(notes, "temperature")
        temperature = 1.0
    if thinking:  # Anthropic: thinking takes no temperature or top_k, and top_p >= 0.95
        if temperature is not None and temperature != 1:
            _note(notes, "temperature")
            temperature = None
        if top_p is not None and top_p < 0.95:
            _note(notes, "top_p")
            top_p = None
        if top_k is not None:
            _note(notes, "top_k")
            top_k = None
    return temperature, top_p, top_k


def _dropped(wire: ChatRequestWire, notes: list[str]) -> None:
    """Name the fields Anthropic has no equivalent for, when they ask for something."""
    checks: tuple[tuple[str, bool], ...] = (
        ("n", (wire.n or 1) > 1),
        ("logprobs", bool(wire.logprobs)),
        ("top_logprobs", wire.top_logprobs is not None),
        ("seed", wire.seed is not None),
        ("presence_penalty", bool(wire.presence_penalty)),
        ("frequency_penalty", bool(wire.frequency_penalty)),
        ("logit_bias", bool(wire.logit_bias)),
        ("audio", wire.audio is not None),
        ("modalities", any(m != "text" for m in wire.modalities or ())),
        ("metadata", bool(wire.metadata)),
        ("store", bool(wire.store)),
        ("service_tier", wire.service_tier is not None),
        ("prediction", wire.prediction is not None),
        ("web_search_options", wire.web_search_options is not None),
        ("verbosity", wire.verbosity is not None),
        ("prompt_cache_key", wire.prompt_cache_key is not None),
        ("prompt_cache_retention", wire.prompt_cache_retention is not None),
    )
    for name, asked in checks:
        if asked:
            _note(notes, name)


# --------------------------------------------------------------------------- messages


def _data_url(url: str, path: str) -> tuple[str, str]:
    """``data:<media type>[;...];base64,<data>`` -> (media type, data)."""
    header, sep, data = url[5:].partition(",")
    if not sep or not header.endswith(";base64"):
        raise _invalid(path, "a data URL must be base64: data:<media type>;base64,<data>")
    return header[: -len(";base64")].split(";")[0], data


class _Converter:
    """Per-request conversion of the messages: system blocks and merged turns."""

    __slots__ = ("_pending_function", "_turns", "notes", "system")

    def __init__(self, notes: list[str]) -> None:
        self.notes = notes
        self.system: list[TextBlock] = []
        self._turns: list[tuple[str, list[RequestBlock]]] = []
        self._pending_function: str | None = None  # id of the last legacy function_call

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
                self.add("user", [self.tool(msg)])
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
            if call.type != "function" or call.function is None:
                raise _invalid(f"{cpath}.type", f"{call.type!r} tool calls cannot be sent")
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

    def tool(self, msg: ToolMessage) -> ToolResultBlock:
        tool_use_id = safe_tool_id(msg.tool_call_id)
        if isinstance(msg.content, str):
            return ToolResultBlock(tool_use_id=tool_use_id, content=msg.content or None)
        blocks: list[ToolResultContent] = [TextBlock(text=p.text) for p in msg.content if p.text]
        return ToolResultBlock(tool_use_id=tool_use_id, content=blocks or None)

    def function(self, msg: FunctionMessage, path: str) -> ToolResultBlock:
        if self._pending_function is None:
            raise _invalid(path, "a function message must follow an assistant function_call")
        tool_use_id, self._pending_function = self._pending_function, None
        return ToolResultBlock(tool_use_id=tool_use_id, content=msg.content or None)
