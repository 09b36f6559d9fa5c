"""The internal types: the Anthropic Messages API shapes, as frozen msgspec structs.

Both surfaces decode into these types and the engine and backends pass them around; nothing
else is used between layers. msgspec does the validation while it decodes (one pass over the
bytes, errors that name the JSON path), and encodes them back to the exact wire shape.

Content blocks, sources, deltas and stream events are tagged unions on their ``type`` field, so
an unknown ``type`` is rejected by the decoder with the path of the offending value. Request-side
structs omit unset optional fields when encoded (``omit_defaults``); the response ``Message``
keeps ``stop_reason``/``stop_sequence`` present even when null, as the Anthropic API does.

``Call`` is what a surface hands to the engine: the decoded request plus what came with it
(request id, chosen chain, deadline, headers to pass to a native Anthropic upstream).

Dialects. A call is in Anthropic's dialect, or in OpenAI's (it came through the OpenAI door:
``Call.openai_body``). Either way ``request`` is an Anthropic request, what every target that
does not speak the caller's dialect is sent, so the engine routes, validates and falls back the
same way. What comes back is ours (``Message``, ``StreamEvent``: translated), or an upstream's
own bytes in the caller's dialect with the little the engine reads of them: ``RawMessage`` and
``RawEvent`` from an Anthropic-protocol upstream, ``RawChatCompletion`` and ``RawChatChunk``
from an OpenAI-compatible one to an OpenAI caller (DESIGN.md, "Dialects").
"""

from __future__ import annotations

import dataclasses
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


def is_content_event(event: StreamItem) -> bool:
    """True for events that carry real content: the first one is the streaming commit point.

    A delta, or the start of a block that is content by itself (a tool call, a server tool's
    block, a redacted thinking block, or a text/thinking block that starts non-empty).
    ``message_start``, pings, empty block starts and event types we do not know are not: they
    are held back until content arrives. A relayed OpenAI chunk says so itself.
    """
    if type(event) is RawChatChunk:
        return event.content
    if type(event) is RawEvent:
        view = event.view
        if view.type == "content_block_delta":
            return True
        if view.type != "content_block_start" or view.content_block is None:
            return False
        kind = view.content_block.type
        if kind == "text":
            return bool(view.content_block.text)
        if kind == "thinking":
            return bool(view.content_block.thinking)
        return True
    if isinstance(event, ContentBlockDelta):
        return True
    if isinstance(event, ContentBlockStart):
        block = event.content_block
        if isinstance(block, TextBlock):
            return bool(block.text)
        if isinstance(block, ThinkingBlock):
            return bool(block.thinking)
        return True
    return False


# --------------------------------------------------------------------------- relayed answers


class BlockView(msgspec.Struct, frozen=True):
    """What the engine reads of a content block it relays: its type, whether it has content."""

    type: str
    text: str | None = None
    thinking: str | None = None


class DeltaView(msgspec.Struct, frozen=True):
    type: str | None = None  # content_block_delta's delta
    stop_reason: str | None = None  # message_delta's delta


class UsageView(msgspec.Struct, frozen=True):
    input_tokens: int | None = None
    output_tokens: int | None = None


class MessageView(msgspec.Struct, frozen=True):
    type: str
    stop_reason: str | None = None
    usage: UsageView | None = None


class ErrorView(msgspec.Struct, frozen=True):
    type: str = "api_error"
    message: str = ""


