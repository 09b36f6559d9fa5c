"""The Anthropic door: the Messages API (``/v1/messages``, ``count_tokens``, ``/v1/models``).

Each handler is parse → engine → render. The body is decoded and validated by msgspec straight
into the internal types (strictly, then leniently for what the model does not know yet:
``translate.anthropic_request``), handed to the engine, and the answer sent back: a relayed
upstream's own bytes, or our encoding of a translated answer; SSE with the exact Anthropic
event names. Errors are the Anthropic error body with Anthropic's status codes; the engine's
outcome (answering backend, attempts, degradations, exhausted) goes out as ``x-anyllm-*``
headers. After a stream's commit point a failure is an in-band ``error`` event.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import TypeVar

import msgspec

from sidecar.engine.api import EngineApi
from sidecar.errors import InternalError, InvalidRequestError, NotFoundError, SidecarError
from sidecar.model import (
    Call,
    CountCall,
    CountTokensRequest,
    MessagesRequest,
    RawMessage,
    count_tokens_decoder,
    json_encoder,
    request_decoder,
)
from sidecar.translate.anthropic_request import lenient_convert, parse

from .asgi import (
    Exchange,
    Finished,
    Handler,
    end_body,
    error_metadata,
    run_watched,
    send_json,
    send_more,
    start_sse,
)
from .limits import check_body
from .sse import encode_error_event, encode_events

R = TypeVar("R", MessagesRequest, CountTokensRequest)
_MSGSPEC_PATH = re.compile(r"^(.*) - at `\$\.?(.*)`$", re.DOTALL)


def describe_decode_error(exc: msgspec.DecodeError) -> tuple[str, str | None]:
    """A message that names the field, and the field path, from a msgspec error."""
    text = str(exc)
    match = _MSGSPEC_PATH.match(text)
    if match is None:
        if isinstance(exc, msgspec.ValidationError):
            return f"Invalid request: {text}", None
        return f"The request body is not valid JSON: {text}", None
    problem, path = match.group(1), match.group(2)
    return f"{path}: {problem}", path


def error_body(error: SidecarError, request_id: str) -> bytes:
    return json_encoder.encode(
        {
            "type": "error",
            "error": {"type": error.error_type, "message": error.message},
            "request_id": request_id,
        }
    )


def model_entry(name: str) -> dict[str, str]:
    return {
        "type": "model",
        "id": name,
        "display_name": name,
        "created_at": "2025-01-01T00:00:00Z",
    }


class AnthropicDoor:
    def __init__(self, engine: EngineApi, model_names: Callable[[], list[str]]) -> None:
        self._engine = engine
        self._model_names = model_names

    def routes(self) -> Mapping[tuple[str, str], Handler]:
        return {
            ("POST", "/v1/messages"): self._messages,
            ("POST", "/v1/messages/count_tokens"): self._count_tokens,
            ("GET", "/v1/models"): self._models,
            ("GET", "/v1/models/*"): self._model,
        }

    def claims(self, exchange: Exchange) -> bool:
        # The Anthropic SDKs always send it; OpenAI's never do (both may send a Bearer token).
        return exchange.header(b"anthropic-version") is not None

    async def send_error(self, exchange: Exchange, error: SidecarError) -> None:
        metadata = error_metadata(error, exchange.request_id)
        body = error_body(error, exchange.request_id)
        await send_json(exchange.send, error.http_status, body, metadata)

    # ------------------------------------------------------------------ messages

    async def _messages(self, exchange: Exchange) -> None:
        body = await exchange.body()
        request, unmodelled = decode_request(body, MessagesRequest)
        call = Call(
            request=request,
            request_id=exchange.request_id,
            chain=exchange.header(b"x-anyllm-chain"),
            deadline=exchange.deadline(),
            passthrough_headers=passthrough(exchange),
            raw_body=body,
            unmodelled=unmodelled,
        )

        async def work(finished: Finished) -> None:
            if call.request.stream:
                await self._stream(call, exchange, finished)
                return
            message, outcome = await self._engine.create(call)
            finished.done = True
            out = message.body if type(message) is RawMessage else json_encoder.encode(message)
            await send_json(exchange.send, 200, out, outcome.metadata())

        await run_watched(exchange, work)

    async def _stream(self, call: Call, exchange: Exchange, finished: Finished) -> None:
        send = exchange.send
        stream = await self._engine.open_stream(call)
        try:
            await start_sse(send, stream.outcome.metadata())
            try:
                async for batch in stream:
                    await send_more(send, encode_events(batch))
            except SidecarError as exc:
                # After the commit point nothing is retried: say so in-band, never end quietly.
                await send_more(send, encode_error_event(exc))
            except Exception as exc:  # a bug of ours must still end the stream explicitly
                error = InternalError(f"internal error: {type(exc).__name__}")
                await send_more(send, encode_error_event(error))
            finished.done = True
            await end_body(send)
        finally:
            await stream.aclose()

    async def _count_tokens(self, exchange: Exchange) -> None:
        body = await exchange.body()
        request, unmodelled = decode_request(body, CountTokensRequest)
        call = CountCall(
            request=request,
            request_id=exchange.request_id,
            chain=exchange.header(b"x-anyllm-chain"),
            passthrough_headers=passthrough(exchange),
            raw_body=body,
            unmodelled=unmodelled,
        )
        count, outcome = await self._engine.count_tokens(call)
        metadata = outcome.metadata()
        metadata.append(("x-anyllm-token-count", "estimated" if count.estimated else "exact"))
        out = json_encoder.encode({"input_tokens": count.input_tokens})
        await send_json(exchange.send, 200, out, metadata)

    # ------------------------------------------------------------------ models

    async def _models(self, exchange: Exchange) -> None:
        names = self._model_names()
        body = {
            "data": [model_entry(name) for name in names],
            "has_more": False,
            "first_id": names[0] if names else None,
            "last_id": names[-1] if names else None,
        }
        metadata = [("request-id", exchange.request_id)]
        await send_json(exchange.send, 200, json_encoder.encode(body), metadata)

    async def _model(self, exchange: Exchange) -> None:
        name = exchange.path.removeprefix("/v1/models/")
        if name not in self._model_names():
            raise NotFoundError(f"model: {name!r} is not a configured model or chain")
        await send_json(exchange.send, 200, json_encoder.encode(model_entry(name)), [])


def decode_request(body: bytes, into: type[R]) -> tuple[R, tuple[str, ...]]:
    """The request in ``body``, and what was left out of it because the model does not know
    it (``translate.anthropic_request``); a request wrong in what we do model is a 400."""
    decoder = request_decoder if into is MessagesRequest else count_tokens_decoder
    check_body(body)
    try:
        return decoder.decode(body), ()  # type: ignore[return-value]
    except RecursionError:  # the depth check keeps well below it; never a 500 if not
        raise InvalidRequestError("The request body nests arrays and objects too deeply") from None
    except msgspec.DecodeError as exc:
        lenient = (
            lenient_convert(parse(body), into) if isinstance(exc, msgspec.ValidationError) else None
        )
        if lenient is None:
            message, field = describe_decode_error(exc)
            raise InvalidRequestError(message, field=field) from None
        return lenient


def passthrough(exchange: Exchange) -> tuple[tuple[str, str], ...]:
    """The caller's ``anthropic-*`` headers (version, betas, and whatever comes next), for an
    Anthropic-protocol upstream. Credentials are never among them: the configured key is used."""
    return tuple(
        [
            (name.decode("latin-1"), value.decode("latin-1"))
            for name, value in exchange.scope["headers"]
            if name.startswith(b"anthropic-")
        ]
    )
