"""Protobuf ⇄ internal model conversion for the gRPC surface.

Two directions, used by the servicer:

- **in**: ``messages_request_from_proto`` / ``count_tokens_request_from_proto`` turn a decoded
  ``CreateMessageRequest`` / ``CountTokensRequest`` into ``sidecar.model`` structs, checking what
  protobuf cannot express (a required field, a ``oneof`` with no case set, an enum left at
  ``*_UNSPECIFIED``). Each failure is an ``InvalidRequestError`` whose message starts with the field
  path, e.g. ``messages[0].content[1].tool_use.id: required``. Ranges and cross-field rules are
  the engine's (``sidecar.engine.validation``), so both surfaces share them.
- **out**: ``message_to_proto``, ``event_to_proto`` (the per-delta hot path) and
  ``token_count_to_proto`` render the engine's results. They live in ``sidecar.grpc_api.render``
  (to keep files small) and are re-exported here, so this module is the one import for both.

Content blocks convert both ways (``block_from_proto`` here, ``block_to_proto`` in render); the
inverse top-level directions (for clients and round-trip tests) are in ``sidecar.grpc_api.reverse``.

Mapping rules: an empty proto string is ``None`` for optional model strings; ``optional`` proto
fields map to ``None`` by presence; a JSON string ``content`` (model) is one text block (proto).
``google.protobuf.Struct`` ⇄ ``dict`` walks the values directly; Struct numbers are doubles, so an
integral number within ±2**53 comes back as ``int`` (``{"n": 3}`` stays ``3``, not ``3.0``).
"""

from __future__ import annotations

from typing import Any

from google.protobuf import struct_pb2

from sidecar import model as m
from sidecar.errors import InvalidRequestError
from sidecar.grpc_api.gen.anyllm.sidecar.v1 import messages_pb2 as pb
from sidecar.grpc_api.gen.anyllm.sidecar.v1 import messages_service_pb2 as spb
from sidecar.grpc_api.render import (
    ROLE_TO_PROTO,
    STOP_REASON_TO_PROTO,
    block_to_proto,
    event_to_proto,
    fill_block,
    fill_text,
    message_to_proto,
    set_cache_control,
    token_count_to_proto,
)
from sidecar.grpc_api.struct_json import struct_to_dict

__all__ = [
    "ROLE_FROM_PROTO",
    "ROLE_TO_PROTO",
    "STOP_REASON_FROM_PROTO",
    "STOP_REASON_TO_PROTO",
    "block_from_proto",
    "block_to_proto",
    "count_tokens_request_from_proto",
    "dict_to_struct",
    "event_to_proto",
    "fill_block",
    "fill_text",
    "message_to_proto",
    "messages_request_from_proto",
    "set_cache_control",
    "struct_to_dict",
    "token_count_to_proto",
]

ROLE_FROM_PROTO: dict[int, m.Role] = {
    pb.ROLE_USER: "user",
    pb.ROLE_ASSISTANT: "assistant",
    pb.ROLE_SYSTEM: "system",
}
STOP_REASON_FROM_PROTO: dict[int, m.StopReason] = {
    pb.STOP_REASON_END_TURN: "end_turn",
    pb.STOP_REASON_MAX_TOKENS: "max_tokens",
    pb.STOP_REASON_STOP_SEQUENCE: "stop_sequence",
    pb.STOP_REASON_TOOL_USE: "tool_use",
    pb.STOP_REASON_PAUSE_TURN: "pause_turn",
    pb.STOP_REASON_REFUSAL: "refusal",
}

_BLOCK_CASES = "text, image, document, tool_use, tool_result, thinking, redacted_thinking"


def _invalid(path: str, message: str) -> InvalidRequestError:
    return InvalidRequestError(f"{path}: {message}", field=path)


def _opt(text: str) -> str | None:
    return text or None


# --------------------------------------------------------------------------- Struct ⇄ dict


def dict_to_struct(
    data: dict[str, Any], into: struct_pb2.Struct | None = None
) -> struct_pb2.Struct:
    """Fill ``into`` (or a new ``Struct``) from a JSON object."""
    struct = struct_pb2.Struct() if into is None else into
    struct.update(data)
    return struct


# --------------------------------------------------------------------------- blocks: proto → model


def _cache_control(msg: Any) -> m.CacheControl | None:
    if not msg.HasField("cache_control"):
        return None
    cc: pb.CacheControl = msg.cache_control
    return m.CacheControl(type=cc.type or "ephemeral", ttl=_opt(cc.ttl))


def _base64(src: pb.Base64Source, path: str) -> m.Base64Source:
    if not src.media_type:
        raise _invalid(f"{path}.media_type", "required")
    if not src.data:
        raise _invalid(f"{path}.data", "required")
    return m.Base64Source(media_type=src.media_type, data=src.data)


