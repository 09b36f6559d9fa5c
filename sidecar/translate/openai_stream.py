"""OpenAI Chat Completions stream chunks -> Anthropic stream events: an explicit state machine.

Theory of operation
-------------------
One ``OpenAIStreamTranslator`` per upstream attempt. The caller feeds it the ``data:`` payload of
every SSE frame (the JSON of a ``chat.completion.chunk``, or the literal ``[DONE]``) and calls
``finish()`` when the upstream body ends; each call returns the Anthropic events it produced.
It performs no IO and reads no clock; ids come in through the constructor.

The message's life is a small table of states (``State``) and inputs (``Input``):

    IDLE --chunk--> STREAMING --finish_reason--> FINISHED --[DONE] / end--> DONE
                        |                            |
                        +--[DONE] / end--> INCOMPLETE error (a stream cut short)
    any state --error frame / bad JSON--> FAILED (the error is raised, and again on later input)

``message_start`` is sent lazily with the first chunk. ``message_delta`` and ``message_stop``
wait for ``[DONE]`` (or the end of the body once a ``finish_reason`` was seen): OpenAI sends its
usage chunk (``choices: []``) *after* the chunk carrying ``finish_reason``, so stopping at
``finish_reason`` would report zero tokens. Input after DONE is ignored.

Content blocks. A text or thinking block stays open while deltas of its kind keep coming and is
stopped when anything else starts. Tool calls are told apart by their upstream id when it is new
and non-empty (some servers put every call at index 0), else by ``index``, else they continue the
last call (servers that omit ``index``); ids repeated as ``""`` on every chunk are ignored. A tool
block starts once its name is known; arguments that came before are sent right after the start.
When a new call starts, an open call whose arguments already form complete JSON is stopped (the
usual sequential case, exactly like Anthropic's own streams); one whose arguments are still
incomplete stays open, so servers that interleave calls keep streaming into both blocks by their
own ``index``. Block indices are assigned at start, so they strictly increase, and each started
block is stopped exactly once, at the latest when the message ends.
"""

from __future__ import annotations

import enum

import msgspec
import orjson

from sidecar.errors import FailureKind, UpstreamError
from sidecar.model import (
    ContentBlockDelta,
    ContentBlockStart,
    ContentBlockStop,
    InputJsonDelta,
    Message,
    MessageDelta,
    MessageDeltaBody,
    MessageDeltaUsage,
    MessageStart,
    MessageStop,
    StreamEvent,
    TextBlock,
    TextDelta,
    ThinkingBlock,
    ThinkingDelta,
    ToolUseBlock,
    Usage,
)
from sidecar.translate.openai_response import (
    WireChoice,
    WireToolCall,
    WireUsage,
    stop_reason_for,
    tool_id_for,
    upstream_error_in_body,
    usage_from_wire,
    wire_decoder,
)

__all__ = ["Input", "OpenAIStreamTranslator", "State"]


class State(enum.Enum):
    IDLE = "idle"  # nothing received yet
    STREAMING = "streaming"  # message_start sent; no finish_reason yet
    FINISHED = "finished"  # finish_reason seen; waiting for usage and [DONE]
    DONE = "done"  # message_stop sent; later input is ignored
    FAILED = "failed"  # an error was raised; later input raises it again


class Input(enum.Enum):
    CHUNK = "chunk"
    FINISH_REASON = "finish_reason"
    DONE_MARKER = "[DONE]"
    END = "end"


# (state, input) -> next state. Anything missing is a stream cut short: INCOMPLETE.
TRANSITIONS: dict[tuple[State, Input], State] = {
    (State.IDLE, Input.CHUNK): State.STREAMING,
    (State.STREAMING, Input.CHUNK): State.STREAMING,
    (State.STREAMING, Input.FINISH_REASON): State.FINISHED,
    (State.FINISHED, Input.CHUNK): State.FINISHED,
    (State.FINISHED, Input.FINISH_REASON): State.FINISHED,
    (State.FINISHED, Input.DONE_MARKER): State.DONE,
    (State.FINISHED, Input.END): State.DONE,
    (State.DONE, Input.CHUNK): State.DONE,
    (State.DONE, Input.DONE_MARKER): State.DONE,
    (State.DONE, Input.END): State.DONE,
}


class _Kind(enum.Enum):
    TEXT = "text"
    THINKING = "thinking"


class _Call:
    """One upstream tool call and the block it maps to."""

    __slots__ = ("args", "block", "closed", "id", "name", "upstream_id")

    def __init__(self, call_id: str, upstream_id: str | None) -> None:
        self.id = call_id
        self.upstream_id = upstream_id
        self.name = ""
        self.block: int | None = None  # block index once started
        self.args: list[str] = []  # argument fragments received so far
        self.closed = False

    def args_complete(self) -> bool:
        try:
            orjson.loads("".join(self.args))
        except orjson.JSONDecodeError:
            return False
        return True


