"""Anthropic ``Message`` and stream events -> OpenAI Chat Completions: the OpenAI door's answer
when the target spoke Anthropic.

How it works
------------
``to_chat_completion`` turns a whole ``Message`` into a ``chat.completion`` dict: text blocks
joined into ``message.content`` (``null`` beside tool calls with no text), ``tool_use`` blocks
into ``message.tool_calls`` (arguments as JSON text), thinking into ``message.reasoning_content``
(the field vLLM and DeepSeek use, which ``openai_response`` reads in the other direction; the
official SDK keeps it as an extra attribute). Citations, redacted thinking and thinking
signatures have no OpenAI field: dropped and named.

``AnthropicToOpenAIChunks`` is the stream translator, one per answer: fed each Anthropic event,
it returns the ``chat.completion.chunk`` dicts to send, and performs no IO. Its states:

    IDLE --message_start--> STREAMING --message_delta--> FINISHING --message_stop--> DONE
    any other order, an error event, or too many blocks --> FAILED (raised, and again later)

``message_start`` gives the role chunk (``delta: {"role": "assistant", "content": ""}``); text
and thinking deltas give ``content`` / ``reasoning_content`` deltas; a ``tool_use`` block start
gives a tool-call delta with its own ``index`` (0, 1, 2... per call, not the block index), the
id, ``type: function``, the name and ``arguments: ""``, and each ``input_json_delta`` an argument
fragment for that index. ``message_delta`` gives the chunk with ``finish_reason`` and
``message_stop`` the usage chunk (``choices: []``) when the caller asked for
``stream_options.include_usage``. ``feed_many`` does the same for a batch and merges adjacent
deltas of the same kind, for a caller that fell behind (DESIGN.md, "Performance notes").

SSE framing is apart: ``sse_chunk`` (``data: {json}\\n\\n``) and ``SSE_DONE``.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from sidecar.errors import FailureKind, UpstreamError
from sidecar.model import (
    CitationsDelta,
    ContentBlockDelta,
    ContentBlockStart,
    ContentBlockStop,
    ErrorEvent,
    InputJsonDelta,
    Message,
    MessageDelta,
    MessageStart,
    MessageStop,
    Ping,
    RedactedThinkingBlock,
    SignatureDelta,
    StreamEvent,
    TextBlock,
    TextDelta,
    ThinkingBlock,
    ThinkingDelta,
    ToolUseBlock,
)

__all__ = [
    "FINISH_REASONS",
    "SSE_DONE",
    "TRANSITIONS",
    "AnthropicToOpenAIChunks",
    "Input",
    "State",
    "chat_usage",
    "finish_reason_for",
    "sse_chunk",
    "to_chat_completion",
]

Json = dict[str, Any]

# Anthropic stop_reason -> OpenAI finish_reason. Anything else (pause_turn, a newer value,
# none at all) -> "stop" with a note.
FINISH_REASONS: Mapping[str, str] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
SSE_DONE = b"data: [DONE]\n\n"
_THINKING_SEPARATOR = "\n\n"  # between two thinking blocks, as openai_request joins them


def _note(notes: list[str], name: str) -> None:
    if name not in notes:
        notes.append(name)


def finish_reason_for(stop_reason: str | None, notes: list[str]) -> str:
    """OpenAI's ``finish_reason`` for an Anthropic ``stop_reason``."""
    reason = FINISH_REASONS.get(stop_reason or "")
    if reason is not None:
        return reason
    _note(notes, "stop_reason.pause_turn" if stop_reason == "pause_turn" else "stop_reason")
    return "stop"


def chat_usage(
    input_tokens: int,
    output_tokens: int,
    cache_read: int | None = None,
    cache_creation: int | None = None,
) -> Json:
    """OpenAI usage: prompt tokens include the cached and cache-written ones, as OpenAI's do."""
    prompt = input_tokens + (cache_read or 0) + (cache_creation or 0)
    details: Json = {"cached_tokens": cache_read or 0}
    if cache_creation is not None:
        details["cache_write_tokens"] = cache_creation
    return {
        "prompt_tokens": prompt,
        "completion_tokens": output_tokens,
        "total_tokens": prompt + output_tokens,
        "prompt_tokens_details": details,
    }


