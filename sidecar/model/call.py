"""What a surface hands to the engine (``sidecar.model`` re-exports it): the decoded request
plus what came with it (request id, chosen chain, deadline, headers to pass to an
Anthropic-protocol upstream, the caller's own body for a relaying one).

Dialects. A call is in Anthropic's dialect, or in OpenAI's (it came through the OpenAI door:
``Call.openai_body``). Either way ``request`` is an Anthropic request, what every target that
does not speak the caller's dialect is sent, so the engine routes, validates and falls back the
same way (DESIGN.md, "Dialects").
"""

from __future__ import annotations

import msgspec

from .messages import CountTokensRequest, MessagesRequest


class Call(msgspec.Struct, frozen=True):
    """One request as the engine sees it, whichever surface it came from."""

    request: MessagesRequest
    request_id: str
    chain: str | None = None  # x-anyllm-chain: a configured chain chosen by the caller
    deadline: float | None = None  # absolute, on the event loop's clock (loop.time())
    # Headers a native Anthropic upstream should see (anthropic-version, anthropic-beta).
    passthrough_headers: tuple[tuple[str, str], ...] = ()
    # The caller's JSON body when it came over HTTP: relayed as is to a native upstream.
    raw_body: bytes | None = None
    surface: str = "http"  # which front door it came through (for metrics and logs)
    # What was left out of ``request`` because the model does not know it (``block:TYPE``,
    # ``tool:TYPE``, ``thinking:TYPE``...): still in ``raw_body`` for a native upstream, named
    # in the degradation list by a translating one.
    unmodelled: tuple[str, ...] = ()
    # An OpenAI-dialect call (the OpenAI door): the caller's Chat Completions body, relayed as
    # is (model rewritten) by an OpenAI-compatible target. ``request`` is its translation, sent
    # to every other target, and ``raw_body`` is None. ``openai_notes``: what that translation
    # dropped or approximated, named in the degradation list unless the answer was relayed.
    openai_body: bytes | None = None
    openai_notes: tuple[str, ...] = ()


class CountCall(msgspec.Struct, frozen=True):
    """One token-count request as the engine sees it (see ``Call``)."""

    request: CountTokensRequest
    request_id: str
    chain: str | None = None
    passthrough_headers: tuple[tuple[str, str], ...] = ()
    raw_body: bytes | None = None
    surface: str = "http"
    unmodelled: tuple[str, ...] = ()
