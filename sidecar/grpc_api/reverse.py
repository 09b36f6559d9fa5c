"""The client-side directions: model requests → proto, proto responses and events → model.

The server never needs these; they exist for Python gRPC clients (build a request from the same
``sidecar.model`` types the HTTP surface decodes, read answers back as those types) and for tests
that compare the two surfaces or round-trip ``proto → model → proto``. They reuse the block
converters of ``sidecar.grpc_api.convert``, so a block has one mapping in each direction.

A model ``content`` given as a JSON string becomes one text block in proto, and comes back as a
list of one block: the two forms mean the same to the Messages API.

These read answers into the typed model, which knows less than the proto: a server-tool block,
a ``raw`` case or an ``extra_json`` has no model form. To read an answer whole, as the Anthropic
JSON, use ``sidecar.grpc_api.json_proto`` (``message_to_json``, ``event_to_json``).
"""

from __future__ import annotations

from typing import Any

from sidecar import model as m
from sidecar.grpc_api.convert import (
    STOP_REASON_FROM_PROTO,
    block_from_proto,
    dict_to_struct,
    struct_to_dict,
)
from sidecar.grpc_api.gen.anyllm.sidecar.v1 import messages_pb2 as pb
from sidecar.grpc_api.gen.anyllm.sidecar.v1 import messages_service_pb2 as spb
from sidecar.grpc_api.render import ROLE_TO_PROTO, fill_block, fill_text, set_cache_control

__all__ = [
    "count_tokens_request_to_proto",
    "event_from_proto",
    "message_from_proto",
    "messages_request_to_proto",
]

_TOOL_CHOICE_TYPE: dict[type, pb.ToolChoiceType.ValueType] = {
    m.ToolChoiceAuto: pb.TOOL_CHOICE_TYPE_AUTO,
    m.ToolChoiceAny: pb.TOOL_CHOICE_TYPE_ANY,
    m.ToolChoiceTool: pb.TOOL_CHOICE_TYPE_TOOL,
    m.ToolChoiceNone: pb.TOOL_CHOICE_TYPE_NONE,
}


# --------------------------------------------------------------------------- requests


def _fill_common(
    target: spb.CreateMessageRequest | spb.CountTokensRequest,
    request: m.MessagesRequest | m.CountTokensRequest,
) -> None:
    target.model = request.model
    for message in request.messages:
        item = target.messages.add()
        item.role = ROLE_TO_PROTO[message.role]
        content = message.content
        blocks = [m.TextBlock(text=content)] if isinstance(content, str) else content
        for block in blocks:
            fill_block(item.content.add(), block)
    if isinstance(request.system, str):
        target.system = request.system
    elif request.system is not None:
        for text in request.system:
            fill_text(target.system_blocks.add(), text)
    for tool in request.tools or ():
        out = target.tools.add()
        out.name = tool.name
        if tool.description is not None:
            out.description = tool.description
        if tool.input_schema is not None:
            dict_to_struct(tool.input_schema, out.input_schema)
            out.input_schema.SetInParent()
        if tool.type is not None:
            out.type = tool.type
        set_cache_control(out, tool.cache_control)
    choice = request.tool_choice
    if choice is not None:
        target.tool_choice.type = _TOOL_CHOICE_TYPE[type(choice)]
        if isinstance(choice, m.ToolChoiceTool):
            target.tool_choice.name = choice.name
        if (
            not isinstance(choice, m.ToolChoiceNone)
            and choice.disable_parallel_tool_use is not None
        ):
            target.tool_choice.disable_parallel_tool_use = choice.disable_parallel_tool_use
    if isinstance(request.thinking, m.ThinkingEnabled):
        target.thinking.enabled.budget_tokens = request.thinking.budget_tokens
    elif isinstance(request.thinking, m.ThinkingDisabled):
        target.thinking.disabled.SetInParent()