def _tool_call(block: ToolUseBlock) -> Json:
    arguments = orjson.dumps(block.input).decode()
    return {
        "id": block.id,
        "type": "function",
        "function": {"name": block.name, "arguments": arguments},
    }


def to_chat_completion(
    message: Message, *, completion_id: str, created: int, model: str, notes: list[str]
) -> Json:
    """The ``chat.completion`` for ``message``; ``model`` is the name the caller asked for."""
    texts: list[str] = []
    reasoning: list[str] = []
    calls: list[Json] = []
    for block in message.content:
        if isinstance(block, TextBlock):
            if block.citations:
                _note(notes, "citations")
            texts.append(block.text)
        elif isinstance(block, ThinkingBlock):
            if block.signature:
                _note(notes, "thinking.signature")  # no OpenAI field takes it back
            if block.thinking:
                reasoning.append(block.thinking)
        elif isinstance(block, RedactedThinkingBlock):
            _note(notes, "redacted_thinking")
        else:
            calls.append(_tool_call(block))
    content: str | None = "".join(texts)
    if not content and calls:
        content = None
    out: Json = {"role": "assistant", "content": content, "refusal": None}
    if reasoning:
        out["reasoning_content"] = _THINKING_SEPARATOR.join(reasoning)
    if calls:
        out["tool_calls"] = calls
    usage = message.usage
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": out,
                "logprobs": None,
                "finish_reason": finish_reason_for(message.stop_reason, notes),
            }
        ],
        "usage": chat_usage(
            usage.input_tokens,
            usage.output_tokens,
            usage.cache_read_input_tokens,
            usage.cache_creation_input_tokens,
        ),
    }


def sse_chunk(chunk: Json) -> bytes:
    """One SSE frame as OpenAI sends it: ``data: {json}\\n\\n`` (no event name)."""
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


# --------------------------------------------------------------------------- the stream


class State(enum.Enum):
    IDLE = "idle"  # nothing yet
    STREAMING = "streaming"  # role chunk sent; blocks flowing
    FINISHING = "finishing"  # finish_reason sent; waiting for message_stop
    DONE = "done"  # usage sent (when asked); the caller sends [DONE]
    FAILED = "failed"  # an error was raised; later input raises it again


class Input(enum.Enum):
    MESSAGE_START = "message_start"
    BLOCK = "content_block"  # start, delta or stop
    MESSAGE_DELTA = "message_delta"
    MESSAGE_STOP = "message_stop"
    PING = "ping"


# (state, input) -> next state. Anything missing is an upstream protocol error.
TRANSITIONS: dict[tuple[State, Input], State] = {
    (State.IDLE, Input.MESSAGE_START): State.STREAMING,
    (State.IDLE, Input.PING): State.IDLE,
    (State.STREAMING, Input.BLOCK): State.STREAMING,
    (State.STREAMING, Input.PING): State.STREAMING,
    (State.STREAMING, Input.MESSAGE_DELTA): State.FINISHING,
    (State.FINISHING, Input.MESSAGE_DELTA): State.FINISHING,
    (State.FINISHING, Input.PING): State.FINISHING,
    (State.FINISHING, Input.MESSAGE_STOP): State.DONE,
    (State.DONE, Input.PING): State.DONE,
}

_INPUT_FOR: Mapping[type, Input] = {
    MessageStart: Input.MESSAGE_START,
    ContentBlockStart: Input.BLOCK,
    ContentBlockDelta: Input.BLOCK,
    ContentBlockStop: Input.BLOCK,
    MessageDelta: Input.MESSAGE_DELTA,
    MessageStop: Input.MESSAGE_STOP,
    Ping: Input.PING,
}

# What a started block is, for its deltas: a tool call (its OpenAI index, >= 0), or one of
# these. A thinking block after earlier reasoning owes a separator before its first text.
_TEXT = -1
_THINKING = -2
_THINKING_SEPARATED = -3
_OTHER = -4