class EventView(msgspec.Struct, frozen=True):
    """The little the engine reads of one relayed stream event. Every value is an opaque
    string or number: an event, block, delta type or stop reason this sidecar has never heard
    of decodes as well as a known one, and fields it does not name are skipped."""

    type: str
    index: int | None = None
    content_block: BlockView | None = None
    delta: DeltaView | None = None
    message: MessageView | None = None
    usage: UsageView | None = None
    error: ErrorView | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class RawEvent:
    """One event of an upstream's own Anthropic stream, to relay as the upstream sent it.

    ``headers``: on the first event of a stream, the upstream response headers a caller
    should see (``anthropic-*``, ``request-id``)."""

    type: str
    data: bytes  # the event's JSON, byte for byte
    view: EventView
    headers: tuple[tuple[str, str], ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class RawMessage:
    """An upstream's own Anthropic answer, to relay as the upstream sent it."""

    body: bytes  # the message JSON, byte for byte
    view: MessageView
    headers: tuple[tuple[str, str], ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class RawChatChunk:
    """One frame of an OpenAI-compatible upstream's own stream, to relay to an OpenAI caller
    as the upstream sent it, with what the engine reads of it (``backends.openai_wire``)."""

    data: bytes  # the frame's payload, byte for byte: a chunk's JSON, or ``[DONE]``
    content: bool = False  # carries content: the first such frame is the commit point
    done: bool = False  # the end of a complete stream (``[DONE]``)
    input_tokens: int | None = None  # usage, when the frame carries it
    output_tokens: int | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class RawChatCompletion:
    """An OpenAI-compatible upstream's own ``chat.completion``, to relay to an OpenAI caller."""

    body: bytes  # the completion JSON, byte for byte
    input_tokens: int | None = None
    output_tokens: int | None = None


# What a stream carries: our own events (translated), or an upstream's relayed as they are.
StreamItem = StreamEvent | RawEvent | RawChatChunk
# What ``create`` answers: our own message (translated), or an upstream's relayed as it is.
Answer = Message | RawMessage | RawChatCompletion


def is_stop(event: StreamItem) -> bool:
    """True for ``message_stop`` (or a relayed OpenAI ``[DONE]``), the end of a complete stream."""
    if type(event) is RawEvent:
        return event.type == "message_stop"
    if type(event) is RawChatChunk:
        return event.done
    return type(event) is MessageStop


def answer_usage(answer: Answer) -> tuple[int | None, int | None]:
    """Input and output tokens of an answer, as far as it says."""
    if type(answer) is RawMessage:
        usage = answer.view.usage
        return (None, None) if usage is None else (usage.input_tokens, usage.output_tokens)
    if type(answer) is RawChatCompletion:
        return answer.input_tokens, answer.output_tokens
    assert isinstance(answer, Message)
    return answer.usage.input_tokens, answer.usage.output_tokens


def is_relayed_chat(first: Answer | StreamItem) -> bool:
    """Whether an answer (or a stream's first item) is an OpenAI-compatible upstream's own, in
    an OpenAI caller's dialect: then nothing of the caller's request was translated."""
    return type(first) is RawChatCompletion or type(first) is RawChatChunk


# --------------------------------------------------------------------------- the call


@dataclasses.dataclass(frozen=True, slots=True)
class Call:
    """One request as the engine sees it, whichever surface it came from."""

    request: MessagesRequest
    request_id: str
    chain: str | None = None  # x-anyllm-chain: a configured chain chosen by the caller
    deadline: float | None = None  # absolute, on the event loop's clock (loop.time())
    # Headers a native Anthropic upstream should see (anthropic-version, anthropic-beta).
    passthrough_headers: tuple[tuple[str, str], ...] = ()
    # The caller's JSON body when it came over HTTP: relayed as is to a native upstream.
    raw_body: bytes | None = None
    surface: str = "http"  # which front door it came through (for metrics and logs)
    # What was left out of ``request`` because the model does not know it (``block:TYPE``,
    # ``tool:TYPE``, ``thinking:TYPE``...): still in ``raw_body`` for a native upstream, named
    # in the degradation list by a translating one.
    unmodelled: tuple[str, ...] = ()
    # An OpenAI-dialect call (the OpenAI door): the caller's Chat Completions body, relayed as
    # is (model rewritten) by an OpenAI-compatible target. ``request`` is its translation, sent
    # to every other target, and ``raw_body`` is None. ``openai_notes``: what that translation
    # dropped or approximated, named in the degradation list unless the answer was relayed.
    openai_body: bytes | None = None
    openai_notes: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class CountCall:
    """One token-count request as the engine sees it (see ``Call``)."""

    request: CountTokensRequest
    request_id: str
    chain: str | None = None
    passthrough_headers: tuple[tuple[str, str], ...] = ()
    raw_body: bytes | None = None
    surface: str = "http"
    unmodelled: tuple[str, ...] = ()


# One decoder / encoder each, built once: msgspec compiles the type on construction.
request_decoder = msgspec.json.Decoder(MessagesRequest)
count_tokens_decoder = msgspec.json.Decoder(CountTokensRequest)
message_decoder = msgspec.json.Decoder(Message)
event_decoder: msgspec.json.Decoder[StreamEvent] = msgspec.json.Decoder(StreamEvent)
event_view_decoder = msgspec.json.Decoder(EventView)
message_view_decoder = msgspec.json.Decoder(MessageView)
json_encoder = msgspec.json.Encoder()
