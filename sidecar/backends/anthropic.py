"""The native Anthropic backend: no translation, the request and the stream relayed as they are.

A request that came over HTTP is sent upstream as the caller's own bytes (only ``model`` is
rewritten when the chain names another upstream model), so fields this sidecar does not know
still reach Anthropic. Every ``anthropic-*`` header of the caller passes
through (the key is the configured one, never the caller's), and Anthropic's ``anthropic-*`` and
``request-id`` response headers come back. The answer and each stream event are relayed as the
upstream sent them: ``anthropic_wire`` reads only what the engine needs, leniently, so a new
stop reason, block or event type is never a failure. Token counting sends the caller's own
count_tokens body.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator

import msgspec
import orjson

from sidecar.errors import FailureKind, UpstreamError
from sidecar.model import (
    Call,
    CountCall,
    RawMessage,
    StreamItem,
    TokenCount,
    json_encoder,
)
from sidecar.translate.upstream_errors import error_from_anthropic

from .anthropic_wire import AnthropicEventReader, read_message
from .http import UpstreamSession
from .relay_body import with_model
from .settings import AnthropicSettings


class AnthropicBackend:
    kind = "anthropic"

    def __init__(self, name: str, config: AnthropicSettings) -> None:
        self.name = name
        self._version = config.anthropic_version
        key = {"x-api-key": config.api_key} if config.api_key else {}
        self._client = UpstreamSession.for_backend(config, key)

    def _headers(self, call: Call) -> dict[str, str]:
        headers = {"anthropic-version": self._version, "x-request-id": call.request_id}
        headers.update(call.passthrough_headers)
        return headers

    @staticmethod
    def _body(call: Call, model: str, *, stream: bool) -> bytes:
        if call.raw_body is not None:
            if model == call.request.model and bool(call.request.stream) == stream:
                return call.raw_body
            return with_model(call.raw_body, model, stream=stream)
        request = msgspec.structs.replace(call.request, model=model, stream=stream or None)
        return json_encoder.encode(request)

    async def create(
        self, call: Call, model: str, notes: list[str], *, connect_timeout: float
    ) -> RawMessage:
        headers: list[tuple[str, str]] = []
        content = await self._client.post_json(
            self.name,
            "/v1/messages",
            self._body(call, model, stream=False),
            self._headers(call),
            error_from_anthropic,
            connect_timeout,
            headers_out=headers,
        )
        return read_message(self.name, content, tuple(headers))

    async def stream(
        self, call: Call, model: str, notes: list[str], *, connect_timeout: float
    ) -> AsyncGenerator[list[StreamItem], None]:
        headers: list[tuple[str, str]] = []
        frames = self._client.post_sse(
            self.name,
            "/v1/messages",
            self._body(call, model, stream=True),
            self._headers(call),
            error_from_anthropic,
            connect_timeout,
            headers_out=headers,
        )
        reader: AnthropicEventReader | None = None
        try:
            async for batch in frames:
                if reader is None:
                    reader = AnthropicEventReader(self.name, tuple(headers))
                if batch is None:
                    if reader.stopped:
                        return
                    raise reader.incomplete()
                if reader.stopped:
                    continue  # read to the end of the body so the connection can be reused
                events: list[StreamItem] = []
                for frame in batch:
                    events.append(reader.feed(frame.event, frame.data))
                    if reader.stopped:
                        break
                if events:
                    yield events
        finally:
            await frames.aclose()

    async def count_tokens(self, call: CountCall, model: str) -> TokenCount:
        if call.raw_body is not None and model == call.request.model:
            body = call.raw_body  # the caller's own fields (cache_control, betas...) all reach it
        elif call.raw_body is not None:
            doc = orjson.loads(call.raw_body)
            doc["model"] = model
            body = orjson.dumps(doc)
        else:
            body = json_encoder.encode(msgspec.structs.replace(call.request, model=model))
        headers = {"anthropic-version": self._version, "x-request-id": call.request_id}
        headers.update(call.passthrough_headers)
        content = await self._client.post_json(
            self.name, "/v1/messages/count_tokens", body, headers, error_from_anthropic
        )
        try:
            return TokenCount(input_tokens=int(orjson.loads(content)["input_tokens"]))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise UpstreamError(
                f"{self.name}: unreadable token count",
                kind=FailureKind.INVALID_RESPONSE,
                backend=self.name,
            ) from exc

    async def aclose(self) -> None:
        await self._client.aclose()
