"""Relaying Chat Completions between an OpenAI caller and an OpenAI-compatible upstream.

When the caller speaks OpenAI too (it came through the OpenAI door, ``Call.openai_body``), an
OpenAI backend translates nothing (DESIGN.md, "Dialects"): ``relay_body`` sends the caller's
body with only ``model`` rewritten, and for a stream ``stream_options.include_usage`` added when
the backend asks for usage (for the token metrics) and the caller did not. What comes back is
the upstream's own bytes: ``read_completion`` gives a ``RawChatCompletion``, and
``OpenAIChunkReader`` (sans-IO, fed each SSE frame's data) ``RawChatChunk``s. Only what the
engine needs is decoded, leniently (unknown fields and values cost nothing, and fail nothing):

* whether a chunk carries content, the streaming commit point: a choice's delta with a
  non-empty ``content``, ``reasoning_content``, ``reasoning``, ``refusal``, ``tool_calls``,
  ``function_call`` or ``audio`` (a role-only chunk, Azure's filter-results chunk are not);
* usage (``prompt_tokens``, ``completion_tokens``);
* whether any choice finished, and ``[DONE]``: a stream ends complete at ``[DONE]``, or at the
  end of the body once a ``finish_reason`` was seen (a ``[DONE]`` item is added then, so the
  caller gets it); before either, the stream was cut short (``INCOMPLETE``);
* an error: a 200 body or a frame carrying ``error`` (or vLLM's ``object: error``) is raised as
  ``openai_response`` reads it, a frame that is not JSON is ``INVALID_RESPONSE``.

The usage-only chunk (``choices: []``) asked for on the caller's behalf is not relayed: a client
that did not ask for it may read ``choices[0]`` of every chunk. Its counts ride on ``[DONE]``.
"""

from __future__ import annotations

from typing import Any

import msgspec
import orjson

from sidecar.errors import FailureKind, UpstreamError
from sidecar.model import RawChatChunk, RawChatCompletion
from sidecar.translate.openai_response import upstream_error_in_body, wire_decoder

__all__ = ["DONE", "OpenAIChunkReader", "read_completion", "relay_body"]

_NULL = msgspec.Raw(b"null")
_EMPTY = frozenset({b"null", b'""', b"[]", b"{}"})
DONE = b"[DONE]"


class _Delta(msgspec.Struct):
    # Raw: presence and emptiness are all the engine needs; nothing is decoded.
    content: msgspec.Raw = _NULL
    reasoning_content: msgspec.Raw = _NULL
    reasoning: msgspec.Raw = _NULL
    refusal: msgspec.Raw = _NULL
    tool_calls: msgspec.Raw = _NULL
    function_call: msgspec.Raw = _NULL
    audio: msgspec.Raw = _NULL

    def has_content(self) -> bool:
        return any(
            bytes(value) not in _EMPTY
            for value in (
                self.content,
                self.reasoning_content,
                self.reasoning,
                self.refusal,
                self.tool_calls,
                self.function_call,
                self.audio,
            )
        )


class _Choice(msgspec.Struct):
    delta: _Delta | None = None
    finish_reason: msgspec.Raw = _NULL


class _Usage(msgspec.Struct):
    prompt_tokens: Any = None
    completion_tokens: Any = None


class _View(msgspec.Struct):
    """A whole completion or one chunk, as far as the engine reads it."""

    choices: list[_Choice] | None = None
    usage: _Usage | None = None
    error: msgspec.Raw = _NULL
    object: Any = None


_view_decoder = msgspec.json.Decoder(_View)
_top_level = msgspec.json.Decoder(dict[str, msgspec.Raw])


def _count(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value)


def _unreadable(backend: str, what: str) -> UpstreamError:
    return UpstreamError(f"{backend}: {what}", kind=FailureKind.INVALID_RESPONSE, backend=backend)


def _view(backend: str, data: bytes, *, kind: FailureKind) -> _View:
    """The lenient view of ``data``; an error the upstream reported in it is raised."""
    try:
        view = _view_decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise _unreadable(backend, f"not a chat completion: {exc}") from None
    if bytes(view.error) != b"null" or view.object == "error":
        error = upstream_error_in_body(wire_decoder.decode(data), kind=kind)
        if error is not None:
            error.backend = backend
            raise error
    return view


