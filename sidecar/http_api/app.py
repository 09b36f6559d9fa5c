"""The HTTP surface: the Anthropic Messages API as a plain ASGI application.

Each handler is parse → engine → render. The body is read once (capped), decoded and validated
by msgspec straight into the internal types, handed to the engine, and the answer encoded
back: a JSON ``message``, or SSE with the exact Anthropic event names. Errors are the Anthropic
error body with the Anthropic status codes; the engine's outcome (answering backend, attempts,
degradations, exhausted) goes out as ``x-anyllm-*`` headers.

Once a request has run for 50 ms, a watcher task waits for the client to go away and cancels
the handler when it does, which cancels the upstream request at once (the engine and backends
close their streams in ``finally``). No framework: routing is a dict lookup on (method, path).
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Protocol, TypeVar

import msgspec

from sidecar.auth import TokenCheck
from sidecar.engine.engine import Engine
from sidecar.errors import (
    AuthenticationError,
    InternalError,
    InvalidRequestError,
    NotFoundError,
    RequestTooLargeError,
    SidecarError,
)
from sidecar.logs import log
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

from .limits import check_depth
from .sse import encode_error_event, encode_events

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_JSON = (b"content-type", b"application/json")
_SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]
# Probes and scrapers reach these without a token.
_OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
R = TypeVar("R", MessagesRequest, CountTokensRequest)
_MSGSPEC_PATH = re.compile(r"^(.*) - at `\$\.?(.*)`$", re.DOTALL)
_TOKEN = re.compile(r"[\x21-\x7e]+")  # printable ASCII, no spaces: safe in any header
_MAX_REQUEST_ID = 128


class Readiness(Protocol):
    @property
    def ready(self) -> bool: ...


class _Finished:
    """``done`` once the final byte is handed to the server, so a late disconnect is no cancel;
    ``gone`` when the client left and the handler was cancelled for it."""

    __slots__ = ("done", "gone")

    def __init__(self) -> None:
        self.done = False
        self.gone = False


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


class HttpApi:
    def __init__(
        self,
        engine: Engine,
        *,
        readiness: Readiness,
        max_body_bytes: int,
        metrics: Callable[[], bytes] | None = None,
        auth: TokenCheck | None = None,
    ) -> None:
        self._engine = engine
        self._auth = auth or TokenCheck(())
        self._metrics = metrics
        self._readiness = readiness
        self._max_body = max_body_bytes
        self._routes: dict[tuple[str, str], Callable[[Scope, Receive, Send, str], Awaitable[None]]]
        self._routes = {
            ("POST", "/v1/messages"): self._messages,
            ("POST", "/v1/messages/count_tokens"): self._count_tokens,
            ("GET", "/v1/models"): self._models,
            ("GET", "/healthz"): self._healthz,
            ("GET", "/readyz"): self._readyz,
            ("GET", "/debug/breakers"): self._breakers,
            ("GET", "/debug/tasks"): self._tasks,
            ("GET", "/metrics"): self._metrics_text,
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return  # lifespan is off; websockets are not served
        request_id = _request_id(scope)
        path: str = scope["path"].rstrip("/") or "/"
        handler = self._routes.get((scope["method"], path))
        try:
            if self._auth.enabled and path not in _OPEN_PATHS and not self._authorized(scope):
                raise AuthenticationError(
                    "a valid sidecar token is required (x-api-key or authorization: Bearer)"
                )
            if handler is None:
                if path.startswith("/v1/models/") and scope["method"] == "GET":
                    await self._model(scope, send, request_id, path.removeprefix("/v1/models/"))
                    return
                if any(p == path for _, p in self._routes):
                    raise InvalidRequestError(f"method {scope['method']} is not allowed on {path}")
                raise _not_found(path)
            await handler(scope, receive, send, request_id)
        except SidecarError as exc:
            await _send_error(send, exc, request_id)
        except _ClientGone:
            return  # the caller left while sending its body: nobody to answer
        except Exception as exc:  # a bug of ours: an Anthropic error body, details in the log
            log("internal_error", level=40, request_id=request_id, error=type(exc).__name__)
            error = InternalError(f"internal error (request {request_id})")
            await _send_error(send, error, request_id)

    def _authorized(self, scope: Scope) -> bool:
        return self._auth.allows(_header(scope, b"x-api-key")) or self._auth.allows(
            _header(scope, b"authorization")
        )

    # ------------------------------------------------------------------ messages

    async def _read_body(self, receive: Receive) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _ClientGone
            chunk: bytes = message.get("body", b"")
            size += len(chunk)
            if size > self._max_body:
                raise RequestTooLargeError(
                    f"request body is larger than the limit of {self._max_body} bytes"
                )
            chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def _call(self, scope: Scope, body: bytes, request_id: str) -> Call:
        request, unmodelled = _decode(body, MessagesRequest)
        deadline = None
        timeout = _header(scope, b"x-anyllm-timeout")
        if timeout is not None:
            try:
                seconds = float(timeout)
            except ValueError:
                seconds = -1.0
            if not seconds > 0:
                raise InvalidRequestError(
                    f"x-anyllm-timeout: expected a positive number of seconds, got {timeout!r}",
                    field="x-anyllm-timeout",
                )
            deadline = asyncio.get_running_loop().time() + seconds
        return Call(
            request=request,
            request_id=request_id,
            chain=_header(scope, b"x-anyllm-chain"),
            deadline=deadline,
            passthrough_headers=_passthrough(scope),
            raw_body=body,
            unmodelled=unmodelled,
        )

    async def _messages(self, scope: Scope, receive: Receive, send: Send, request_id: str) -> None:
        body = await self._read_body(receive)
        call = self._call(scope, body, request_id)
        finished = _Finished()
        watcher = _DisconnectWatch(receive, finished)
        try:
            if call.request.stream:
                await self._stream(call, send, finished)
            else:
                message, outcome = await self._engine.create(call)
                finished.done = True
                body = message.body if type(message) is RawMessage else json_encoder.encode(message)
                await _send_json(send, 200, body, outcome.metadata())
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if not finished.gone or task is None:
                raise
            task.uncancel()  # the client left: the upstream work is cancelled, nothing to send
        finally:
            watcher.cancel()

    async def _stream(self, call: Call, send: Send, finished: _Finished) -> None:
        stream = await self._engine.open_stream(call)
        try:
            headers = _SSE_HEADERS + _encode_headers(stream.outcome.metadata())
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            try:
                async for batch in stream:
                    body = encode_events(batch)
                    await send({"type": "http.response.body", "body": body, "more_body": True})
            except SidecarError as exc:
                # After the commit point nothing is retried: say so in-band, never end quietly.
                await send(
                    {
                        "type": "http.response.body",
                        "body": encode_error_event(exc),
                        "more_body": True,
                    }
                )
            except Exception as exc:  # a bug of ours must still end the stream explicitly
                error = InternalError(f"internal error: {type(exc).__name__}")
                await send(
                    {
                        "type": "http.response.body",
                        "body": encode_error_event(error),
                        "more_body": True,
                    }
                )
            finished.done = True
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            await stream.aclose()

    async def _count_tokens(
        self, scope: Scope, receive: Receive, send: Send, request_id: str
    ) -> None:
        body = await self._read_body(receive)
        request, unmodelled = _decode(body, CountTokensRequest)
        call = CountCall(
            request=request,
            request_id=request_id,
            chain=_header(scope, b"x-anyllm-chain"),
            passthrough_headers=_passthrough(scope),
            raw_body=body,
            unmodelled=unmodelled,
        )
        count, outcome = await self._engine.count_tokens(call)
        metadata = outcome.metadata()
        metadata.append(("x-anyllm-token-count", "estimated" if count.estimated else "exact"))
        await _send_json(
            send, 200, json_encoder.encode({"input_tokens": count.input_tokens}), metadata
        )

    # ------------------------------------------------------------------ models, health

    async def _models(self, scope: Scope, receive: Receive, send: Send, request_id: str) -> None:
        names = self._engine.model_names()
        data = [_model_entry(name) for name in names]
        body = {
            "data": data,
            "has_more": False,
            "first_id": names[0] if names else None,
            "last_id": names[-1] if names else None,
        }
        await _send_json(send, 200, json_encoder.encode(body), [("request-id", request_id)])

    async def _model(self, scope: Scope, send: Send, request_id: str, name: str) -> None:
        if name not in self._engine.model_names():
            raise NotFoundError(f"model: {name!r} is not a configured model or chain")
        await _send_json(send, 200, json_encoder.encode(_model_entry(name)), [])

    async def _healthz(self, scope: Scope, receive: Receive, send: Send, request_id: str) -> None:
        await _send_json(send, 200, b'{"status":"ok"}', [])

    async def _breakers(self, scope: Scope, receive: Receive, send: Send, request_id: str) -> None:
        snapshot = self._engine.breakers.snapshot()
        await _send_json(send, 200, json_encoder.encode(snapshot), [])

    async def _metrics_text(
        self, scope: Scope, receive: Receive, send: Send, request_id: str
    ) -> None:
        if self._metrics is None:
            raise _not_found("/metrics")
        body = self._metrics()
        headers = [(b"content-type", b"text/plain; version=0.0.4; charset=utf-8")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _tasks(self, scope: Scope, receive: Receive, send: Send, request_id: str) -> None:
        # Tasks alive in the loop besides this request's own: a leak check for load tests.
        mine = asyncio.current_task()
        names = sorted(
            getattr(task.get_coro(), "__qualname__", "?")
            for task in asyncio.all_tasks()
            if task is not mine
        )
        await _send_json(send, 200, json_encoder.encode({"tasks": len(names), "names": names}), [])

    async def _readyz(self, scope: Scope, receive: Receive, send: Send, request_id: str) -> None:
        if self._readiness.ready:
            await _send_json(send, 200, b'{"status":"ready"}', [])
        else:
            await _send_json(send, 503, b'{"status":"draining"}', [])


class _ClientGone(Exception):
    """The client disconnected before its request body was complete."""


def _too_deep() -> SidecarError:
    return InvalidRequestError("The request body nests arrays and objects too deeply")


def _request_id(scope: Scope) -> str:
    """The caller's ``x-request-id`` when it is a plain token (it is echoed in headers and sent
    upstream), else a fresh one."""
    given = _header(scope, b"x-request-id")
    if given is not None and 0 < len(given) <= _MAX_REQUEST_ID and _TOKEN.fullmatch(given):
        return given
    return uuid.uuid4().hex


def _not_found(path: str) -> SidecarError:
    return NotFoundError(f"no such endpoint: {path}")


def _model_entry(name: str) -> dict[str, str]:
    return {
        "type": "model",
        "id": name,
        "display_name": name,
        "created_at": "2025-01-01T00:00:00Z",
    }


def _decode(body: bytes, into: type[R]) -> tuple[R, tuple[str, ...]]:
    """The request in ``body``, and what was left out of it because the model does not know
    it (``translate.anthropic_request``); a request wrong in what we do model is a 400."""
    decoder = request_decoder if into is MessagesRequest else count_tokens_decoder
    check_depth(body)
    try:
        return decoder.decode(body), ()  # type: ignore[return-value]
    except RecursionError:  # the depth check keeps well below it; never a 500 if not
        raise _too_deep() from None
    except msgspec.DecodeError as exc:
        lenient = (
            lenient_convert(parse(body), into) if isinstance(exc, msgspec.ValidationError) else None
        )
        if lenient is None:
            message, field = describe_decode_error(exc)
            raise InvalidRequestError(message, field=field) from None
        return lenient


def _passthrough(scope: Scope) -> tuple[tuple[str, str], ...]:
    """The caller's ``anthropic-*`` headers (version, betas, and whatever comes next), for an
    Anthropic-protocol upstream. Credentials are never among them: the configured key is used."""
    return tuple(
        (name.decode("latin-1"), value.decode("latin-1"))
        for name, value in scope["headers"]
        if name.startswith(b"anthropic-")
    )


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _encode_headers(pairs: list[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    out = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in pairs]
    if not any(key == "request-id" for key, _ in pairs):  # the upstream's own, when relayed
        for key, value in pairs:
            if key == "x-request-id":
                out.append((b"request-id", value.encode("latin-1")))
    return out


async def _send_json(send: Send, status: int, body: bytes, metadata: list[tuple[str, str]]) -> None:
    headers = [_JSON, *_encode_headers(metadata)]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _send_error(send: Send, error: SidecarError, request_id: str) -> None:
    metadata = error.metadata or [("x-request-id", request_id)]
    if error.retry_after is not None:
        metadata = [*metadata, ("retry-after", str(max(1, round(error.retry_after))))]
    await _send_json(send, error.http_status, error_body(error, request_id), metadata)


# How long a request runs before a task starts watching for its client to leave. Most
# requests that finish sooner never pay for the watcher (a task woken at least once: ~0.1 ms of
# CPU per request, measured with `make bench`); a client that leaves earlier is noticed then.
WATCH_AFTER = 0.05


class _DisconnectWatch:
    """Cancels the handler task when the client disconnects, once the request runs long enough
    to be worth watching."""

    __slots__ = ("_finished", "_handler", "_receive", "_task", "_timer")

    def __init__(self, receive: Receive, finished: _Finished) -> None:
        self._receive = receive
        self._finished = finished
        self._handler = asyncio.current_task()
        self._task: asyncio.Task[None] | None = None
        self._timer = asyncio.get_running_loop().call_later(WATCH_AFTER, self._start)

    def _start(self) -> None:
        if not self._finished.done:
            self._task = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                if not self._finished.done and self._handler is not None:
                    self._finished.gone = True
                    self._handler.cancel()
                return

    def cancel(self) -> None:
        self._timer.cancel()
        if self._task is not None:
            self._task.cancel()
