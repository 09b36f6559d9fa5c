"""The OpenAI Chat Completions request as the OpenAI door reads it: msgspec wire structs.

msgspec validates while it decodes (one pass, errors that name the JSON path). Messages are a
tagged union on ``role`` and content parts on ``type``, so an unknown role or part type is an
error naming its path, as it is for OpenAI itself. Fields the door does not read are not
declared: msgspec skips them, and ``unknown_chat_fields`` names them for the degradation list.
Ranges are checked only where OpenAI documents them and a wrong value would otherwise reach an
Anthropic upstream as a 400 that no longer names the caller's field.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

__all__ = [
    "AssistantMessage",
    "ChatRequestWire",
    "DeveloperMessage",
    "FilePart",
    "FunctionDef",
    "FunctionMessage",
    "ImagePart",
    "InputAudioPart",
    "RefusalPart",
    "ResponseFormatJsonObject",
    "ResponseFormatJsonSchema",
    "ResponseFormatText",
    "SystemMessage",
    "TextPart",
    "ToolCallWire",
    "ToolMessage",
    "ToolWire",
    "UserMessage",
    "chat_request_decoder",
    "unknown_chat_fields",
]

# --------------------------------------------------------------------------- content parts


class TextPart(msgspec.Struct, frozen=True, tag="text", tag_field="type"):
    text: str


class ImageURL(msgspec.Struct, frozen=True):
    url: str
    detail: str | None = None


class ImagePart(msgspec.Struct, frozen=True, tag="image_url", tag_field="type"):
    image_url: ImageURL


class InputAudioPart(msgspec.Struct, frozen=True, tag="input_audio", tag_field="type"):
    input_audio: dict[str, Any]


class FileRef(msgspec.Struct, frozen=True):
    file_data: str | None = None
    file_id: str | None = None
    filename: str | None = None


class FilePart(msgspec.Struct, frozen=True, tag="file", tag_field="type"):
    file: FileRef


class RefusalPart(msgspec.Struct, frozen=True, tag="refusal", tag_field="type"):
    refusal: str


UserPart = TextPart | ImagePart | InputAudioPart | FilePart
AssistantPart = TextPart | RefusalPart

# --------------------------------------------------------------------------- messages


class FunctionCallWire(msgspec.Struct, frozen=True):
    name: str
    arguments: str = ""


class ToolCallWire(msgspec.Struct, frozen=True):
    id: str
    type: str = "function"
    function: FunctionCallWire | None = None


class SystemMessage(msgspec.Struct, frozen=True, tag="system", tag_field="role"):
    content: str | list[TextPart]
    name: str | None = None


class DeveloperMessage(msgspec.Struct, frozen=True, tag="developer", tag_field="role"):
    content: str | list[TextPart]
    name: str | None = None


class UserMessage(msgspec.Struct, frozen=True, tag="user", tag_field="role"):
    content: str | list[UserPart]
    name: str | None = None


class AssistantMessage(msgspec.Struct, frozen=True, tag="assistant", tag_field="role"):
    content: str | list[AssistantPart] | None = None
    refusal: str | None = None
    tool_calls: list[ToolCallWire] | None = None
    function_call: FunctionCallWire | None = None  # legacy
    name: str | None = None
    audio: dict[str, Any] | None = None
    reasoning_content: str | None = None  # DeepSeek / vLLM convention, echoed by some clients


class ToolMessage(msgspec.Struct, frozen=True, tag="tool", tag_field="role"):
    tool_call_id: str
    content: str | list[TextPart]


class FunctionMessage(msgspec.Struct, frozen=True, tag="function", tag_field="role"):
    name: str
    content: str | None = None


ChatMessage = (
    SystemMessage
    | DeveloperMessage
    | UserMessage
    | AssistantMessage
    | ToolMessage
    | FunctionMessage
)

# --------------------------------------------------------------------------- tools, formats


class FunctionDef(msgspec.Struct, frozen=True):
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ToolWire(msgspec.Struct, frozen=True):
    type: str = "function"
    function: FunctionDef | None = None


class JsonSchemaSpec(msgspec.Struct, frozen=True):
    name: str
    schema: dict[str, Any] | None = None
    description: str | None = None
    strict: bool | None = None


class ResponseFormatText(msgspec.Struct, frozen=True, tag="text", tag_field="type"):
    pass


class ResponseFormatJsonObject(msgspec.Struct, frozen=True, tag="json_object", tag_field="type"):
    pass


class ResponseFormatJsonSchema(msgspec.Struct, frozen=True, tag="json_schema", tag_field="type"):
    json_schema: JsonSchemaSpec


ResponseFormat = ResponseFormatText | ResponseFormatJsonObject | ResponseFormatJsonSchema


class StreamOptions(msgspec.Struct, frozen=True):
    include_usage: bool | None = None


# --------------------------------------------------------------------------- the request

PositiveInt = Annotated[int, msgspec.Meta(ge=1)]


class ChatRequestWire(msgspec.Struct, frozen=True):
    model: str
    messages: list[ChatMessage]
    max_tokens: PositiveInt | None = None
    max_completion_tokens: PositiveInt | None = None
    temperature: Annotated[float, msgspec.Meta(ge=0, le=2)] | None = None
    top_p: Annotated[float, msgspec.Meta(ge=0, le=1)] | None = None
    top_k: PositiveInt | None = None  # a vendor extra (vLLM, OpenRouter) Anthropic also has
    stop: str | list[str] | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    tools: list[ToolWire] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    functions: list[FunctionDef] | None = None  # legacy
    function_call: str | dict[str, Any] | None = None  # legacy
    reasoning_effort: str | None = None
    response_format: ResponseFormat | None = None
    user: str | None = None
    safety_identifier: str | None = None
    # Read only to say they were dropped.
    n: PositiveInt | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logit_bias: dict[str, Any] | None = None
    audio: Any = None
    modalities: list[str] | None = None
    metadata: dict[str, Any] | None = None
    store: bool | None = None
    service_tier: str | None = None
    prediction: Any = None
    web_search_options: Any = None
    verbosity: str | None = None
    prompt_cache_key: str | None = None
    prompt_cache_retention: str | None = None


chat_request_decoder = msgspec.json.Decoder(ChatRequestWire)
_KNOWN = frozenset(ChatRequestWire.__struct_fields__)


def unknown_chat_fields(top_level_keys: Any) -> list[str]:
    """The top-level names the door does not read (vendor extras), in the caller's order."""
    return [key for key in top_level_keys if key not in _KNOWN]
