"""A gRPC request as what the engine needs: the typed request and the Anthropic JSON body.

The body (``json_proto.request_to_json``) is what an Anthropic-protocol upstream gets, as the
HTTP door's callers' bodies are: every typed field, the ``raw`` blocks and the ``extra_json``
fields merged in, so a feature the proto does not model yet still reaches the API. The typed
request is what a translating upstream reads. When the request uses only what the model
knows, ``convert`` builds it from the proto (and names a wrong field by its proto path);
otherwise (an escape hatch, a block the model does not know) it is decoded from the body, as
the HTTP door does, leniently: what the model does not know is left out of it and named in
``unmodelled`` (so a translating upstream lists it in ``x-anyllm-degradation``).
"""

from __future__ import annotations

from typing import TypeVar

import msgspec
import orjson

from sidecar import model as m
from sidecar.errors import InvalidRequestError
from sidecar.grpc_api import convert
from sidecar.grpc_api.gen.anyllm.sidecar.v1 import messages_service_pb2 as spb
from sidecar.grpc_api.json_proto import request_to_json
from sidecar.translate.anthropic_request import lenient_convert

__all__ = ["count_request", "messages_request"]

R = TypeVar("R", m.MessagesRequest, m.CountTokensRequest)
Parts = tuple[R, bytes, tuple[str, ...]]


def messages_request(req: spb.CreateMessageRequest, *, stream: bool) -> Parts[m.MessagesRequest]:
    """The typed request, the JSON body and what the typed request leaves out."""
    doc, hatch = request_to_json(req, stream=stream)
    body = orjson.dumps(doc)
    error: InvalidRequestError | None = None
    if not hatch:
        try:
            return convert.messages_request_from_proto(req, stream=stream), body, ()
        except InvalidRequestError as exc:
            error = exc  # or only something the model does not know: decoded below
    typed, unmodelled = _decode(doc, body, m.MessagesRequest, error)
    return typed, body, unmodelled


def count_request(req: spb.CountTokensRequest) -> Parts[m.CountTokensRequest]:
    doc, hatch = request_to_json(req)
    body = orjson.dumps(doc)
    error: InvalidRequestError | None = None
    if not hatch:
        try:
            return convert.count_tokens_request_from_proto(req), body, ()
        except InvalidRequestError as exc:
            error = exc
    typed, unmodelled = _decode(doc, body, m.CountTokensRequest, error)
    return typed, body, unmodelled


def _decode(
    doc: dict[str, object], body: bytes, into: type[R], error: InvalidRequestError | None
) -> tuple[R, tuple[str, ...]]:
    decoder = m.request_decoder if into is m.MessagesRequest else m.count_tokens_decoder
    try:
        return decoder.decode(body), ()  # type: ignore[return-value]
    except msgspec.ValidationError as exc:
        lenient = lenient_convert(orjson.loads(body), into)
        if lenient is not None:
            return lenient
        if error is not None:
            raise error from None
        raise InvalidRequestError(f"invalid request: {exc}") from None
