"""The outcome record: what happened to one request, attempt by attempt.

The engine fills it in as it goes; surfaces turn it into response headers / gRPC metadata
(``metadata()``), and an ``Observer`` (metrics and the per-request log line, built by the
composition root) reads it when the request starts and when it is finished. It is mutable while
the request runs and only read after.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, TypedDict
from urllib.parse import quote

import msgspec

if TYPE_CHECKING:
    from sidecar.errors import SidecarError

# Metadata keys, the same on HTTP (headers) and gRPC (metadata); lower case as gRPC requires.
BACKEND_KEY = "x-anyllm-backend"
ATTEMPTS_KEY = "x-anyllm-attempts"
DEGRADATION_KEY = "x-anyllm-degradation"
EXHAUSTED_KEY = "x-anyllm-fallback-exhausted"
CHAIN_KEY = "x-anyllm-chain"
REQUEST_ID_KEY = "x-request-id"
SHOULD_RETRY_KEY = "x-should-retry"
HEDGED_KEY = "x-anyllm-hedged"


class Skip(TypedDict):
    """A target passed over without an attempt."""

    target: str  # "backend/model"
    reason: str  # "breaker_open" | "rate_limited"


class Attempt(msgspec.Struct):
    target: str  # "backend/model"
    backend: str
    outcome: str  # "ok", or a FailureKind value ("status", "connect", ...)
    status: int | None
    duration: float  # seconds
    # The attempt's failure, kept for the exhausted error and logs (None: it answered, or it
    # was a hedge that lost: outcome "hedge_lost").
    error: SidecarError | None = None


class Outcome(msgspec.Struct):
    request_id: str
    chain: str
    kind: str = "create"  # create | stream | count_tokens
    surface: str = ""  # http | grpc
    route: str = "default"  # what chose the chain: header, a route's glob, name, default
    started: float = 0.0  # loop clock
    attempts: list[Attempt] = msgspec.field(default_factory=list)
    answered_by: str | None = None  # backend name
    answered_target: str | None = None  # backend/model
    exhausted: bool = False
    degradations: list[str] = msgspec.field(default_factory=list)
    skipped: list[Skip] = msgspec.field(default_factory=list)  # passed over, and why
    # Hedging: None (not hedged), "won" (the hedge answered) or "lost" (the first one did).
    hedge: str | None = None
    ttft: float | None = None  # streams: seconds from the start to the commit point
    # Waits for a slot of a backend's max_connections: (backend, seconds), only those that
    # had to wait; and the local limit that refused the request, if one did ("pool").
    pool_waits: list[tuple[str, float]] = msgspec.field(default_factory=list)
    rejected: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    # The answering upstream's own headers for the caller (anthropic-*, request-id).
    upstream_headers: tuple[tuple[str, str], ...] = ()
    result: str = ""  # when finished: "ok", an Anthropic error type, or "cancelled"
    duration: float = 0.0  # when finished: seconds from the start

    def metadata(self) -> list[tuple[str, str]]:
        """Headers / gRPC metadata describing this outcome (known so far)."""
        items = [(REQUEST_ID_KEY, self.request_id), (CHAIN_KEY, self.chain)]
        if self.answered_by is not None:
            items.append((BACKEND_KEY, self.answered_by))
        items.append((ATTEMPTS_KEY, str(len(self.attempts))))
        if self.degradations:
            items.append((DEGRADATION_KEY, degradation_header(self.degradations)))
        if self.exhausted:
            items.append((EXHAUSTED_KEY, "true"))
        if self.hedge is not None:
            items.append((HEDGED_KEY, "true"))
        items += self.upstream_headers
        return items

    def error_metadata(self) -> list[tuple[str, str]]:
        """``metadata()`` for a final error."""
        items = self.metadata()
        if len(self.attempts) > 1:
            # The chain already retried: the official SDKs obey this and won't multiply retries.
            items.append((SHOULD_RETRY_KEY, "false"))
        return items


# A degradation item may hold a caller's field or block name: anything but printable ASCII
# (and the list's own ``,`` and ``%``) is percent-encoded as UTF-8, each name is clipped, and the
# whole value is bounded, so the header is always valid on HTTP and in gRPC metadata.
_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in ",%")
MAX_ITEM = 100  # characters of a name, before encoding
MAX_HEADER = 2000  # characters of the whole value


def _header_item(item: str) -> str:
    plain = item.isascii() and item.isprintable() and len(item) <= MAX_ITEM
    if plain and " " not in item and "," not in item and "%" not in item:
        return item
    return quote(item[:MAX_ITEM], safe=_SAFE)


def degradation_header(degradations: list[str]) -> str:
    """The ``x-anyllm-degradation`` value: the distinct items, comma-separated, header-safe;
    past ``MAX_HEADER`` characters the rest is counted as ``more:N``."""
    out: list[str] = []
    size = 0
    items = list(dict.fromkeys(degradations))
    for i, item in enumerate(items):
        safe = _header_item(item)
        if size + len(safe) + 1 > MAX_HEADER:
            out.append(f"more:{len(items) - i}")
            break
        out.append(safe)
        size += len(safe) + 1
    return ",".join(out)


class Observer(Protocol):
    """Told when each request starts and when it is finished (metrics, logs), and of each one
    a local limit refused (``reason``: ``concurrency``, ``pool``, ``draining``)."""

    def request_started(self, outcome: Outcome) -> None: ...

    def request_finished(self, outcome: Outcome) -> None: ...

    def request_rejected(self, surface: str, kind: str, reason: str) -> None: ...


class NullObserver:
    def request_started(self, outcome: Outcome) -> None:
        return None

    def request_finished(self, outcome: Outcome) -> None:
        return None

    def request_rejected(self, surface: str, kind: str, reason: str) -> None:
        return None