class AnthropicToOpenAIChunks:
    """Feed Anthropic events, get ``chat.completion.chunk`` dicts; see the module docstring."""

    def __init__(
        self,
        *,
        completion_id: str,
        created: int,
        model: str,
        include_usage: bool = False,
        notes: list[str] | None = None,
        max_blocks: int = 4096,
    ) -> None:
        self.completion_id = completion_id
        self.created = created
        self.model = model
        self.include_usage = include_usage
        self.notes: list[str] = notes if notes is not None else []
        self.max_blocks = max_blocks
        self.state = State.IDLE
        self._error: UpstreamError | None = None
        self._blocks: dict[int, int] = {}  # Anthropic block index -> _TEXT / _THINKING / tool
        self._tool_calls = 0
        self._no_arguments: set[int] = set()  # tool blocks that sent no argument text yet
        self._reasoned = False  # some reasoning was sent: the next thinking block is separated
        self._input_tokens = 0
        self._output_tokens = 0
        self._cache_read: int | None = None
        self._cache_creation: int | None = None

    # ------------------------------------------------------------------ public API

    def feed(self, event: StreamEvent) -> list[Json]:
        """The chunks for one event (often none: pings, block stops)."""
        if self._error is not None:
            raise self._error
        if isinstance(event, ErrorEvent):
            raise self._fail(
                UpstreamError(
                    event.error.message or "upstream reported an error",
                    kind=FailureKind.STREAM_ERROR,
                    error_type=event.error.type or "api_error",
                )
            )
        was = self.state
        self._advance(_INPUT_FOR[type(event)], event)
        if isinstance(event, ContentBlockDelta):  # the common case first
            return self._delta(event)
        if isinstance(event, ContentBlockStart):
            return self._start(event)
        if isinstance(event, MessageStart):
            return self._message_start(event)
        if isinstance(event, MessageDelta):
            return self._message_delta(event, first=was is State.STREAMING)
        if isinstance(event, ContentBlockStop):
            return self._stop(event)
        if isinstance(event, MessageStop) and self.include_usage:
            return [self._usage_chunk()]
        return []

    def feed_many(self, events: Iterable[StreamEvent]) -> list[Json]:
        """The chunks for a batch, adjacent deltas of one kind merged into one chunk."""
        out: list[Json] = []
        for event in events:
            for chunk in self.feed(event):
                if not (out and _merge(out[-1], chunk)):
                    out.append(chunk)
        return out

    @property
    def done(self) -> bool:
        """``message_stop`` was seen: the caller ends the stream with ``SSE_DONE``."""
        return self.state is State.DONE

    # ------------------------------------------------------------------ transitions

    def _advance(self, event: Input, raw: StreamEvent) -> None:
        next_state = TRANSITIONS.get((self.state, event))
        if next_state is None:
            name = type(raw).__name__
            raise self._fail(
                UpstreamError(
                    f"upstream stream out of order: {name} in state {self.state.value}",
                    kind=FailureKind.INVALID_RESPONSE,
                )
            )
        self.state = next_state

    def _fail(self, error: UpstreamError) -> UpstreamError:
        self.state = State.FAILED
        self._error = error
        return error

    # ------------------------------------------------------------------ chunks

    def _chunk(self, delta: Json, finish_reason: str | None = None) -> Json:
        return {
            "id": self.completion_id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [
                {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            ],
        }

    def _message_start(self, event: MessageStart) -> list[Json]:
        usage = event.message.usage
        self._input_tokens = usage.input_tokens
        self._output_tokens = usage.output_tokens
        self._cache_read = usage.cache_read_input_tokens
        self._cache_creation = usage.cache_creation_input_tokens
        return [self._chunk({"role": "assistant", "content": ""})]

    def _start(self, event: ContentBlockStart) -> list[Json]:
        if event.index in self._blocks or len(self._blocks) >= self.max_blocks:
            raise self._fail(
                UpstreamError(
                    f"upstream stream: block {event.index} started twice or too many blocks",
                    kind=FailureKind.INVALID_RESPONSE,
                )
            )
        block = event.content_block
        if isinstance(block, TextBlock):
            self._blocks[event.index] = _TEXT
            if block.citations:
                _note(self.notes, "citations")
            return [self._chunk({"content": block.text})] if block.text else []
        if isinstance(block, ThinkingBlock):
            self._blocks[event.index] = _THINKING_SEPARATED if self._reasoned else _THINKING
            return self._reasoning(event.index, block.thinking)
        if isinstance(block, ToolUseBlock):
            self._blocks[event.index] = tool = self._tool_calls
            self._tool_calls += 1
            arguments = orjson.dumps(block.input).decode() if block.input else ""
            if not arguments:
                self._no_arguments.add(event.index)
            call = {
                "index": tool,
                "id": block.id,
                "type": "function",
                "function": {"name": block.name, "arguments": arguments},
            }
            return [self._chunk({"tool_calls": [call]})]
        self._blocks[event.index] = _OTHER
        _note(self.notes, "redacted_thinking")
        return []

    def _reasoning(self, index: int, text: str) -> list[Json]:
        if not text:
            return []
        if self._blocks[index] == _THINKING_SEPARATED:
            self._blocks[index] = _THINKING
            text = _THINKING_SEPARATOR + text
        self._reasoned = True
        return [self._chunk({"reasoning_content": text})]

    def _delta(self, event: ContentBlockDelta) -> list[Json]:
        kind = self._blocks.get(event.index)
        if kind is None:
            raise self._fail(
                UpstreamError(
                    f"upstream stream: a delta for block {event.index}, which was not started",
                    kind=FailureKind.INVALID_RESPONSE,
                )
            )
        delta = event.delta
        if isinstance(delta, TextDelta):
            return [self._chunk({"content": delta.text})] if delta.text else []
        if isinstance(delta, ThinkingDelta):
            return self._reasoning(event.index, delta.thinking)
        if isinstance(delta, InputJsonDelta):
            if kind < 0 or not delta.partial_json:
                return []
            self._no_arguments.discard(event.index)
            call = {"index": kind, "function": {"arguments": delta.partial_json}}
            return [self._chunk({"tool_calls": [call]})]
        if isinstance(delta, SignatureDelta):
            _note(self.notes, "thinking.signature")
        elif isinstance(delta, CitationsDelta):
            _note(self.notes, "citations")
        return []

    def _stop(self, event: ContentBlockStop) -> list[Json]:
        if event.index not in self._no_arguments:
            return []
        # A call with no input streams no JSON; OpenAI clients parse arguments: send "{}".
        self._no_arguments.discard(event.index)
        call = {"index": self._blocks[event.index], "function": {"arguments": "{}"}}
        return [self._chunk({"tool_calls": [call]})]

    def _message_delta(self, event: MessageDelta, *, first: bool) -> list[Json]:
        """The finish chunk (for the first message_delta only); usage is kept for the end."""
        usage = event.usage
        self._output_tokens = usage.output_tokens  # cumulative
        if usage.input_tokens is not None:
            self._input_tokens = usage.input_tokens
        if usage.cache_read_input_tokens is not None:
            self._cache_read = usage.cache_read_input_tokens
        if usage.cache_creation_input_tokens is not None:
            self._cache_creation = usage.cache_creation_input_tokens
        if not first:
            return []
        reason = finish_reason_for(event.delta.stop_reason, self.notes)
        return [self._chunk({}, finish_reason=reason)]

    def _usage_chunk(self) -> Json:
        return {
            "id": self.completion_id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [],
            "usage": chat_usage(
                self._input_tokens, self._output_tokens, self._cache_read, self._cache_creation
            ),
        }


def _merge(last: Json, chunk: Json) -> bool:
    """Fold ``chunk`` into ``last`` when both are one delta of the same kind; True if done."""
    if not last["choices"] or not chunk["choices"]:
        return False
    a, b = last["choices"][0], chunk["choices"][0]
    if a["finish_reason"] is not None or b["finish_reason"] is not None:
        return False
    da, db = a["delta"], b["delta"]
    if len(da) != 1 or len(db) != 1:
        return False
    for key in ("content", "reasoning_content"):
        if key in da and key in db:
            da[key] += db[key]
            return True
    if "tool_calls" in da and "tool_calls" in db:
        ca, cb = da["tool_calls"][0], db["tool_calls"][0]
        if ca["index"] == cb["index"] and "id" not in cb:
            ca["function"]["arguments"] += cb["function"]["arguments"]
            return True
    return False
