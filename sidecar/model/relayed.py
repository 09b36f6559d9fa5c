"""Relayed answers: an upstream's own bytes in the caller's dialect, with the little the engine
reads of them (``sidecar.model`` re-exports them).

``RawMessage`` and ``RawEvent`` carry an Anthropic-protocol upstream's answer and stream events
byte for byte, with lenient views (``MessageView``, ``EventView``: every value an opaque string
or number, unknown fields skipped); ``RawChatCompletion`` and ``RawChatChunk`` carry an
OpenAI-compatible upstream's to an OpenAI caller. ``StreamItem`` and ``Answer`` are what the
engine passes on: ours (translated) or relayed; the helpers below read either.
"""

from __future__ import annotations

import msgspec

from .messages import (
    ContentBlockDelta,
    ContentBlockStart,
    Message,
    MessageStop,
    StreamEvent,
    TextBlock,
    ThinkingBlock,
)


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


class RawEvent(msgspec.Struct, frozen=True):
    """One event of an upstream's own Anthropic stream, to relay as the upstream sent it.

    ``headers``: on the first event of a stream, the upstream response headers a caller
    should see (``anthropic-*``, ``request-id``)."""

    type: str
    data: bytes  # the event's JSON, byte for byte
    view: EventView
    headers: tuple[tuple[str, str], ...] = ()


class RawMessage(msgspec.Struct, frozen=True):
    """An upstream's own Anthropic answer, to relay as the upstream sent it."""

    body: bytes  # the message JSON, byte for byte
    view: MessageView
    headers: tuple[tuple[str, str], ...] = ()


class RawChatChunk(msgspec.Struct, frozen=True):
    """One frame of an OpenAI-compatible upstream's own stream, to relay to an OpenAI caller
    as the upstream sent it, with what the engine reads of it (``backends.openai_wire``)."""

    data: bytes  # the frame's payload, byte for byte: a chunk's JSON, or ``[DONE]``
    content: bool = False  # carries content: the first such frame is the commit point
    done: bool = False  # the end of a complete stream (``[DONE]``)
    input_tokens: int | None = None  # usage, when the frame carries it
    output_tokens: int | None = None


class RawChatCompletion(msgspec.Struct, frozen=True):
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


event_view_decoder = msgspec.json.Decoder(EventView)
message_view_decoder = msgspec.json.Decoder(MessageView)
