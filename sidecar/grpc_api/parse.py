"""Requests that do not parse: an INVALID_ARGUMENT naming the limits, not grpc's UNKNOWN.

grpc.aio deserializes a request before the handler runs; when the bytes are not a valid message
(truncated, corrupt, invalid UTF-8 in a ``string`` field, or nested deeper than protobuf's
recursion limit) it logs an ERROR with a traceback and ends the call with UNKNOWN. So the
service is registered here with deserializers that never raise: a message that does not parse
becomes an ``Unparsable`` marker, and the handler turns it into an ``InvalidRequestError``
(``parsed``) like any other bad input. It is logged at debug level only: a caller's bad bytes
are not the sidecar's error.

Protobuf's recursion limit is 100 message levels. A ``google.protobuf.Struct`` spends three of
them per JSON level (``Struct`` → ``Value`` → ``Struct``/``ListValue``), so a tool's
``input_schema`` or a ``tool_use`` input can nest about 32 JSON levels over gRPC.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

import grpc
from google.protobuf.message import DecodeError, Message

from sidecar.errors import InvalidRequestError
from sidecar.grpc_api.gen.anyllm.sidecar.v1 import messages_pb2 as pb
from sidecar.grpc_api.gen.anyllm.sidecar.v1 import messages_service_pb2 as spb
from sidecar.logs import log

SERVICE = "anyllm.sidecar.v1.MessagesService"
M = TypeVar("M", bound=Message)


class Unparsable:
    """A request whose bytes did not parse as ``type_name``."""

    __slots__ = ("reason", "type_name")

    def __init__(self, type_name: str, reason: str) -> None:
        self.type_name = type_name
        self.reason = reason


def _lenient(message_type: type[M]) -> Callable[[bytes], M | Unparsable]:
    name = message_type.DESCRIPTOR.full_name

    def deserialize(data: bytes) -> M | Unparsable:
        try:
            return message_type.FromString(data)
        except (DecodeError, RecursionError, ValueError) as exc:
            log("grpc_unparsable_request", level=logging.DEBUG, type=name, error=str(exc))
            return Unparsable(name, type(exc).__name__)

    return deserialize


def parsed(request: M | Unparsable) -> M:
    """The request, or an INVALID_ARGUMENT saying why its bytes are not one."""
    if isinstance(request, Unparsable):
        raise InvalidRequestError(
            f"the request is not a valid {request.type_name}: its bytes do not parse "
            "(truncated or corrupt, invalid UTF-8 in a string field, or nested more than "
            "protobuf's 100 message levels: about 32 JSON levels inside a "
            "google.protobuf.Struct such as a tool's input_schema)"
        )
    return request


def add_servicer(servicer: Any, server: grpc.aio.Server) -> None:
    """``add_MessagesServiceServicer_to_server`` with deserializers that never raise."""
    handlers = {
        "CreateMessage": grpc.unary_unary_rpc_method_handler(
            servicer.CreateMessage,
            request_deserializer=_lenient(spb.CreateMessageRequest),
            response_serializer=pb.Message.SerializeToString,
        ),
        "StreamMessage": grpc.unary_stream_rpc_method_handler(
            servicer.StreamMessage,
            request_deserializer=_lenient(spb.CreateMessageRequest),
            response_serializer=pb.StreamEvent.SerializeToString,
        ),
        "CountTokens": grpc.unary_unary_rpc_method_handler(
            servicer.CountTokens,
            request_deserializer=_lenient(spb.CountTokensRequest),
            response_serializer=spb.CountTokensResponse.SerializeToString,
        ),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    # As the generated code does (a faster path for known methods; not in grpc-stubs).
    server.add_registered_method_handlers(SERVICE, handlers)  # type: ignore[attr-defined]
