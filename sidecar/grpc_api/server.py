"""The gRPC surface: ``anyllm.sidecar.v1.MessagesService`` on grpc.aio, plus health and reflection.

Each handler is parse → engine → render:

1. ``_call`` reads the call metadata (``x-request-id`` or a fresh uuid4 hex, ``x-anyllm-chain``,
   ``anthropic-version`` / ``anthropic-beta`` to pass through; ``authorization`` is never read
   into anything that is logged) and the gRPC deadline (``context.time_remaining()`` → an
   absolute ``Call.deadline`` on the loop clock), and converts the request (``request_body``:
   the typed request and the Anthropic JSON body, escape hatch included).
2. The engine answers (``sidecar.engine.api.EngineApi``, the one engine protocol of every door;
   a relayed answer becomes protobuf in ``relayed``, nothing lost).
3. The answer is rendered: a unary reply with the outcome as trailing metadata; a stream whose
   initial metadata (the outcome once the stream has committed) goes out before its first event,
   its events written by ``relay`` (which merges deltas while the caller is behind).

Errors: a ``SidecarError`` ends the call with the status its ``grpc_code`` names, the message,
its ``metadata`` pairs as trailing metadata, and a ``google.rpc.Status`` in
``grpc-status-details-bin`` (built by grpcio-status) carrying ``ErrorInfo`` (reason, domain
``anyllm.dev``, metadata ``error_type``/``backend``/``attempts``/...), ``RetryInfo`` when a wait is
known and ``BadRequest`` naming the field of an invalid request. Anything else is a bug of ours:
INTERNAL with a generic message and the request id, the exception logged (type only), never sent.
A failure after a stream has committed ends it the same way, so no client mistakes a broken stream
for a complete one.

Cancellation: when the client cancels or its deadline passes, grpc.aio cancels the handler task
(``CancelledError`` at an ``await``); the stream handler is a coroutine that writes with
``context.write`` (not an async generator, which would see ``GeneratorExit`` at a ``yield``) and
closes the engine stream in ``finally``, so the upstream request is cancelled at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any, NoReturn

import grpc
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer  # = HealthServicer
from grpc_reflection.v1alpha import reflection
from grpc_status import rpc_status

from sidecar.auth import TokenCheck
from sidecar.engine.api import EngineApi, EngineStreamApi
from sidecar.engine.outcome import ATTEMPTS_KEY, BACKEND_KEY, EXHAUSTED_KEY, HEDGED_KEY
from sidecar.engine.stream import shutdown_error
from sidecar.errors import (
    AuthenticationError,
    InternalError,
    InvalidRequestError,
    SidecarError,
    UpstreamError,
)
from sidecar.grpc_api import convert, request_body
from sidecar.grpc_api.gen.anyllm.sidecar.v1 import messages_pb2 as pb
from sidecar.grpc_api.gen.anyllm.sidecar.v1 import messages_service_pb2 as spb
from sidecar.grpc_api.gen.anyllm.sidecar.v1 import messages_service_pb2_grpc as spb_grpc
from sidecar.grpc_api.parse import Unparsable, add_servicer, parsed
from sidecar.grpc_api.relay import relay
from sidecar.grpc_api.relayed import message_reply
from sidecar.ids import new_request_id
from sidecar.logs import log
from sidecar.model import Call, CountCall

__all__ = [
    "ERROR_DOMAIN",
    "SERVICE_NAME",
    "MessagesServicer",
    "set_not_serving",
    "start_grpc_server",
]

SERVICE_NAME: str = spb.DESCRIPTOR.services_by_name["MessagesService"].full_name
ERROR_DOMAIN = "anyllm.dev"
_MAX_REQUEST_ID = 128

Metadata = Sequence[tuple[str, str]]


# --------------------------------------------------------------------------- metadata in


class _Incoming:
    """What the surface reads from a call's metadata."""

    __slots__ = ("authorization", "chain", "passthrough", "request_id")

    def __init__(self, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        self.request_id = ""
        self.chain: str | None = None
        self.authorization: str | None = None
        passthrough: list[tuple[str, str]] = []
        for key, value in context.invocation_metadata() or ():
            if key == "x-request-id":
                if isinstance(value, str) and 0 < len(value) <= _MAX_REQUEST_ID:
                    self.request_id = value
            elif key == "authorization":
                if isinstance(value, str):
                    self.authorization = value
            elif key == "x-anyllm-chain":
                if isinstance(value, str) and value:
                    self.chain = value
            elif key.startswith("anthropic-") and isinstance(value, str):
                passthrough.append((key, value))
        self.passthrough = tuple(passthrough)
        if not self.request_id:
            self.request_id = new_request_id()


def _deadline(context: grpc.aio.ServicerContext[Any, Any]) -> float | None:
    remaining = context.time_remaining()
    if remaining is None:
        return None
    return asyncio.get_running_loop().time() + remaining


# --------------------------------------------------------------------------- errors out


def _duration(seconds: float) -> duration_pb2.Duration:
    duration = duration_pb2.Duration()
    duration.FromNanoseconds(max(0, round(seconds * 1e9)))
    return duration


def _error_info(error: SidecarError) -> error_details_pb2.ErrorInfo:
    info = error_details_pb2.ErrorInfo(reason=error.reason, domain=ERROR_DOMAIN)
    info.metadata["error_type"] = error.error_type
    outcome = dict(error.metadata)
    backend = error.backend if isinstance(error, UpstreamError) else ""
    backend = outcome.get(BACKEND_KEY, backend)
    if backend:
        info.metadata["backend"] = backend
    if isinstance(error, UpstreamError) and error.status is not None:
        info.metadata["upstream_status"] = str(error.status)
    if ATTEMPTS_KEY in outcome:
        info.metadata["attempts"] = outcome[ATTEMPTS_KEY]
    if EXHAUSTED_KEY in outcome:
        info.metadata["fallback_exhausted"] = outcome[EXHAUSTED_KEY]
    if isinstance(error, InvalidRequestError) and error.field:
        info.metadata["field"] = error.field
    return info


def status_for(error: SidecarError) -> status_pb2.Status:
    """The ``google.rpc.Status`` (with details) a ``SidecarError`` ends a call with."""
    code = (
        grpc.StatusCode[error.grpc_code]
        if error.grpc_code in grpc.StatusCode.__members__
        else (grpc.StatusCode.UNKNOWN)
    )
    status = status_pb2.Status(code=code.value[0], message=error.message)
    status.details.add().Pack(_error_info(error))
    if error.retry_after is not None:
        status.details.add().Pack(
            error_details_pb2.RetryInfo(retry_delay=_duration(error.retry_after))
        )
    if isinstance(error, InvalidRequestError) and error.field:
        violation = error_details_pb2.BadRequest.FieldViolation(
            field=error.field, description=error.message
        )
        status.details.add().Pack(error_details_pb2.BadRequest(field_violations=[violation]))
    return status


async def _abort(
    context: grpc.aio.ServicerContext[Any, Any], error: BaseException, request_id: str
) -> NoReturn:
    """End the call with ``error``'s status (INTERNAL, without details, for a foreign one)."""
    if not isinstance(error, SidecarError):
        log(
            "grpc_internal_error",
            level=logging.ERROR,
            exc=error,
            request_id=request_id,
            exception=type(error).__name__,
        )
        error = InternalError(f"internal error (request id {request_id})")
    status = rpc_status.to_status(status_for(error))
    metadata = tuple(error.metadata) + tuple(status.trailing_metadata)
    await context.abort(status.code, status.details, metadata)
    raise AssertionError("unreachable: abort raises")  # pragma: no cover


# --------------------------------------------------------------------------- the servicer


class MessagesServicer(spb_grpc.MessagesServiceServicer):
    """``anyllm.sidecar.v1.MessagesService`` over an engine."""

    def __init__(self, engine: EngineApi, auth: TokenCheck | None = None) -> None:
        self._engine = engine
        self._auth = auth or TokenCheck(())

    def _admit(self, incoming: _Incoming) -> None:
        if self._auth.enabled and not self._auth.allows(incoming.authorization):
            raise AuthenticationError("a valid sidecar token is required in `authorization`")

    @staticmethod
    def _call(
        request: spb.CreateMessageRequest,
        context: grpc.aio.ServicerContext[Any, Any],
        incoming: _Incoming,
        *,
        stream: bool,
    ) -> Call:
        typed, body, unmodelled = request_body.messages_request(request, stream=stream)
        return Call(
            request=typed,
            request_id=incoming.request_id,
            chain=incoming.chain,
            deadline=_deadline(context),
            passthrough_headers=incoming.passthrough,
            raw_body=body,
            surface="grpc",
            unmodelled=unmodelled,
        )

    async def CreateMessage(  # the rpc's name
        self,
        request: spb.CreateMessageRequest | Unparsable,
        context: grpc.aio.ServicerContext[spb.CreateMessageRequest, pb.Message],
    ) -> pb.Message:
        incoming = _Incoming(context)
        try:
            self._admit(incoming)
            call = self._call(parsed(request), context, incoming, stream=False)
            message, outcome = await self._engine.create(call)
            reply = message_reply(message)
        except Exception as exc:
            await _abort(context, exc, incoming.request_id)
        if outcome.hedge is not None:  # as on streams, a hedge is told in the initial metadata
            await context.send_initial_metadata(((HEDGED_KEY, "true"),))
        context.set_trailing_metadata(outcome.metadata())
        return reply

    async def StreamMessage(  # type: ignore[override]
        self,
        request: spb.CreateMessageRequest | Unparsable,
        context: grpc.aio.ServicerContext[spb.CreateMessageRequest, pb.StreamEvent],
    ) -> None:
        incoming = _Incoming(context)
        stream: EngineStreamApi | None = None
        try:
            self._admit(incoming)
            call = self._call(parsed(request), context, incoming, stream=True)
            stream = await self._engine.open_stream(call)
            # Committed: the outcome so far (backend, attempts) goes out before the first event.
            await context.send_initial_metadata(stream.outcome.metadata())
            await relay(stream, context.write)
        except (Exception, asyncio.CancelledError) as exc:
            # The engine's drain cancels the task iterating a stream, which is this one: when
            # that lands in a write rather than in the engine's read, it is still the explicit
            # "shut down, retry" error the engine would have raised, not a silent end.
            error: BaseException | None = exc
            if isinstance(exc, asyncio.CancelledError):
                error = shutdown_error(exc)
                if error is None:
                    raise
                if stream is not None:
                    error.metadata = stream.outcome.error_metadata()
            assert error is not None
            if stream is not None:
                await _close(stream)
                stream = None
            await _abort(context, error, incoming.request_id)
        finally:
            if stream is not None:  # done, or cancelled by the client / its deadline
                await _close(stream)

    async def CountTokens(
        self,
        request: spb.CountTokensRequest | Unparsable,
        context: grpc.aio.ServicerContext[spb.CountTokensRequest, spb.CountTokensResponse],
    ) -> spb.CountTokensResponse:
        incoming = _Incoming(context)
        try:
            self._admit(incoming)
            typed, body, unmodelled = request_body.count_request(parsed(request))
            call = CountCall(
                request=typed,
                request_id=incoming.request_id,
                chain=incoming.chain,
                passthrough_headers=incoming.passthrough,
                raw_body=body,
                surface="grpc",
                unmodelled=unmodelled,
            )
            count, outcome = await self._engine.count_tokens(call)
        except Exception as exc:
            await _abort(context, exc, incoming.request_id)
        context.set_trailing_metadata(outcome.metadata())
        return convert.token_count_to_proto(count)


async def _close(stream: EngineStreamApi) -> None:
    """Close an engine stream; shielded so a second cancellation cannot skip the upstream close."""
    await asyncio.shield(stream.aclose())


# --------------------------------------------------------------------------- the server


async def start_grpc_server(
    engine: EngineApi,
    address: str,
    *,
    max_message_bytes: int = 16 << 20,
    auth: TokenCheck | None = None,
    tls: tuple[bytes, bytes] | None = None,  # PEM certificate chain and key
) -> tuple[grpc.aio.Server, int, HealthServicer]:
    """Create, bind and start the gRPC server (call inside the running loop).

    Serves ``MessagesService``, ``grpc.health.v1.Health`` (overall ``""`` and ``SERVICE_NAME``
    SERVING) and server reflection (v1alpha). ``address`` may use port 0; the bound port is
    returned. Stop with ``await server.stop(grace)``; flip health first with
    ``set_not_serving(health)`` (or ``await health.enter_graceful_shutdown()``).
    """
    options = [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
    ]
    server = grpc.aio.server(options=options)
    add_servicer(MessagesServicer(engine, auth), server)
    health_servicer = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    if tls is None:
        port = server.add_insecure_port(address)
    else:
        credentials = grpc.ssl_server_credentials([(tls[1], tls[0])])
        port = server.add_secure_port(address, credentials)
    if port == 0:
        raise OSError(f"gRPC: could not bind {address}")
    await server.start()
    for service in ("", SERVICE_NAME):
        await health_servicer.set(service, health_pb2.HealthCheckResponse.SERVING)
    return server, port, health_servicer


async def set_not_serving(health_servicer: HealthServicer) -> None:
    """Report NOT_SERVING for every service (drain); new health watchers see it too."""
    await health_servicer.enter_graceful_shutdown()
