"""Pure, sans-IO translation between the Anthropic Messages API and OpenAI Chat Completions.

No sockets, no asyncio, no clocks, no logging: everything here takes plain values (bytes, the
model types, ids and times passed in) and returns plain values, so each edge case is a table row
in a test. Imports only the standard library, msgspec/orjson, ``sidecar.model`` and
``sidecar.errors``.

* ``sse``: SSE framing (bytes -> frames, capped) and the frame encoder.
* ``openai_request``: Anthropic request -> Chat Completions body, with degradation notes.
* ``openai_response``: Chat Completions body -> Anthropic ``Message``.
* ``openai_stream``: the streaming state machine (chunk payloads -> Anthropic events).
* ``upstream_errors``: upstream error responses -> ``UpstreamError``; ``Retry-After``.
* ``tokens``: an input-token estimate for upstreams that cannot count.

See docs/translation.md for the field-by-field table.
"""

from sidecar.translate.openai_request import OpenAIOptions, to_openai_request
from sidecar.translate.openai_response import from_openai_response, map_finish_reason
from sidecar.translate.openai_stream import OpenAIStreamTranslator
from sidecar.translate.sse import SSEDecoder, SSEFrame, encode_sse
from sidecar.translate.tokens import estimate_input_tokens
from sidecar.translate.upstream_errors import (
    error_from_anthropic,
    error_from_openai,
    parse_retry_after,
)

__all__ = [
    "OpenAIOptions",
    "OpenAIStreamTranslator",
    "SSEDecoder",
    "SSEFrame",
    "encode_sse",
    "error_from_anthropic",
    "error_from_openai",
    "estimate_input_tokens",
    "from_openai_response",
    "map_finish_reason",
    "parse_retry_after",
    "to_openai_request",
]