def messages_request_to_proto(request: m.MessagesRequest) -> spb.CreateMessageRequest:
    """A model request as a ``CreateMessageRequest`` (``stream`` is the choice of rpc)."""
    out = spb.CreateMessageRequest(max_tokens=request.max_tokens)
    _fill_common(out, request)
    if request.temperature is not None:
        out.temperature = request.temperature
    if request.top_p is not None:
        out.top_p = request.top_p
    if request.top_k is not None:
        out.top_k = request.top_k
    out.stop_sequences.extend(request.stop_sequences or ())
    if request.metadata is not None:
        out.metadata.SetInParent()
        if request.metadata.user_id is not None:
            out.metadata.user_id = request.metadata.user_id
    return out


def count_tokens_request_to_proto(request: m.CountTokensRequest) -> spb.CountTokensRequest:
    out = spb.CountTokensRequest()
    _fill_common(out, request)
    return out


# --------------------------------------------------------------------------- responses


def _response_block(block: pb.ContentBlock, path: str) -> m.ResponseBlock:
    converted = block_from_proto(block, path)
    if isinstance(
        converted, m.TextBlock | m.ToolUseBlock | m.ThinkingBlock | m.RedactedThinkingBlock
    ):
        return converted
    raise ValueError(f"{path}: a {block.WhichOneof('block')} block in a response")


def _usage(usage: pb.Usage) -> m.Usage:
    return m.Usage(
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cache_creation_input_tokens=usage.cache_creation_input_tokens
        if usage.HasField("cache_creation_input_tokens")
        else None,
        cache_read_input_tokens=usage.cache_read_input_tokens
        if usage.HasField("cache_read_input_tokens")
        else None,
    )


def message_from_proto(message: pb.Message) -> m.Message:
    """A ``Message`` response as the model type."""
    return m.Message(
        id=message.id,
        model=message.model,
        content=[_response_block(b, f"content[{i}]") for i, b in enumerate(message.content)],
        stop_reason=STOP_REASON_FROM_PROTO.get(message.stop_reason),
        stop_sequence=message.stop_sequence or None,
        usage=_usage(message.usage),
    )


def _delta(event: pb.ContentBlockDeltaEvent) -> m.BlockDelta:
    match event.WhichOneof("delta"):
        case "text_delta":
            return m.TextDelta(text=event.text_delta)
        case "input_json_delta":
            return m.InputJsonDelta(partial_json=event.input_json_delta)
        case "thinking_delta":
            return m.ThinkingDelta(thinking=event.thinking_delta)
        case "signature_delta":
            return m.SignatureDelta(signature=event.signature_delta)
        case "citations_delta":
            return m.CitationsDelta(citation=struct_to_dict(event.citations_delta))
    raise ValueError("content_block_delta: no delta set")


def _opt_int(msg: Any, field: str) -> int | None:
    return int(getattr(msg, field)) if msg.HasField(field) else None


def event_from_proto(event: pb.StreamEvent) -> m.StreamEvent:
    """A ``StreamEvent`` as the model type."""
    match event.WhichOneof("event"):
        case "content_block_delta":
            delta = event.content_block_delta
            return m.ContentBlockDelta(index=delta.index, delta=_delta(delta))
        case "content_block_start":
            start = event.content_block_start
            block = _response_block(start.content_block, "content_block_start.content_block")
            return m.ContentBlockStart(index=start.index, content_block=block)
        case "content_block_stop":
            return m.ContentBlockStop(index=event.content_block_stop.index)
        case "message_start":
            return m.MessageStart(message=message_from_proto(event.message_start.message))
        case "message_delta":
            body = event.message_delta
            usage = body.usage
            return m.MessageDelta(
                delta=m.MessageDeltaBody(
                    stop_reason=STOP_REASON_FROM_PROTO.get(body.stop_reason),
                    stop_sequence=body.stop_sequence or None,
                ),
                usage=m.MessageDeltaUsage(
                    output_tokens=usage.output_tokens,
                    input_tokens=_opt_int(usage, "input_tokens"),
                    cache_creation_input_tokens=_opt_int(usage, "cache_creation_input_tokens"),
                    cache_read_input_tokens=_opt_int(usage, "cache_read_input_tokens"),
                ),
            )
        case "message_stop":
            return m.MessageStop()
        case "ping":
            return m.Ping()
        case "error":
            return m.ErrorEvent(
                error=m.ErrorBody(type=event.error.type, message=event.error.message)
            )
    raise ValueError("stream event: no event set")
