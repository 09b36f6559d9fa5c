"""OpenAI Chat Completions response body -> Anthropic ``Message``.

How it works
------------
The body is decoded once by msgspec into the small wire structs below (unknown fields are
ignored, so extra fields from vLLM, Ollama, OpenRouter... cost nothing). The first choice is
turned into content blocks in the order an Anthropic answer has them: thinking
(``reasoning_content`` or ``reasoning``), then text (``content``, then ``refusal``), then one
``tool_use`` block per tool call (and for a legacy ``function_call``).

Tool-call arguments are JSON text produced by a model, so they are parsed defensively: a
Markdown fence (```` ```json ... ``` ````) is stripped, a JSON string holding a JSON object
(double encoding) is unwrapped, and anything that is still not a JSON object becomes ``{}`` with
the note ``tool_use.input`` (the block keeps its id and name, so the client can answer it).

The stop reason comes from ``finish_reason`` (``map_finish_reason``) refined by what the choice
holds (``stop_reason_for``): tool calls under ``stop`` mean ``tool_use`` (Ollama and some vLLM
parsers say ``stop``) while ``tool_calls`` without any call means ``end_turn``, a refusal means
``refusal``, and vLLM's string ``stop_reason`` (the stop string that matched) means
``stop_sequence``. Usage maps prompt tokens minus cached ones to ``input_tokens`` and the cached
ones to ``cache_read_input_tokens``.

The wire structs and helpers are shared with ``openai_stream``.
"""

from __future__ import annotations

from typing import Any

import msgspec
import orjson

from sidecar.errors import FailureKind, UpstreamError
from sidecar.model import (
    Message,
    ResponseBlock,
    StopReason,
    TextBlock,
    ThinkingBlock,
    ToolUseBlock,
    Usage,
)

__all__ = ["from_openai_response", "map_finish_reason", "parse_tool_arguments"]


# --------------------------------------------------------------------------- wire structs


class WireFunction(msgspec.Struct):
    name: str | None = None
    arguments: str | None = None


class WireToolCall(msgspec.Struct):
    index: int | None = None
    id: str | None = None
    function: WireFunction | None = None


class WireMessage(msgspec.Struct):
    """A response ``message`` or a stream ``delta``: the same fields, all optional."""

    content: str | None = None
    reasoning_content: str | None = None
    reasoning: str | None = None
    refusal: str | None = None
    tool_calls: list[WireToolCall] | None = None
    function_call: WireFunction | None = None


class WireChoice(msgspec.Struct):
    index: int = 0
    message: WireMessage | None = None
    delta: WireMessage | None = None
    finish_reason: str | None = None
    stop_reason: str | int | None = None  # vLLM: the matched stop string, or a stop token id


class WirePromptDetails(msgspec.Struct):
    cached_tokens: int | None = None


class WireUsage(msgspec.Struct):
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    prompt_tokens_details: WirePromptDetails | None = None


class WireBody(msgspec.Struct):
    """A whole response or one stream chunk."""

    choices: list[WireChoice] | None = None
    usage: WireUsage | None = None
    error: Any = None
    object: str | None = None
    message: Any = None  # vLLM's top-level error shape: {"object": "error", "message": ...}
    code: Any = None


wire_decoder = msgspec.json.Decoder(WireBody)


# --------------------------------------------------------------------------- helpers


def map_finish_reason(finish_reason: str | None) -> StopReason:
    """OpenAI ``finish_reason`` -> Anthropic ``stop_reason`` (unknown or None -> end_turn)."""
    match finish_reason:
        case "length":
            return "max_tokens"
        case "tool_calls" | "function_call":
            return "tool_use"
        case "content_filter":
            return "refusal"
    return "end_turn"


def stop_reason_for(
    finish_reason: str | None,
    vllm_stop: str | int | None,
    *,
    has_tool_calls: bool,
    refused: bool,
) -> tuple[StopReason, str | None]:
    """The stop reason (and stop sequence) from a finished choice and what it contained.

    ``max_tokens`` wins (the answer was cut); then a refusal; then ``tool_use`` exactly when
    there are tool calls (a ``tool_calls`` finish without any would leave an Anthropic client
    waiting for a tool that was never asked for); then vLLM's matched stop string.
    """
    reason = map_finish_reason(finish_reason)
    if reason == "max_tokens":
        return reason, None
    if refused or reason == "refusal":
        return "refusal", None
    if has_tool_calls:
        return "tool_use", None
    if isinstance(vllm_stop, str) and finish_reason == "stop":
        return "stop_sequence", vllm_stop
    return "end_turn", None