def relay_body(
    body: bytes, caller_model: str, model: str, *, stream: bool, want_usage: bool
) -> tuple[bytes, bool]:
    """The caller's ``body`` for upstream ``model``, and whether the usage chunk is asked for
    by us only (then it is not relayed). ``want_usage``: the backend asks for usage.

    Only the top level is decoded (each value stays its bytes), so everything else goes up
    exactly as the caller wrote it, numbers of any size included."""
    if model == caller_model and not (stream and want_usage):
        return body, False
    doc = _top_level.decode(body)  # the door read this body: it is a JSON object
    doc["model"] = msgspec.Raw(msgspec.json.encode(model))
    ours = False
    if stream and want_usage:
        options = doc.get("stream_options")
        parsed = msgspec.json.decode(options) if options is not None else None
        if not isinstance(parsed, dict):
            parsed = {}
        if parsed.get("include_usage") is not True:
            parsed["include_usage"] = ours = True
            doc["stream_options"] = msgspec.Raw(orjson.dumps(parsed))
    return msgspec.json.encode(doc), ours


def read_completion(backend: str, content: bytes) -> RawChatCompletion:
    """The whole answer in ``content``, to relay as it is. Only what is not a chat completion
    at all (not a JSON object, no ``choices``) or an error body is the upstream's failure."""
    view = _view(backend, content, kind=FailureKind.INVALID_RESPONSE)
    if view.choices is None:
        raise _unreadable(backend, "a chat completion without choices")
    usage = view.usage
    return RawChatCompletion(
        body=content,
        input_tokens=None if usage is None else _count(usage.prompt_tokens),
        output_tokens=None if usage is None else _count(usage.completion_tokens),
    )


class OpenAIChunkReader:
    """Sans-IO: one SSE frame's data in, the items to relay out (see the module docstring).
    ``hide_usage``: the usage-only chunk was asked for by us, not by the caller."""

    __slots__ = ("_backend", "_finished", "_hide_usage", "_input", "_output", "stopped")

    def __init__(self, backend: str, *, hide_usage: bool = False) -> None:
        self._backend = backend
        self._hide_usage = hide_usage
        self._finished = False  # a finish_reason was seen
        self._input: int | None = None  # the hidden usage chunk's counts
        self._output: int | None = None
        self.stopped = False

    def feed(self, data: str | bytes) -> list[RawChatChunk]:
        raw = data.encode() if isinstance(data, str) else data
        if self.stopped:
            return []  # after [DONE]: read to the end of the body, relay nothing
        if len(raw) < 16:
            stripped = raw.strip()
            if stripped == DONE:
                return [self._done()]
            if not stripped:
                return []
        view = _view(self._backend, raw, kind=FailureKind.STREAM_ERROR)
        usage = view.usage
        input_tokens = output_tokens = None
        if usage is not None:
            input_tokens, output_tokens = (
                _count(usage.prompt_tokens),
                _count(usage.completion_tokens),
            )
        content = False
        for choice in view.choices or ():
            if bytes(choice.finish_reason) != b"null":
                self._finished = True
            if choice.delta is not None and not content:
                content = choice.delta.has_content()
        if self._hide_usage and view.choices == [] and usage is not None:
            self._input, self._output = input_tokens, output_tokens
            return []
        return [RawChatChunk(raw, content, False, input_tokens, output_tokens)]

    def finish(self) -> list[RawChatChunk]:
        """The upstream body ended: ``[DONE]`` if it was complete without one; else raise."""
        if self.stopped:
            return []
        return [self._done()]

    def _done(self) -> RawChatChunk:
        if not self._finished:
            raise UpstreamError(
                f"{self._backend}: the stream ended before any choice finished",
                kind=FailureKind.INCOMPLETE,
                backend=self._backend,
            )
        self.stopped = True
        return RawChatChunk(DONE, False, True, self._input, self._output)
