"""A gRPC request as what the engine needs: the typed request and the Anthropic JSON body.

The body (``json_proto.request_to_json``) is what an Anthropic-protocol upstream gets, as the
HTTP door's callers' bodies are: every typed field, the ``raw`` blocks and the ``extra_json``
fields merged in, so a feature the proto does not model yet still reaches the API. The typed
request, what a translating upstream reads, is that body decoded as the HTTP door decodes one:
strictly (one msgspec pass), else leniently (``translate.anthropic_request``: what the model does
not know, such as a server-tool block in the history or a toolset, is left out and named in
``unmodelled``, so that a translating upstream lists it in ``x-anyllm-degradation``). A request
wrong in what the model does know is an ``InvalidRequestError``; ``convert`` names the field by
its proto path (``messages[0].content[1].tool_use.id: required``).
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
    doc, _ = request_to_json(req, stream=stream)
    body = orjson.dumps(doc)
    try:
        return m.request_decoder.decode(body), body, ()
    except msgspec.ValidationError as exc:
        typed, unmodelled = _lenient(body, m.MessagesRequest, exc, req)
        return typed, body, unmodelled


def count_request(req: spb.CountTokensRequest) -> Parts[m.CountTokensRequest]:
    doc, _ = request_to_json(req)
    body = orjson.dumps(doc)
    try:
        return m.count_tokens_decoder.decode(body), body, ()
    except msgspec.ValidationError as exc:
        typed, unmodelled = _lenient(body, m.CountTokensRequest, exc, req)
        return typed, body, unmodelled


def _lenient(
    body: bytes,
    into: type[R],
    exc: msgspec.ValidationError,
    req: spb.CreateMessageRequest | spb.CountTokensRequest,
) -> tuple[R, tuple[str, ...]]:
    lenient = lenient_convert(orjson.loads(body), into)
    if lenient is not None:
        return lenient
    # Wrong in what the model knows: the proto conversion names the field by its proto path.
    if isinstance(req, spb.CreateMessageRequest):
        convert.messages_request_from_proto(req)
    else:
        convert.count_tokens_request_from_proto(req)
    raise InvalidRequestError(f"invalid request: {exc}") from None