_DONE = (b"[DONE]", "[DONE]")


class OpenAIStreamTranslator:
    """Feed OpenAI chunk payloads, get Anthropic events; see the module docstring."""

    def __init__(
        self,
        *,
        message_id: str,
        model: str,
        input_tokens: int = 0,
        notes: list[str] | None = None,
    ) -> None:
        self.message_id = message_id
        self.model = model
        self.input_tokens = input_tokens
        self.notes: list[str] = notes if notes is not None else []
        self.state = State.IDLE
        self._error: UpstreamError | None = None
        self._next_block = 0
        self._open_kind: _Kind | None = None  # the open text / thinking block, if any
        self._open_index = 0
        self._open_calls: list[_Call] = []  # started, not yet stopped, in block order
        self._calls: list[_Call] = []
        self._by_id: dict[str, _Call] = {}
        self._by_index: dict[int, _Call] = {}
        self._finish_reason: str | None = None
        self._vllm_stop: str | int | None = None
        self._refused = False
        self._usage: WireUsage | None = None
        self._emitted_chars = 0  # for an output estimate when the upstream sends no usage

    # ------------------------------------------------------------------ public API

    def feed(self, chunk: bytes | str) -> list[StreamEvent]:
        """Consume one SSE data payload (a chunk's JSON, or ``[DONE]``)."""
        if self._error is not None:
            raise self._error
        if len(chunk) < 16:  # only a short payload can be [DONE] or blank
            stripped = chunk.strip()
            if stripped in _DONE:
                return self._end(Input.DONE_MARKER)
            if not stripped:
                return []
        if self.state is State.DONE:
            return []
        try:
            wire = wire_decoder.decode(chunk)
        except msgspec.DecodeError as exc:
            raise self._fail(
                UpstreamError(
                    f"upstream sent an invalid stream chunk: {exc}",
                    kind=FailureKind.INVALID_RESPONSE,
                )
            ) from exc
        if wire.error is not None or wire.object == "error":
            error = upstream_error_in_body(wire, kind=FailureKind.STREAM_ERROR)
            if error is not None:
                raise self._fail(error)
        events: list[StreamEvent] = []
        if wire.usage is not None:
            self._usage = wire.usage
        if self.state is not State.STREAMING:  # (STREAMING, CHUNK) is a self-loop: skip the lookup
            if self.state is State.IDLE:
                events.append(self._message_start(wire.usage))
            self._advance(Input.CHUNK)
        if wire.choices:
            for choice in wire.choices:
                if choice.index == 0:
                    self._choice(choice, events)
        return events

    def finish(self) -> list[StreamEvent]:
        """The upstream body ended: close the message, or raise if it was cut short."""
        if self._error is not None:
            raise self._error
        return self._end(Input.END)

    # ------------------------------------------------------------------ transitions

    def _advance(self, event: Input) -> None:
        next_state = TRANSITIONS.get((self.state, event))
        if next_state is None:
            raise self._fail(
                UpstreamError(
                    "upstream stream ended before the answer was finished "
                    f"(state {self.state.value}, got {event.value})",
                    kind=FailureKind.INCOMPLETE,
                )
            )
        self.state = next_state

    def _fail(self, error: UpstreamError) -> UpstreamError:
        self.state = State.FAILED
        self._error = error
        return error

    def _end(self, event: Input) -> list[StreamEvent]:
        was = self.state
        self._advance(event)
        if was is State.DONE:
            return []
        events: list[StreamEvent] = []
        self._close_text(events)
        for call in self._calls:  # calls whose name never came: still answer them
            if call.block is None:
                self._start_call(call, events)
        self._close_calls(self._open_calls, events)
        stop_reason, stop_sequence = stop_reason_for(
            self._finish_reason,
            self._vllm_stop,
            has_tool_calls=bool(self._calls),
            refused=self._refused,
        )
        events.append(
            MessageDelta(
                delta=MessageDeltaBody(stop_reason=stop_reason, stop_sequence=stop_sequence),
                usage=self._delta_usage(),
            )
        )
        events.append(MessageStop())
        return events

    # ------------------------------------------------------------------ chunks

    def _message_start(self, usage: WireUsage | None) -> MessageStart:
        start_usage = Usage(input_tokens=self.input_tokens, output_tokens=0)
        if usage is not None and usage.prompt_tokens:
            start_usage = usage_from_wire(usage)
            start_usage = Usage(
                input_tokens=start_usage.input_tokens,
                output_tokens=0,
                cache_read_input_tokens=start_usage.cache_read_input_tokens,
            )
        message = Message(id=self.message_id, model=self.model, content=[], usage=start_usage)
        return MessageStart(message=message)

    def _choice(self, choice: WireChoice, events: list[StreamEvent]) -> None:
        delta = choice.delta or choice.message
        if delta is not None:
            reasoning = delta.reasoning_content or delta.reasoning
            if reasoning:
                self._text(_Kind.THINKING, reasoning, events)
            if delta.content:
                self._text(_Kind.TEXT, delta.content, events)
            if delta.refusal:
                self._refused = True
                self._text(_Kind.TEXT, delta.refusal, events)
            if delta.tool_calls:
                for call in delta.tool_calls:
                    self._tool_delta(call, events)
            elif delta.function_call is not None:
                # The legacy field alone; llama.cpp repeats each tool_calls delta in it.
                self._tool_delta(WireToolCall(index=0, function=delta.function_call), events)
        if choice.finish_reason:
            self._finish_reason = choice.finish_reason
            self._vllm_stop = choice.stop_reason
            self._advance(Input.FINISH_REASON)

    def _text(self, kind: _Kind, text: str, events: list[StreamEvent]) -> None:
        if self._open_kind is not kind:
            self._close_text(events)
            self._close_calls(self._open_calls, events)
            self._open_kind = kind
            self._open_index = index = self._next_block
            self._next_block += 1
            block = TextBlock(text="") if kind is _Kind.TEXT else ThinkingBlock(thinking="")
            events.append(ContentBlockStart(index=index, content_block=block))
        delta = TextDelta(text=text) if kind is _Kind.TEXT else ThinkingDelta(thinking=text)
        events.append(ContentBlockDelta(index=self._open_index, delta=delta))
        self._emitted_chars += len(text)

    def _close_text(self, events: list[StreamEvent]) -> None:
        if self._open_kind is not None:
            events.append(ContentBlockStop(index=self._open_index))
            self._open_kind = None

    def _close_calls(self, calls: list[_Call], events: list[StreamEvent]) -> None:
        for call in list(calls):
            assert call.block is not None
            events.append(ContentBlockStop(index=call.block))
            call.closed = True
            self._open_calls.remove(call)

    # ------------------------------------------------------------------ tool calls

    def _resolve(self, wire: WireToolCall) -> _Call:
        upstream_id = wire.id or None
        if upstream_id is not None:
            call = self._by_id.get(upstream_id)
            if call is None and wire.index is not None:
                known = self._by_index.get(wire.index)
                if known is not None and known.upstream_id is None:  # its id came late
                    call = known
                    call.upstream_id = upstream_id
                    if call.block is None:
                        call.id = upstream_id
                    self._by_id[upstream_id] = call
            if call is None:
                call = self._new_call(upstream_id)
                self._by_id[upstream_id] = call
            if wire.index is not None:
                self._by_index[wire.index] = call
            return call
        if wire.index is not None:
            call = self._by_index.get(wire.index)
            if call is None:
                call = self._by_index[wire.index] = self._new_call(None)
            return call
        return self._calls[-1] if self._calls else self._new_call(None)

    def _new_call(self, upstream_id: str | None) -> _Call:
        call = _Call(upstream_id or tool_id_for(self.message_id, len(self._calls)), upstream_id)
        self._calls.append(call)
        return call

    def _tool_delta(self, wire: WireToolCall, events: list[StreamEvent]) -> None:
        call = self._resolve(wire)
        function = wire.function
        if function is None:
            return
        if call.block is None and function.name:
            call.name = function.name
            self._start_call(call, events)
        arguments = function.arguments
        if not arguments:
            return
        if call.closed:  # more arguments for a call already stopped: cannot be sent
            if "tool_use.input" not in self.notes:
                self.notes.append("tool_use.input")
            return
        call.args.append(arguments)
        self._emitted_chars += len(arguments)
        if call.block is not None:
            events.append(
                ContentBlockDelta(index=call.block, delta=InputJsonDelta(partial_json=arguments))
            )

    def _start_call(self, call: _Call, events: list[StreamEvent]) -> None:
        self._close_text(events)
        self._close_calls([c for c in self._open_calls if c.args_complete()], events)
        call.block = index = self._next_block
        self._next_block += 1
        self._open_calls.append(call)
        block = ToolUseBlock(id=call.id, name=call.name, input={})
        events.append(ContentBlockStart(index=index, content_block=block))
        if call.args:
            partial = "".join(call.args)
            events.append(
                ContentBlockDelta(index=index, delta=InputJsonDelta(partial_json=partial))
            )

    # ------------------------------------------------------------------ usage

    def _delta_usage(self) -> MessageDeltaUsage:
        if self._usage is None:
            # No usage at all (llama.cpp's server sends none in streams): an estimate, as
            # for count_tokens (about four characters a token), and said so.
            if "usage.estimated" not in self.notes:
                self.notes.append("usage.estimated")
            return MessageDeltaUsage(output_tokens=(self._emitted_chars + 3) // 4)
        usage = usage_from_wire(self._usage)
        return MessageDeltaUsage(
            output_tokens=usage.output_tokens,
            input_tokens=usage.input_tokens,
            cache_read_input_tokens=usage.cache_read_input_tokens,
        )