def usage_from_wire(usage: WireUsage | None, *, input_tokens: int = 0) -> Usage:
    """Anthropic usage from OpenAI usage (``input_tokens`` when the upstream sent none)."""
    if usage is None:
        return Usage(input_tokens=input_tokens, output_tokens=0)
    prompt = usage.prompt_tokens or 0
    cached: int | None = None
    if usage.prompt_tokens_details is not None:
        cached = usage.prompt_tokens_details.cached_tokens
    return Usage(
        input_tokens=max(prompt - (cached or 0), 0),
        output_tokens=usage.completion_tokens or 0,
        cache_read_input_tokens=cached,
    )


def _strip_fence(text: str) -> str:
    text = text.strip()
    if text.startswith("```"):
        newline = text.find("\n")
        text = text[newline + 1 :] if newline >= 0 else text[3:]
        if text.rstrip().endswith("```"):
            text = text.rstrip()[:-3]
    return text


def parse_tool_arguments(arguments: str | None, notes: list[str]) -> dict[str, Any]:
    """A tool call's ``arguments`` text as a JSON object; ``{}`` (noted) when it is not one."""
    if not arguments or arguments.isspace():
        return {}
    try:
        value = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        try:
            value = orjson.loads(_strip_fence(arguments))
        except orjson.JSONDecodeError:
            value = None
    if isinstance(value, str):  # double-encoded
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError:
            value = None
    if isinstance(value, dict):
        return value
    if "tool_use.input" not in notes:
        notes.append("tool_use.input")
    return {}


def tool_id_for(message_id: str, n: int) -> str:
    """A tool-use id for the ``n``-th call of a message when the upstream sent none."""
    return f"toolu_{message_id.removeprefix('msg_')}_{n}"


def upstream_error_in_body(body: WireBody, *, kind: FailureKind) -> UpstreamError | None:
    """The error an upstream reported inside a 200 body or a stream frame, if any."""
    error = body.error
    if error is None and body.object == "error":
        error = {"message": body.message, "code": body.code}
    if error is None:
        return None
    status: int | None = None
    message = "upstream reported an error"
    if isinstance(error, dict):
        msg = error.get("message")
        if isinstance(msg, str) and msg:
            message = msg
        code = error.get("code")
        if isinstance(code, int) and not isinstance(code, bool):
            status = code
        elif isinstance(code, str) and code.isdigit():
            status = int(code)
    elif isinstance(error, str) and error:
        message = error
    if status is not None and not 400 <= status <= 599:
        status = None
    return UpstreamError(message[:500], kind=kind, status=status)


# --------------------------------------------------------------------------- the response


def from_openai_response(body: bytes, *, message_id: str, model: str, notes: list[str]) -> Message:
    """The Anthropic message for a Chat Completions response ``body`` (first choice only)."""
    try:
        wire = wire_decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise UpstreamError(
            f"upstream sent an invalid chat completion: {exc}", kind=FailureKind.INVALID_RESPONSE
        ) from exc
    error = upstream_error_in_body(wire, kind=FailureKind.INVALID_RESPONSE)
    if error is not None:
        if error.status is not None:
            error.kind = FailureKind.STATUS
        raise error
    if not wire.choices:
        raise UpstreamError(
            "upstream sent a chat completion without choices", kind=FailureKind.INVALID_RESPONSE
        )
    if len(wire.choices) > 1 and "n" not in notes:
        notes.append("n")
    choice = next((c for c in wire.choices if c.index == 0), wire.choices[0])
    msg = choice.message or choice.delta or WireMessage()

    content: list[ResponseBlock] = []
    reasoning = msg.reasoning_content or msg.reasoning
    if reasoning:
        content.append(ThinkingBlock(thinking=reasoning))
    if msg.content:
        content.append(TextBlock(text=msg.content))
    if msg.refusal:
        content.append(TextBlock(text=msg.refusal))
    calls = list(msg.tool_calls or ())
    if msg.function_call is not None and not calls:
        # The legacy field alone. llama.cpp sends it beside tool_calls for the same call.
        calls.append(WireToolCall(function=msg.function_call))
    for n, call in enumerate(calls):
        function = call.function or WireFunction()
        content.append(
            ToolUseBlock(
                id=call.id or tool_id_for(message_id, n),
                name=function.name or "",
                input=parse_tool_arguments(function.arguments, notes),
            )
        )
    stop_reason, stop_sequence = stop_reason_for(
        choice.finish_reason,
        choice.stop_reason,
        has_tool_calls=bool(calls),
        refused=bool(msg.refusal),
    )
    return Message(
        id=message_id,
        model=model,
        content=content,
        stop_reason=stop_reason,
        stop_sequence=stop_sequence,
        usage=usage_from_wire(wire.usage),
    )
