"""The OpenAI door: Chat Completions (``POST /v1/chat/completions``) and ``GET /v1/models``.

Each handler is parse → engine → render, over the same engine as the Anthropic door (same
chains, fallback, retries, deadlines, breakers; ``surface="openai"`` in metrics and logs).

How a request goes (DESIGN.md, "Dialects"): the body is translated once into an Anthropic
request (``translate.openai_chat_to_anthropic``: a 400 naming the field for what is not OpenAI's
protocol, or cannot be sent to every target a chain may fall back to), and the ``Call`` carries
both: ``request``, what an Anthropic-protocol target is sent, and ``openai_body``, the caller's
own bytes, which an OpenAI-compatible target relays as they are. So the answer is either

* **relayed** (``RawChatCompletion``, ``RawChatChunk``): the upstream's own JSON and chunks go
  to the caller byte for byte, unmodelled fields included, and nothing is degraded; or
* **translated** (an Anthropic ``Message`` / events, relayed or ours): into a
  ``chat.completion`` (``to_chat_completion``) or chunks (``AnthropicToOpenAIChunks``); what
  the request's translation lost is named in ``x-anyllm-degradation`` (the engine adds the
  call's ``openai_notes`` for such a target), and so is what the answer's loses, when known
  before the headers go out.

Streams are SSE in OpenAI's framing (``data: {chunk}``, the last ``data: [DONE]``). The commit
point is the engine's: before the first content a failure falls back invisibly; after it the
stream ends with an in-band ``data: {"error": {...}}`` frame and no ``[DONE]`` (the openai SDKs
raise on it, and take a stream that just stops as complete). Errors before that are OpenAI's
error body with OpenAI's status codes (``translate.openai_errors``); the engine's outcome goes
out as the same ``x-anyllm-*`` headers as on the Anthropic door.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

import orjson

from sidecar.engine.api import EngineApi, EngineStreamApi
from sidecar.errors import (
    FailureKind,
    InternalError,
    InvalidRequestError,
    NotFoundError,
    SidecarError,
    UpstreamError,
)
from sidecar.ids import new_request_id
from sidecar.model import Call, RawChatChunk, RawChatCompletion, StreamItem
from sidecar.translate.anthropic_to_openai_chat import (
    SSE_DONE,
    AnthropicToOpenAIChunks,
    sse_chunk,
    to_chat_completion,
)
from sidecar.translate.openai_chat_to_anthropic import AnthropicOptions, to_anthropic_request
from sidecar.translate.openai_errors import openai_error, sse_error
from sidecar.translate.relayed_to_model import TypedEvents, typed_message

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

OWNER = "anyllm-sidecar"


def model_entry(name: str) -> dict[str, object]:
    return {"id": name, "object": "model", "created": 0, "owned_by": OWNER}


def new_completion_id() -> str:
    return "chatcmpl-" + new_request_id()[:24]


class OpenAIDoor:
    def __init__(
        self,
        engine: EngineApi,
        model_names: Callable[[], list[str]],
        *,
        options: AnthropicOptions | None = None,
        report_degradations: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._engine = engine
        self._model_names = model_names
        self._options = options or AnthropicOptions()
        self._report = report_degradations
        self._clock = clock

    def routes(self) -> Mapping[tuple[str, str], Handler]:
        return {
            ("POST", "/v1/chat/completions"): self._chat,
            ("GET", "/v1/models"): self._models,
            ("GET", "/v1/models/*"): self._model,
        }

    def claims(self, exchange: Exchange) -> bool:
        # Every request the Anthropic door does not claim (it has an anthropic-version header).
        return exchange.header(b"anthropic-version") is None

    async def send_error(self, exchange: Exchange, error: SidecarError) -> None:
        shown = openai_error(error)
        body = orjson.dumps(shown.body)
        await send_json(
            exchange.send, shown.status, body, error_metadata(error, exchange.request_id)
        )

    # ------------------------------------------------------------------ chat completions

    async def _chat(self, exchange: Exchange) -> None:
        body = await exchange.body()
        check_body(body)
        notes: list[str] = []
        try:
            chat = to_anthropic_request(body, notes=notes, options=self._options)
        except RecursionError:  # the depth check keeps well below it; never a 500 if not
            raise InvalidRequestError(
                "The request body nests arrays and objects too deeply"
            ) from None
        call = Call(
            request=chat.request,
            request_id=exchange.request_id,
            chain=exchange.header(b"x-anyllm-chain"),
            deadline=exchange.deadline(),
            surface="openai",
            openai_body=body,
            openai_notes=tuple(notes),
        )

        async def work(finished: Finished) -> None:
            if chat.stream:
                await self._stream(call, chat.include_usage, exchange, finished)
                return
            answer, outcome = await self._engine.create(call)
            finished.done = True
            if isinstance(answer, RawChatCompletion):
                out = answer.body
            else:
                message = typed_message(answer, self._notes(outcome.degradations))
                completion = to_chat_completion(
                    message,
                    completion_id=new_completion_id(),
                    created=int(self._clock()),
                    model=call.request.model,
                    notes=self._notes(outcome.degradations),
                )
                out = orjson.dumps(completion)
            await send_json(exchange.send, 200, out, outcome.metadata())

        await run_watched(exchange, work)

    def _notes(self, degradations: list[str]) -> list[str]:
        """Where the answer's translation names what it lost (nowhere when not reported)."""
        return degradations if self._report else []

    async def _stream(
        self, call: Call, include_usage: bool, exchange: Exchange, finished: Finished
    ) -> None:
        send = exchange.send
        stream = await self._engine.open_stream(call)
        try:
            await start_sse(send, stream.outcome.metadata())
            try:
                ended = await self._send_chunks(stream, call, include_usage, exchange)
            except SidecarError as exc:
                # After the commit point nothing is retried: say so in-band, never end quietly.
                await send_more(send, sse_error(exc))
            except Exception as exc:  # a bug of ours must still end the stream explicitly
                error = InternalError(f"internal error: {type(exc).__name__}")
                await send_more(send, sse_error(error))
            else:
                if not ended:  # the engine ends complete streams only; never a quiet end
                    cut = UpstreamError("the stream ended early", kind=FailureKind.INCOMPLETE)
                    await send_more(send, sse_error(cut))
            finished.done = True
            await end_body(send)
        finally:
            await stream.aclose()

    async def _send_chunks(
        self, stream: EngineStreamApi, call: Call, include_usage: bool, exchange: Exchange
    ) -> bool:
        """Send the stream's chunks, relayed or translated; whether it ended with ``[DONE]``."""
        chunks: _Translated | None = None
        first = True
        async for batch in stream:
            if first:  # an OpenAI upstream's own chunks, or an Anthropic stream to translate
                first = False
                if type(batch[0]) is not RawChatChunk:
                    chunks = _Translated(
                        AnthropicToOpenAIChunks(
                            completion_id=new_completion_id(),
                            created=int(self._clock()),
                            model=call.request.model,
                            include_usage=include_usage,
                            notes=self._notes(stream.outcome.degradations),
                        )
                    )
            if chunks is None:
                data, done = _relayed(batch)
            else:
                data, done = chunks.encode(batch)
            if data:
                await send_more(exchange.send, data)
            if done:
                return True
        return False

    # ------------------------------------------------------------------ models

    async def _models(self, exchange: Exchange) -> None:
        body = {"object": "list", "data": [model_entry(name) for name in self._model_names()]}
        metadata = [("x-request-id", exchange.request_id)]
        await send_json(exchange.send, 200, orjson.dumps(body), metadata)

    async def _model(self, exchange: Exchange) -> None:
        name = exchange.path.removeprefix("/v1/models/")
        if name not in self._model_names():
            raise NotFoundError(f"model: {name!r} is not a configured model or chain")
        metadata = [("x-request-id", exchange.request_id)]
        await send_json(exchange.send, 200, orjson.dumps(model_entry(name)), metadata)


def _relayed(batch: list[StreamItem]) -> tuple[bytes, bool]:
    """An OpenAI upstream's own frames, in OpenAI's framing, and whether ``[DONE]`` was one."""
    out = []
    done = False
    for item in batch:
        assert type(item) is RawChatChunk
        data = item.data
        if b"\n" in data:  # JSON sent over several data: lines stays several lines
            data = data.replace(b"\r\n", b"\n").replace(b"\n", b"\ndata: ")
        out.append(b"data: " + data + b"\n\n")
        done = item.done
    return b"".join(out), done


class _Translated:
    """An Anthropic stream (relayed or ours) as OpenAI chunks, batch by batch."""

    __slots__ = ("_chunks", "_events")

    def __init__(self, chunks: AnthropicToOpenAIChunks) -> None:
        self._chunks = chunks
        self._events = TypedEvents(chunks.notes)

    def encode(self, batch: list[StreamItem]) -> tuple[bytes, bool]:
        out = b"".join(sse_chunk(c) for c in self._chunks.feed_many(self._events.feed(batch)))
        if self._chunks.done:
            return out + SSE_DONE, True
        return out, False
