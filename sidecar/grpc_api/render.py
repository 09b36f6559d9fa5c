"""Internal model → protobuf: the engine's answers as gRPC messages (the servicer's output side).

``event_to_proto`` runs once per streamed delta, so it builds one ``StreamEvent`` and fills the
nested fields in place (``out.content_block_delta.text_delta = ...``) instead of constructing
inner messages and copying them in, dispatching by ``isinstance`` with the common case first.
``fill_block`` writes any model content block (request or response kind) into a proto
``ContentBlock``; ``sidecar.grpc_api.reverse`` reuses it for requests. The inverse mappings (and
the rules for empty strings and ``optional`` fields) are in ``sidecar.grpc_api.convert``.
"""

from __future__ import annotations

from typing import Any

from sidecar import model as m
from sidecar.grpc_api.gen.anyllm.sidecar.v1 import messages_pb2 as pb
from sidecar.grpc_api.gen.anyllm.sidecar.v1 import messages_service_pb2 as spb

__all__ = [
    "ROLE_TO_PROTO",
    "STOP_REASON_TO_PROTO",
    "block_to_proto",
    "event_to_proto",
    "fill_block",
    "fill_text",
    "message_to_proto",
    "set_cache_control",
    "token_count_to_proto",
]

ROLE_TO_PROTO: dict[str, pb.Role.ValueType] = {
    "user": pb.ROLE_USER,
    "assistant": pb.ROLE_ASSISTANT,
    "system": pb.ROLE_SYSTEM,
}
STOP_REASON_TO_PROTO: dict[str, pb.StopReason.ValueType] = {
    "end_turn": pb.STOP_REASON_END_TURN,
    "max_tokens": pb.STOP_REASON_MAX_TOKENS,
    "stop_sequence": pb.STOP_REASON_STOP_SEQUENCE,
    "tool_use": pb.STOP_REASON_TOOL_USE,
    "pause_turn": pb.STOP_REASON_PAUSE_TURN,
    "refusal": pb.STOP_REASON_REFUSAL,
}


# --------------------------------------------------------------------------- blocks: model → proto


def set_cache_control(target: Any, cc: m.CacheControl | None) -> None:
    if cc is not None:
        target.cache_control.type = cc.type
        if cc.ttl is not None:
            target.cache_control.ttl = cc.ttl


def fill_text(target: pb.TextBlock, block: m.TextBlock) -> None:
    target.text = block.text
    set_cache_control(target, block.cache_control)
    for citation in block.citations or ():
        target.citations.add().update(citation)


def _fill_source(target: Any, src: m.DocumentSource) -> None:
    if isinstance(src, m.Base64Source):
        target.base64.media_type = src.media_type
        target.base64.data = src.data
    elif isinstance(src, m.UrlSource):
        target.url.url = src.url
    elif isinstance(src, m.FileSource):
        target.file.file_id = src.file_id
    elif isinstance(src, m.PlainTextSource):
        target.text.data = src.data
        target.text.media_type = src.media_type
    else:
        content = target.content
        content.SetInParent()  # an empty list still selects the case
        items = [m.TextBlock(text=src.content)] if isinstance(src.content, str) else src.content
        for item in items:
            if isinstance(item, m.TextBlock):
                fill_text(content.content.add().text, item)
            else:
                _fill_image(content.content.add().image, item)


def _fill_image(target: pb.ImageBlock, block: m.ImageBlock) -> None:
    _fill_source(target.source, block.source)
    set_cache_control(target, block.cache_control)


def _fill_document(target: pb.DocumentBlock, block: m.DocumentBlock) -> None:
    _fill_source(target.source, block.source)
    if block.title is not None:
        target.title = block.title
    if block.context is not None:
        target.context = block.context
    if block.citations is not None:
        target.citations.enabled = bool(block.citations.get("enabled"))
    set_cache_control(target, block.cache_control)


def _fill_tool_result(target: pb.ToolResultBlock, block: m.ToolResultBlock) -> None:
    target.tool_use_id = block.tool_use_id
    content = block.content
    if isinstance(content, str):
        content = [m.TextBlock(text=content)] if content else None
    for item in content or ():
        if isinstance(item, m.TextBlock):
            fill_text(target.content.add().text, item)
        elif isinstance(item, m.ImageBlock):
            _fill_image(target.content.add().image, item)
        else:
            _fill_document(target.content.add().document, item)
    if block.is_error is not None:
        target.is_error = block.is_error
    set_cache_control(target, block.cache_control)