def _url(src: pb.UrlSource, path: str) -> m.UrlSource:
    if not src.url:
        raise _invalid(f"{path}.url", "required")
    return m.UrlSource(url=src.url)


def _file(src: pb.FileSource, path: str) -> m.FileSource:
    if not src.file_id:
        raise _invalid(f"{path}.file_id", "required")
    return m.FileSource(file_id=src.file_id)


def _image(block: pb.ImageBlock, path: str) -> m.ImageBlock:
    path = f"{path}.source"
    source = block.source
    match source.WhichOneof("source"):
        case "base64":
            src: m.ImageSource = _base64(source.base64, f"{path}.base64")
        case "url":
            src = _url(source.url, f"{path}.url")
        case "file":
            src = _file(source.file, f"{path}.file")
        case _:
            raise _invalid(path, "one of base64, url, file must be set")
    return m.ImageBlock(source=src, cache_control=_cache_control(block))


def _text(block: pb.TextBlock) -> m.TextBlock:
    citations = [struct_to_dict(c) for c in block.citations] if block.citations else None
    return m.TextBlock(text=block.text, cache_control=_cache_control(block), citations=citations)


def _content_source(src: pb.ContentSource, path: str) -> m.ContentSource:
    blocks: list[m.TextBlock | m.ImageBlock] = []
    for i, item in enumerate(src.content):
        match item.WhichOneof("block"):
            case "text":
                blocks.append(_text(item.text))
            case "image":
                blocks.append(_image(item.image, f"{path}.content[{i}].image"))
            case _:
                raise _invalid(f"{path}.content[{i}]", "one of text, image must be set")
    return m.ContentSource(content=blocks)


def _document(block: pb.DocumentBlock, path: str) -> m.DocumentBlock:
    path_src = f"{path}.source"
    source = block.source
    match source.WhichOneof("source"):
        case "base64":
            src: m.DocumentSource = _base64(source.base64, f"{path_src}.base64")
        case "url":
            src = _url(source.url, f"{path_src}.url")
        case "text":
            text = source.text
            src = m.PlainTextSource(data=text.data, media_type=text.media_type or "text/plain")
        case "content":
            src = _content_source(source.content, f"{path_src}.content")
        case "file":
            src = _file(source.file, f"{path_src}.file")
        case _:
            raise _invalid(path_src, "one of base64, url, text, content, file must be set")
    citations = {"enabled": block.citations.enabled} if block.HasField("citations") else None
    return m.DocumentBlock(
        source=src,
        title=_opt(block.title),
        context=_opt(block.context),
        citations=citations,
        cache_control=_cache_control(block),
    )


def _tool_result(block: pb.ToolResultBlock, path: str) -> m.ToolResultBlock:
    if not block.tool_use_id:
        raise _invalid(f"{path}.tool_use_id", "required")
    content: list[m.ToolResultContent] | None = None
    if block.content:
        content = []
        for i, item in enumerate(block.content):
            match item.WhichOneof("block"):
                case "text":
                    content.append(_text(item.text))
                case "image":
                    content.append(_image(item.image, f"{path}.content[{i}].image"))
                case "document":
                    content.append(_document(item.document, f"{path}.content[{i}].document"))
                case _:
                    raise _invalid(
                        f"{path}.content[{i}]", "one of text, image, document must be set"
                    )
    return m.ToolResultBlock(
        tool_use_id=block.tool_use_id,
        content=content,
        is_error=block.is_error if block.HasField("is_error") else None,
        cache_control=_cache_control(block),
    )


def block_from_proto(block: pb.ContentBlock, path: str) -> m.RequestBlock:
    """One content block; ``path`` (e.g. ``messages[0].content[1]``) prefixes error messages."""
    match block.WhichOneof("block"):
        case "text":
            return _text(block.text)
        case "tool_use":
            use = block.tool_use
            if not use.id:
                raise _invalid(f"{path}.tool_use.id", "required")
            if not use.name:
                raise _invalid(f"{path}.tool_use.name", "required")
            return m.ToolUseBlock(
                id=use.id,
                name=use.name,
                input=struct_to_dict(use.input),
                cache_control=_cache_control(use),
            )
        case "tool_result":
            return _tool_result(block.tool_result, f"{path}.tool_result")
        case "image":
            return _image(block.image, f"{path}.image")
        case "document":
            return _document(block.document, f"{path}.document")
        case "thinking":
            return m.ThinkingBlock(
                thinking=block.thinking.thinking, signature=block.thinking.signature
            )
        case "redacted_thinking":
            return m.RedactedThinkingBlock(data=block.redacted_thinking.data)
    raise _invalid(path, f"one of {_BLOCK_CASES} must be set")


# --------------------------------------------------------------------------- requests


