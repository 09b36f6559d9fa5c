"""The Anthropic Messages API shapes, as frozen msgspec structs (``sidecar.model`` re-exports
them).

msgspec does the validation while it decodes (one pass over the bytes, errors that name the
JSON path), and encodes them back to the exact wire shape. Content blocks, sources, deltas and
stream events are tagged unions on their ``type`` field, so an unknown ``type`` is rejected by
the strict decoder with the path of the offending value (``translate.anthropic_request`` then
decodes leniently). Request-side structs omit unset optional fields when encoded
(``omit_defaults``); the response ``Message`` keeps ``stop_reason``/``stop_sequence`` present
even when null, as the Anthropic API does.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

# --------------------------------------------------------------------------- blocks


class CacheControl(msgspec.Struct, frozen=True, omit_defaults=True):
    type: str = "ephemeral"
    ttl: str | None = None


class Base64Source(msgspec.Struct, frozen=True, tag="base64", tag_field="type"):
    media_type: str
    data: str


class UrlSource(msgspec.Struct, frozen=True, tag="url", tag_field="type"):
    url: str


class PlainTextSource(msgspec.Struct, frozen=True, tag="text", tag_field="type"):
    data: str
    media_type: str = "text/plain"


class ContentSource(msgspec.Struct, frozen=True, tag="content", tag_field="type"):
    content: str | list[TextBlock | ImageBlock]


class FileSource(msgspec.Struct, frozen=True, tag="file", tag_field="type"):
    file_id: str


ImageSource = Base64Source | UrlSource | FileSource
DocumentSource = Base64Source | UrlSource | PlainTextSource | ContentSource | FileSource


class TextBlock(msgspec.Struct, frozen=True, omit_defaults=True, tag="text", tag_field="type"):
    text: str
    cache_control: CacheControl | None = None
    citations: list[dict[str, Any]] | None = None


class ImageBlock(msgspec.Struct, frozen=True, omit_defaults=True, tag="image", tag_field="type"):
    source: ImageSource
    cache_control: CacheControl | None = None


class DocumentBlock(
    msgspec.Struct, frozen=True, omit_defaults=True, tag="document", tag_field="type"
):
    source: DocumentSource
    title: str | None = None
    context: str | None = None
    citations: dict[str, Any] | None = None
    cache_control: CacheControl | None = None


class ToolUseBlock(
    msgspec.Struct, frozen=True, omit_defaults=True, tag="tool_use", tag_field="type"
):
    id: str
    name: str
    input: dict[str, Any]
    cache_control: CacheControl | None = None


ToolResultContent = TextBlock | ImageBlock | DocumentBlock


class ToolResultBlock(
    msgspec.Struct, frozen=True, omit_defaults=True, tag="tool_result", tag_field="type"
):
    tool_use_id: str
    content: str | list[ToolResultContent] | None = None
    is_error: bool | None = None
    cache_control: CacheControl | None = None


class ThinkingBlock(msgspec.Struct, frozen=True, tag="thinking", tag_field="type"):
    thinking: str
    signature: str = ""


class RedactedThinkingBlock(msgspec.Struct, frozen=True, tag="redacted_thinking", tag_field="type"):
    data: str


RequestBlock = (
    TextBlock
    | ImageBlock
    | DocumentBlock
    | ToolUseBlock
    | ToolResultBlock
    | ThinkingBlock
    | RedactedThinkingBlock
)
ResponseBlock = TextBlock | ToolUseBlock | ThinkingBlock | RedactedThinkingBlock

# "system": a system message inside the conversation, as newer clients (Claude Code) send.
Role = Literal["user", "assistant", "system"]


class InputMessage(msgspec.Struct, frozen=True):
    role: Role
    content: str | list[RequestBlock]


# --------------------------------------------------------------------------- request


class Tool(msgspec.Struct, frozen=True, omit_defaults=True):
    """A client tool. Server tools (``type: web_search_...``) carry a ``type`` and no schema."""

    name: str
    input_schema: dict[str, Any] | None = None
    description: str | None = None
    type: str | None = None
    cache_control: CacheControl | None = None
    defer_loading: bool | None = None  # a placeholder the client loads later (Claude Code)
    strict: bool | None = None  # structured outputs: the tool's input follows the schema exactly


class ToolChoiceAuto(msgspec.Struct, frozen=True, omit_defaults=True, tag="auto", tag_field="type"):
    disable_parallel_tool_use: bool | None = None


class ToolChoiceAny(msgspec.Struct, frozen=True, omit_defaults=True, tag="any", tag_field="type"):
    disable_parallel_tool_use: bool | None = None


class ToolChoiceTool(msgspec.Struct, frozen=True, omit_defaults=True, tag="tool", tag_field="type"):
    name: str
    disable_parallel_tool_use: bool | None = None


class ToolChoiceNone(msgspec.Struct, frozen=True, tag="none", tag_field="type"):
    pass


ToolChoice = ToolChoiceAuto | ToolChoiceAny | ToolChoiceTool | ToolChoiceNone


class ThinkingEnabled(
    msgspec.Struct, frozen=True, omit_defaults=True, tag="enabled", tag_field="type"
):
    budget_tokens: int
    display: str | None = None


class ThinkingAdaptive(
    msgspec.Struct, frozen=True, omit_defaults=True, tag="adaptive", tag_field="type"
):
    """The model decides how much to think (with ``output_config.effort`` as a hint)."""

    display: str | None = None


class ThinkingDisabled(msgspec.Struct, frozen=True, tag="disabled", tag_field="type"):
    pass


ThinkingConfig = ThinkingEnabled | ThinkingAdaptive | ThinkingDisabled


class OutputConfig(msgspec.Struct, frozen=True, omit_defaults=True):
    effort: str | None = None  # low | medium | high | max
    # Structured outputs: {"type": "json_schema", "schema": {...}}
    format: dict[str, Any] | None = None


class RequestMetadata(msgspec.Struct, frozen=True, omit_defaults=True):
    user_id: str | None = None


class MessagesRequest(msgspec.Struct, frozen=True, omit_defaults=True):
    model: str
    messages: list[InputMessage]
    max_tokens: int
    system: str | list[TextBlock] | None = None
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop_sequences: list[str] | None = None
    metadata: RequestMetadata | None = None
    thinking: ThinkingConfig | None = None
    output_config: OutputConfig | None = None
    stream: bool | None = None


class CountTokensRequest(msgspec.Struct, frozen=True, omit_defaults=True):
    model: str
    messages: list[InputMessage]
    system: str | list[TextBlock] | None = None
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    thinking: ThinkingConfig | None = None


# --------------------------------------------------------------------------- response


StopReason = Literal["end_turn", "max_tokens", "stop_sequence", "tool_use", "pause_turn", "refusal"]


class Usage(msgspec.Struct, frozen=True):
    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None


class Message(msgspec.Struct, frozen=True, kw_only=True, tag="message", tag_field="type"):
    id: str
    role: Literal["assistant"] = "assistant"
    model: str
    content: list[ResponseBlock]
    stop_reason: StopReason | None = None
    stop_sequence: str | None = None
    usage: Usage = Usage()


class TokenCount(msgspec.Struct, frozen=True):
    input_tokens: int
    estimated: bool = False


# --------------------------------------------------------------------------- stream events


class TextDelta(msgspec.Struct, frozen=True, tag="text_delta", tag_field="type"):
    text: str


class InputJsonDelta(msgspec.Struct, frozen=True, tag="input_json_delta", tag_field="type"):
    partial_json: str


class ThinkingDelta(msgspec.Struct, frozen=True, tag="thinking_delta", tag_field="type"):
    thinking: str


class SignatureDelta(msgspec.Struct, frozen=True, tag="signature_delta", tag_field="type"):
    signature: str


class CitationsDelta(msgspec.Struct, frozen=True, tag="citations_delta", tag_field="type"):
    citation: dict[str, Any]


BlockDelta = TextDelta | InputJsonDelta | ThinkingDelta | SignatureDelta | CitationsDelta


class MessageStart(msgspec.Struct, frozen=True, tag="message_start", tag_field="type"):
    message: Message


class ContentBlockStart(msgspec.Struct, frozen=True, tag="content_block_start", tag_field="type"):
    index: int
    content_block: ResponseBlock


class ContentBlockDelta(msgspec.Struct, frozen=True, tag="content_block_delta", tag_field="type"):
    index: int
    delta: BlockDelta


class ContentBlockStop(msgspec.Struct, frozen=True, tag="content_block_stop", tag_field="type"):
    index: int


class MessageDeltaBody(msgspec.Struct, frozen=True):
    stop_reason: StopReason | None = None
    stop_sequence: str | None = None


class MessageDeltaUsage(msgspec.Struct, frozen=True, omit_defaults=True):
    output_tokens: int  # required, so always encoded (a default 0 would be omitted: invalid)
    input_tokens: int | None = None
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None


class MessageDelta(msgspec.Struct, frozen=True, tag="message_delta", tag_field="type"):
    delta: MessageDeltaBody
    usage: MessageDeltaUsage


class MessageStop(msgspec.Struct, frozen=True, tag="message_stop", tag_field="type"):
    pass


class Ping(msgspec.Struct, frozen=True, tag="ping", tag_field="type"):
    pass


class ErrorBody(msgspec.Struct, frozen=True):
    type: str
    message: str


class ErrorEvent(msgspec.Struct, frozen=True, tag="error", tag_field="type"):
    error: ErrorBody


StreamEvent = (
    MessageStart
    | ContentBlockStart
    | ContentBlockDelta
    | ContentBlockStop
    | MessageDelta
    | MessageStop
    | Ping
    | ErrorEvent
)


# One decoder / encoder each, built once: msgspec compiles the type on construction.
request_decoder = msgspec.json.Decoder(MessagesRequest)
count_tokens_decoder = msgspec.json.Decoder(CountTokensRequest)
message_decoder = msgspec.json.Decoder(Message)
event_decoder: msgspec.json.Decoder[StreamEvent] = msgspec.json.Decoder(StreamEvent)
json_encoder = msgspec.json.Encoder()
