"""Claude on AWS Bedrock: InvokeModel and InvokeModelWithResponseStream, signed with SigV4.

How it works
------------
A request goes to ``POST {endpoint}/model/{modelId}/invoke`` (or ``/invoke-with-response-stream``)
with the Anthropic Messages body minus ``model`` and ``stream`` (Bedrock rejects both), plus
``anthropic_version`` (configured; Bedrock's name for the API version) and ``anthropic_beta``
(the caller's ``anthropic-beta`` header as a list). A request that came over HTTP is built from
the caller's own bytes, so fields this sidecar does not model still reach the model. The model
id (a foundation model, an inference profile such as ``us.anthropic...`` / ``global.anthropic...``,
or an ARN) is percent-encoded as the AWS SDKs do (``:`` -> ``%3A``, ``/`` -> ``%2F``), the
request is signed over exactly that path (``aws.sign``) and the session sends the path as is.

Answers are Claude's own wire format: a whole message read by ``read_message``; a stream in AWS
event-stream framing (binary frames with a prelude, headers and CRC32 checksums, decoded and
checked by botocore's ``EventStreamBuffer``), each ``chunk`` event a JSON ``{"bytes": base64}``
(plus ``p``, random padding, dropped) whose bytes are one Anthropic stream event, fed to
``AnthropicEventReader`` as the Anthropic backend feeds SSE frames. The Bedrock-only
``amazon-bedrock-invocationMetrics`` of the last event is removed before it is relayed; every
other event goes to the caller byte for byte (unknown event types included), and frames of an
event-stream type other than ``chunk`` are skipped.
Exception frames inside the stream and error responses are mapped in
``translate.bedrock_errors``. When AWS refuses the credentials (an expired token, a bad
signature) the attempt fails as ``FailureKind.AUTH`` (the engine moves on), the credentials are
resolved again for the next request, and the refusal is logged.

Token counting uses Bedrock's ``CountTokens`` (``POST /model/{modelId}/count-tokens``, the
InvokeModel body base64-encoded in ``{"input": {"invokeModel": {"body": ...}}}``); a model that
Bedrock cannot count for (a ``ValidationException``: inference profiles, some models) gets the
local estimate instead.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import AsyncGenerator, Mapping
from typing import Any
from urllib.parse import quote

import msgspec
import orjson
from botocore.credentials import ReadOnlyCredentials
from botocore.eventstream import EventStreamBuffer, EventStreamMessage, ParserError

from sidecar.errors import FailureKind, UpstreamError
from sidecar.logs import log
from sidecar.model import Call, CountCall, RawMessage, StreamItem, TokenCount
from sidecar.translate.bedrock_errors import error_from_bedrock, error_from_bedrock_frame
from sidecar.translate.tokens import estimate_input_tokens

from .anthropic_wire import AnthropicEventReader, read_message
from .aws import AwsCredentials, default_resolver, host_of, sign, static_resolver
from .http import UpstreamSession
from .settings import BedrockSettings

SERVICE = "bedrock"  # the SigV4 signing name of bedrock-runtime
_METRICS = b'"amazon-bedrock-invocationMetrics"'


def model_path(model: str, action: str) -> str:
    """``/model/{modelId}/{action}`` with the id percent-encoded as botocore does."""
    return f"/model/{quote(model, safe='')}/{action}"


def bedrock_body(doc: dict[str, Any], version: str, betas: list[str]) -> bytes:
    """The InvokeModel body for a Messages document (``model`` and ``stream`` left out)."""
    doc.pop("model", None)
    doc.pop("stream", None)
    doc.setdefault("anthropic_version", version)
    if betas:
        doc.setdefault("anthropic_beta", betas)
    return orjson.dumps(doc)


def _betas(call: Call | CountCall) -> list[str]:
    for name, value in call.passthrough_headers:
        if name.lower() == "anthropic-beta":
            return [beta.strip() for beta in value.split(",") if beta.strip()]
    return []


class EventStreamDecoder:
    """AWS event-stream bytes in, checked messages out (a ``FrameDecoder`` for the session)."""

    __slots__ = ("_backend", "_buffer")

    def __init__(self, backend: str) -> None:
        self._backend = backend
        self._buffer = EventStreamBuffer()

    def feed(self, data: bytes) -> list[EventStreamMessage]:
        self._buffer.add_data(data)
        try:
            return list(self._buffer)
        except ParserError as exc:  # a bad prelude, a CRC mismatch, a frame too large
            raise UpstreamError(
                f"{self._backend}: unreadable event stream ({type(exc).__name__})",
                kind=FailureKind.INVALID_RESPONSE,
                backend=self._backend,
            ) from None

    def close(self) -> list[EventStreamMessage]:
        # A partial frame left over means the body ended early: the reader reports the stream
        # as incomplete, since message_stop never came.
        return []


def event_bytes(backend: str, message: EventStreamMessage) -> bytes | None:
    """The Anthropic event a frame carries (None for frames without one); raises for errors."""
    headers: Mapping[str, Any] = message.headers
    kind = headers.get(":message-type")
    if kind == "exception":
        error = error_from_bedrock_frame(str(headers.get(":exception-type", "")), message.payload)
        error.backend = backend
        raise error
    if kind == "error":
        payload = orjson.dumps({"message": str(headers.get(":error-message", ""))})
        error = error_from_bedrock_frame(str(headers.get(":error-code", "")), payload)
        error.backend = backend
        raise error
    if kind != "event" or headers.get(":event-type") != "chunk":
        return None  # an event type this sidecar does not know
    try:
        data = base64.b64decode(orjson.loads(message.payload)["bytes"], validate=True)
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise UpstreamError(
            f"{backend}: unreadable chunk ({type(exc).__name__})",
            kind=FailureKind.INVALID_RESPONSE,
            backend=backend,
        ) from None
    if _METRICS in data:
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError:
            return data  # the reader says what is wrong with it
        if isinstance(doc, dict):
            doc.pop("amazon-bedrock-invocationMetrics", None)
            data = orjson.dumps(doc)
    return data


class BedrockBackend:
    kind = "bedrock"

    def __init__(
        self,
        name: str,
        config: BedrockSettings,
        *,
        session: UpstreamSession | None = None,
        credentials: AwsCredentials | None = None,
    ) -> None:
        self.name = name
        self._region = config.region
        self._version = config.anthropic_version
        self._client = session or UpstreamSession.for_backend(
            config, {}, base_url=config.endpoint, encoded_paths=True
        )
        self._host = host_of(self._client.base_url)
        if credentials is None:
            if config.aws_access_key_id:
                resolve = static_resolver(
                    config.aws_access_key_id,
                    config.aws_secret_access_key,
                    config.aws_session_token,
                )
            else:
                resolve = default_resolver(config.profile)
            credentials = AwsCredentials(name, resolve)
        self._credentials = credentials

    # ------------------------------------------------------------------ requests

    def _body(self, call: Call | CountCall, **defaults: Any) -> bytes:
        """The caller's own body when it came over HTTP (unknown fields kept), else ours."""
        if call.raw_body is not None:
            doc = orjson.loads(call.raw_body)
        else:
            doc = msgspec.to_builtins(call.request)
        for key, value in defaults.items():
            doc.setdefault(key, value)
        return bedrock_body(doc, self._version, _betas(call))

    async def _headers(
        self, path: str, body: bytes, accept: Mapping[str, str], request_id: str | None = None
    ) -> tuple[dict[str, str], ReadOnlyCredentials]:
        try:
            credentials = await self._credentials.get()
        except UpstreamError as error:
            self._auth_problem(error)
            raise
        url = str(self._client.url(path))
        base = {"host": self._host, "content-type": "application/json", **accept}
        headers = sign(credentials, self._region, SERVICE, url, body, base)
        if request_id:
            headers["x-request-id"] = request_id  # after signing: not part of the signature
        return headers, credentials

    def _refused(self, error: UpstreamError, credentials: ReadOnlyCredentials) -> None:
        if error.kind is FailureKind.AUTH:
            self._credentials.invalidate(credentials)
            self._auth_problem(error)

    def _auth_problem(self, error: UpstreamError) -> None:
        error.backend = self.name
        log(
            "upstream_auth_failed",
            level=logging.WARNING,
            backend=self.name,
            status=error.status,
            error=error.message,
        )

    async def create(
        self, call: Call, model: str, notes: list[str], *, connect_timeout: float
    ) -> RawMessage:
        path = model_path(model, "invoke")
        body = self._body(call)
        headers, credentials = await self._headers(
            path, body, {"accept": "application/json"}, call.request_id
        )
        try:
            content = await self._client.post_json(
                self.name, path, body, headers, error_from_bedrock, connect_timeout
            )
        except UpstreamError as error:
            self._refused(error, credentials)
            raise
        return read_message(self.name, content)

    async def stream(
        self, call: Call, model: str, notes: list[str], *, connect_timeout: float
    ) -> AsyncGenerator[list[StreamItem], None]:
        path = model_path(model, "invoke-with-response-stream")
        body = self._body(call)
        accept = {
            "accept": "application/vnd.amazon.eventstream",
            "x-amzn-bedrock-accept": "application/json",
        }
        headers, credentials = await self._headers(path, body, accept, call.request_id)
        frames = self._client.post_stream(
            self.name,
            path,
            body,
            headers,
            error_from_bedrock,
            connect_timeout,
            decoder=EventStreamDecoder(self.name),
        )
        reader = AnthropicEventReader(self.name)
        try:
            async for batch in frames:
                if batch is None:
                    if reader.stopped:
                        return
                    raise reader.incomplete()
                if reader.stopped:
                    continue  # read to the end of the body so the connection can be reused
                events: list[StreamItem] = []
                for message in batch:
                    data = event_bytes(self.name, message)
                    if data is None:
                        continue
                    events.append(reader.feed(None, data))
                    if reader.stopped:
                        break
                if events:
                    yield events
        except UpstreamError as error:
            self._refused(error, credentials)
            raise
        finally:
            await frames.aclose()

    async def count_tokens(self, call: CountCall, model: str) -> TokenCount:
        # The count_tokens body made an InvokeModel body, which needs max_tokens (not counted).
        invoke = self._body(call, max_tokens=1)
        body = orjson.dumps({"input": {"invokeModel": {"body": base64.b64encode(invoke).decode()}}})
        path = model_path(model, "count-tokens")
        headers, credentials = await self._headers(path, body, {"accept": "application/json"})
        try:
            content = await self._client.post_json(
                self.name, path, body, headers, error_from_bedrock
            )
        except UpstreamError as error:
            self._refused(error, credentials)
            if error.error_type == "invalid_request_error":
                # Bedrock counts only for some models (not inference profiles): estimate.
                estimate = estimate_input_tokens(call.request)
                return TokenCount(input_tokens=estimate, estimated=True)
            raise
        try:
            return TokenCount(input_tokens=int(orjson.loads(content)["inputTokens"]))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise UpstreamError(
                f"{self.name}: unreadable token count",
                kind=FailureKind.INVALID_RESPONSE,
                backend=self.name,
            ) from exc

    async def aclose(self) -> None:
        await self._client.aclose()