def _messages(messages: Any) -> list[m.InputMessage]:
    if not messages:
        raise _invalid("messages", "at least one message is required")
    out: list[m.InputMessage] = []
    for i, message in enumerate(messages):
        role = ROLE_FROM_PROTO.get(message.role)
        if role is None:
            raise _invalid(
                f"messages[{i}].role", "must be ROLE_USER, ROLE_ASSISTANT or ROLE_SYSTEM"
            )
        blocks = [
            block_from_proto(block, f"messages[{i}].content[{j}]")
            for j, block in enumerate(message.content)
        ]
        out.append(m.InputMessage(role=role, content=blocks))
    return out


def _system(
    req: spb.CreateMessageRequest | spb.CountTokensRequest,
) -> str | list[m.TextBlock] | None:
    if req.system_blocks:
        if req.system:
            raise _invalid("system", "set system or system_blocks, not both")
        return [_text(block) for block in req.system_blocks]
    return _opt(req.system)


def _tools(tools: Any) -> list[m.Tool] | None:
    if not tools:
        return None
    out: list[m.Tool] = []
    for i, tool in enumerate(tools):
        if not tool.name:
            raise _invalid(f"tools[{i}].name", "required")
        out.append(
            m.Tool(
                name=tool.name,
                input_schema=struct_to_dict(tool.input_schema)
                if tool.HasField("input_schema")
                else None,
                description=_opt(tool.description),
                type=_opt(tool.type),
                cache_control=_cache_control(tool),
                defer_loading=tool.defer_loading if tool.HasField("defer_loading") else None,
            )
        )
    return out


def _tool_choice(req: spb.CreateMessageRequest | spb.CountTokensRequest) -> m.ToolChoice | None:
    if not req.HasField("tool_choice"):
        return None
    choice = req.tool_choice
    parallel = (
        choice.disable_parallel_tool_use if choice.HasField("disable_parallel_tool_use") else None
    )
    match choice.type:
        case pb.TOOL_CHOICE_TYPE_AUTO:
            return m.ToolChoiceAuto(disable_parallel_tool_use=parallel)
        case pb.TOOL_CHOICE_TYPE_ANY:
            return m.ToolChoiceAny(disable_parallel_tool_use=parallel)
        case pb.TOOL_CHOICE_TYPE_TOOL:
            if not choice.name:
                raise _invalid("tool_choice.name", "required when type is TOOL_CHOICE_TYPE_TOOL")
            return m.ToolChoiceTool(name=choice.name, disable_parallel_tool_use=parallel)
        case pb.TOOL_CHOICE_TYPE_NONE:
            return m.ToolChoiceNone()
    raise _invalid("tool_choice.type", "must be AUTO, ANY, TOOL or NONE")


def _thinking(req: spb.CreateMessageRequest | spb.CountTokensRequest) -> m.ThinkingConfig | None:
    if not req.HasField("thinking"):
        return None
    match req.thinking.WhichOneof("config"):
        case "enabled":
            enabled = req.thinking.enabled
            return m.ThinkingEnabled(
                budget_tokens=enabled.budget_tokens, display=enabled.display or None
            )
        case "adaptive":
            return m.ThinkingAdaptive(display=req.thinking.adaptive.display or None)
        case "disabled":
            return m.ThinkingDisabled()
    raise _invalid("thinking", "one of enabled, disabled, adaptive must be set")


def messages_request_from_proto(
    req: spb.CreateMessageRequest, *, stream: bool = False
) -> m.MessagesRequest:
    """A ``CreateMessageRequest`` as the engine's request (``stream`` set for StreamMessage)."""
    if not req.model:
        raise _invalid("model", "required")
    if req.max_tokens < 1:
        raise _invalid("max_tokens", "required, at least 1")
    metadata = (
        m.RequestMetadata(user_id=_opt(req.metadata.user_id)) if req.HasField("metadata") else None
    )
    return m.MessagesRequest(
        model=req.model,
        messages=_messages(req.messages),
        max_tokens=req.max_tokens,
        system=_system(req),
        tools=_tools(req.tools),
        tool_choice=_tool_choice(req),
        temperature=req.temperature if req.HasField("temperature") else None,
        top_p=req.top_p if req.HasField("top_p") else None,
        top_k=req.top_k if req.HasField("top_k") else None,
        stop_sequences=list(req.stop_sequences) or None,
        metadata=metadata,
        thinking=_thinking(req),
        output_config=m.OutputConfig(effort=req.output_config.effort or None)
        if req.HasField("output_config")
        else None,
        stream=True if stream else None,
    )


def count_tokens_request_from_proto(req: spb.CountTokensRequest) -> m.CountTokensRequest:
    """A ``CountTokensRequest`` as the engine's request."""
    if not req.model:
        raise _invalid("model", "required")
    return m.CountTokensRequest(
        model=req.model,
        messages=_messages(req.messages),
        system=_system(req),
        tools=_tools(req.tools),
        tool_choice=_tool_choice(req),
        thinking=_thinking(req),
    )
