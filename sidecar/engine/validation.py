"""Checks on a decoded request that the type system cannot express.

The decoder already guarantees types, required fields and known ``type`` tags; what is left are
ranges and cross-field rules the Anthropic API enforces. Each failure names the field.
"""

from __future__ import annotations

from sidecar.errors import InvalidRequestError
from sidecar.model import CountTokensRequest, MessagesRequest

# Integers every upstream can take (JSON encoders and the gRPC types stop at 64 bits).
MAX_INT = 2**63 - 1


def _fail(field: str, message: str) -> InvalidRequestError:
    return InvalidRequestError(f"{field}: {message}", field=field)


def check_request(request: MessagesRequest | CountTokensRequest) -> None:
    """Raise ``InvalidRequestError`` naming the field when ``request`` breaks an API rule."""
    if not request.model:
        raise _fail("model", "must be a non-empty string")
    if not request.messages:
        raise _fail("messages", "at least one message is required")
    for i, message in enumerate(request.messages):
        if (
            isinstance(message.content, list)
            and not message.content
            and i != len(request.messages) - 1
        ):
            raise _fail(f"messages[{i}].content", "must not be empty")
    if request.tools:
        seen: set[str] = set()
        for i, tool in enumerate(request.tools):
            if tool.type is None and tool.input_schema is None:
                raise _fail(f"tools[{i}].input_schema", "required for a client tool")
            if tool.name in seen:
                raise _fail(f"tools[{i}].name", f"duplicate tool name {tool.name!r}")
            seen.add(tool.name)
    if isinstance(request, CountTokensRequest):
        return
    if request.max_tokens < 1:
        raise _fail("max_tokens", f"must be at least 1, got {request.max_tokens}")
    if request.max_tokens > MAX_INT:
        raise _fail("max_tokens", f"must be at most {MAX_INT}, got {request.max_tokens}")
    if request.temperature is not None and not 0.0 <= request.temperature <= 1.0:
        raise _fail("temperature", f"must be between 0 and 1, got {request.temperature}")
    if request.top_p is not None and not 0.0 <= request.top_p <= 1.0:
        raise _fail("top_p", f"must be between 0 and 1, got {request.top_p}")
    if request.top_k is not None and not 0 <= request.top_k <= MAX_INT:
        raise _fail("top_k", f"must be between 0 and {MAX_INT}, got {request.top_k}")