def fill_block(target: pb.ContentBlock, block: m.RequestBlock) -> None:
    """Write one model block into an (empty) proto ``ContentBlock``."""
    if isinstance(block, m.TextBlock):
        fill_text(target.text, block)
    elif isinstance(block, m.ToolUseBlock):
        use = target.tool_use
        use.id = block.id
        use.name = block.name
        use.input.SetInParent()
        use.input.update(block.input)
        set_cache_control(use, block.cache_control)
    elif isinstance(block, m.ThinkingBlock):
        target.thinking.thinking = block.thinking
        target.thinking.signature = block.signature
    elif isinstance(block, m.RedactedThinkingBlock):
        target.redacted_thinking.data = block.data
    elif isinstance(block, m.ImageBlock):
        _fill_image(target.image, block)
    elif isinstance(block, m.DocumentBlock):
        _fill_document(target.document, block)
    else:
        _fill_tool_result(target.tool_result, block)


def block_to_proto(block: m.RequestBlock) -> pb.ContentBlock:
    """One model block as a new proto ``ContentBlock``."""
    out = pb.ContentBlock()
    fill_block(out, block)
    return out


# --------------------------------------------------------------------------- responses


def _fill_message(target: pb.Message, message: m.Message) -> None:
    target.id = message.id
    target.model = message.model
    target.role = pb.ROLE_ASSISTANT
    for block in message.content:
        fill_block(target.content.add(), block)
    if message.stop_reason is not None:
        target.stop_reason = STOP_REASON_TO_PROTO[message.stop_reason]
    if message.stop_sequence is not None:
        target.stop_sequence = message.stop_sequence
    usage = message.usage
    target.usage.input_tokens = usage.input_tokens
    target.usage.output_tokens = usage.output_tokens
    if usage.cache_creation_input_tokens is not None:
        target.usage.cache_creation_input_tokens = usage.cache_creation_input_tokens
    if usage.cache_read_input_tokens is not None:
        target.usage.cache_read_input_tokens = usage.cache_read_input_tokens


def message_to_proto(message: m.Message) -> pb.Message:
    """The engine's ``Message`` as the CreateMessage response."""
    out = pb.Message()
    _fill_message(out, message)
    return out


def token_count_to_proto(count: m.TokenCount) -> spb.CountTokensResponse:
    return spb.CountTokensResponse(input_tokens=count.input_tokens, estimated=count.estimated)


def _fill_delta(target: pb.ContentBlockDeltaEvent, delta: m.BlockDelta) -> None:
    if isinstance(delta, m.TextDelta):
        target.text_delta = delta.text
    elif isinstance(delta, m.InputJsonDelta):
        target.input_json_delta = delta.partial_json
    elif isinstance(delta, m.ThinkingDelta):
        target.thinking_delta = delta.thinking
    elif isinstance(delta, m.SignatureDelta):
        target.signature_delta = delta.signature
    else:
        target.citations_delta.SetInParent()
        target.citations_delta.update(delta.citation)


def event_to_proto(event: m.StreamEvent) -> pb.StreamEvent:
    """One stream event as a proto ``StreamEvent`` (the per-delta hot path)."""
    out = pb.StreamEvent()
    if isinstance(event, m.ContentBlockDelta):
        target = out.content_block_delta
        target.index = event.index
        _fill_delta(target, event.delta)
    elif isinstance(event, m.ContentBlockStart):
        start = out.content_block_start
        start.index = event.index
        fill_block(start.content_block, event.content_block)
    elif isinstance(event, m.ContentBlockStop):
        out.content_block_stop.index = event.index
    elif isinstance(event, m.MessageStart):
        _fill_message(out.message_start.message, event.message)
    elif isinstance(event, m.MessageDelta):
        delta = out.message_delta
        if event.delta.stop_reason is not None:
            delta.stop_reason = STOP_REASON_TO_PROTO[event.delta.stop_reason]
        if event.delta.stop_sequence is not None:
            delta.stop_sequence = event.delta.stop_sequence
        usage, target_usage = event.usage, delta.usage
        target_usage.output_tokens = usage.output_tokens
        if usage.input_tokens is not None:
            target_usage.input_tokens = usage.input_tokens
        if usage.cache_creation_input_tokens is not None:
            target_usage.cache_creation_input_tokens = usage.cache_creation_input_tokens
        if usage.cache_read_input_tokens is not None:
            target_usage.cache_read_input_tokens = usage.cache_read_input_tokens
    elif isinstance(event, m.MessageStop):
        out.message_stop.SetInParent()
    elif isinstance(event, m.Ping):
        out.ping.SetInParent()
    else:
        out.error.type = event.error.type
        out.error.message = event.error.message
    return out
