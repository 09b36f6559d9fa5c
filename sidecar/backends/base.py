"""The one seam between the engine and the upstreams: the ``Backend`` protocol.

A backend turns a ``Call`` into upstream HTTP (or local work, for the demo backend) and gives
back internal types: a whole ``Message`` from ``create``, Anthropic ``StreamEvent``s from
``stream``. When the upstream speaks Anthropic itself, what comes back is its own bytes
(``RawMessage``, ``RawEvent``) with the little the engine reads of them, so they are relayed
unchanged. Streams come in batches: the events of one upstream read, so every layer above pays
its per-item cost once per read, not once per event. Everything that goes wrong is raised as an
``UpstreamError`` with a ``FailureKind``, so the engine can decide between falling back and
stopping without looking at messages.

A stream that is complete ends with ``message_stop``; a backend raises ``UpstreamError(kind=
INCOMPLETE)`` instead of ending quietly when the upstream stopped early, and ``STREAM_ERROR`` for
an in-band error frame. Whatever the request lost in translation is appended to ``notes``
(feature names for the degradation list).

``RESPONSE_HEADERS`` is how an attempt learns the upstream's rate-limit headers without a wider
protocol: the engine sets it to a fresh list for each attempt (in the attempt's own task), and
the HTTP layer (``backends/http.py``) appends the rate-limit headers of every answer it reads,
success or error, with ``report_response_headers``. Unset (a backend used on its own), nothing
is recorded.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping
from contextvars import ContextVar
from typing import Protocol

from sidecar.model import Answer, Call, CountCall, StreamItem, TokenCount
from sidecar.translate.ratelimit_headers import RATE_LIMIT_PREFIXES


class Backend(Protocol):
    name: str  # the configured name (``primary``); used in metadata, logs, metrics
    kind: str  # ``openai``, ``anthropic``, ``demo``

    async def create(
        self, call: Call, model: str, notes: list[str], *, connect_timeout: float
    ) -> Answer:
        """The whole answer for ``call`` from upstream ``model``."""
        ...

    def stream(
        self, call: Call, model: str, notes: list[str], *, connect_timeout: float
    ) -> AsyncGenerator[list[StreamItem], None]:
        """The answer as Anthropic stream events, in non-empty batches; closed by the engine."""
        ...

    async def count_tokens(self, call: CountCall, model: str) -> TokenCount:
        """Input tokens of ``call.request``: exact where the upstream counts, else an estimate."""
        ...

    async def aclose(self) -> None:
        """Close pooled connections."""
        ...


RESPONSE_HEADERS: ContextVar[list[tuple[str, str]] | None] = ContextVar(
    "anyllm_response_headers", default=None
)


def report_response_headers(headers: Mapping[str, str]) -> None:
    """Record the rate-limit headers of an upstream answer for the engine's current attempt."""
    sink = RESPONSE_HEADERS.get()
    if sink is None:
        return
    for name, value in headers.items():
        lower = name.lower()
        if lower.startswith(RATE_LIMIT_PREFIXES):
            sink.append((lower, value))
