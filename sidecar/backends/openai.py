"""The OpenAI-compatible Chat Completions backend (OpenAI, vLLM, Ollama, LM Studio...).

Each attempt builds a fresh request body with ``translate.openai_request`` (so a retry or a
fallback never reuses another attempt's state), POSTs it to ``{base_url}/chat/completions`` with
the configured key, and turns the answer back into Anthropic shapes: a whole ``Message`` via
``translate.openai_response``, or stream events via a fresh ``OpenAIStreamTranslator`` fed one
SSE frame at a time. Token counting is an estimate: Chat Completions has no counting endpoint.

A call from an OpenAI caller (``call.openai_body``) is relayed instead: the caller's own body
goes up and the upstream's answer and chunks come back as they are (``openai_wire``).

Other Chat Completions services (Azure OpenAI, ``azure.py``) subclass it and override the
three parts that differ: the key sent with every request (``_session_headers``), the path for
a model (``_path``) and the per-request headers (``_headers``, async so that a bearer token can
be refreshed first); plus ``to_error``, the mapping of the service's error responses. They
relay an OpenAI caller's call the same way.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator

import orjson

from sidecar.errors import InvalidRequestError
from sidecar.ids import new_request_id
from sidecar.model import Answer, Call, CountCall, StreamItem, TokenCount
from sidecar.translate.openai_request import OpenAIOptions, to_openai_request
from sidecar.translate.openai_response import from_openai_response
from sidecar.translate.openai_stream import OpenAIStreamTranslator
from sidecar.translate.tokens import estimate_input_tokens
from sidecar.translate.unknown_fields import unknown_fields
from sidecar.translate.upstream_errors import error_from_openai

from .http import ErrorMapper, Session, UpstreamSession
from .openai_wire import OpenAIChunkReader, read_completion, relay_body
from .settings import OpenAISettings


def new_message_id() -> str:
    return "msg_" + new_request_id()[:24]


class OpenAIBackend:
    kind = "openai"
    to_error: ErrorMapper = staticmethod(error_from_openai)

    def __init__(
        self, name: str, config: OpenAISettings, *, session: Session | None = None
    ) -> None:
        self.name = name
        # ``session``: another backend's (Vertex's Gemini route sends Google tokens on it).
        self._client: Session = session or UpstreamSession.for_backend(
            config, self._session_headers(config)
        )
        self._options = OpenAIOptions(
            use_max_completion_tokens=config.max_completion_tokens,
            system_role=config.system_role,
            drop_sampling=config.drop_sampling,
            supports_top_k=config.supports_top_k,
            stream_usage=config.stream_usage,
            reasoning_effort=config.reasoning_effort,
        )

    def _session_headers(self, config: OpenAISettings) -> dict[str, str]:
        """Headers sent with every request: the configured key."""
        return {"authorization": f"Bearer {config.api_key}"} if config.api_key else {}

    def _path(self, model: str) -> str:
        """The path (after ``base_url``) that answers Chat Completions for ``model``."""
        return "/chat/completions"

    async def _headers(self, call: Call) -> dict[str, str]:
        return {"x-request-id": call.request_id}

    def _body(self, call: Call, model: str, *, stream: bool, notes: list[str]) -> bytes:
        try:
            body = orjson.dumps(
                to_openai_request(
                    call.request, model, stream=stream, options=self._options, notes=notes
                )
            )
        except TypeError as exc:  # orjson's JSONEncodeError is one: an int past 64 bits...
            # The caller's values, not ours: a 400 before anything is sent.
            raise InvalidRequestError(
                f"the request cannot be sent to {self.name} (an OpenAI-compatible upstream): "
                f"{exc} (integers must fit in 64 bits)"
            ) from None
        if call.raw_body is not None:
            # Fields this sidecar does not model reach an Anthropic upstream; here they are lost.
            notes += [f"field:{name}" for name in unknown_fields(call.raw_body)]
        notes += call.unmodelled
        return body

    async def create(
        self, call: Call, model: str, notes: list[str], *, connect_timeout: float
    ) -> Answer:
        if call.openai_body is not None:  # the caller speaks OpenAI too: relayed
            body, _ = relay_body(
                call.openai_body, call.request.model, model, stream=False, want_usage=False
            )
        else:
            body = self._body(call, model, stream=False, notes=notes)
        content = await self._client.post_json(
            self.name,
            self._path(model),
            body,
            await self._headers(call),
            self.to_error,
            connect_timeout,
        )
        if call.openai_body is not None:
            return read_completion(self.name, content)
        return from_openai_response(
            content, message_id=new_message_id(), model=call.request.model, notes=notes
        )

    async def stream(
        self, call: Call, model: str, notes: list[str], *, connect_timeout: float
    ) -> AsyncGenerator[list[StreamItem], None]:
        translator: OpenAIStreamTranslator | OpenAIChunkReader
        if call.openai_body is not None:  # the caller speaks OpenAI too: relayed
            body, ours = relay_body(
                call.openai_body,
                call.request.model,
                model,
                stream=True,
                want_usage=self._options.stream_usage,
            )
            translator = OpenAIChunkReader(self.name, hide_usage=ours)
        else:
            body = self._body(call, model, stream=True, notes=notes)
            translator = OpenAIStreamTranslator(
                message_id=new_message_id(),
                model=call.request.model,
                input_tokens=estimate_input_tokens(call.request),
                notes=notes,
            )
        frames = self._client.post_sse(
            self.name,
            self._path(model),
            body,
            await self._headers(call),
            self.to_error,
            connect_timeout,
        )
        try:
            async for batch in frames:
                if batch is None:
                    last: list[StreamItem] = [*translator.finish()]
                    if last:
                        yield last
                    return
                events: list[StreamItem] = []
                for frame in batch:
                    events += translator.feed(frame.data)
                if events:
                    yield events
        finally:
            await frames.aclose()

    async def count_tokens(self, call: CountCall, model: str) -> TokenCount:
        return TokenCount(input_tokens=estimate_input_tokens(call.request), estimated=True)

    async def aclose(self) -> None:
        await self._client.aclose()
