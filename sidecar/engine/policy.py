"""The engine's view of configuration: per-chain policy, targets and chains, and routing.

These are plain frozen structs that ``sidecar.config`` builds from the YAML; the engine never
reads configuration files itself. ``Routes`` holds the globs compiled once at start-up, so
routing a request is a loop of ``re.match`` calls and a dict lookup.
"""

from __future__ import annotations

import fnmatch
import re
from typing import Literal

import msgspec

# Statuses after which the engine moves on to the next target (DESIGN.md, "Engine"): the
# reference's 429/500/502/503, plus 408, 504 and 529 as an extension. Any other status stops.
DEFAULT_MOVE_ON = (408, 429, 500, 502, 503, 504, 529)


class BreakerPolicy(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    failures: int = 5  # consecutive failures that open the breaker
    cooldown: float = 30.0  # seconds a target is skipped before one probe is let through

    def __post_init__(self) -> None:
        if self.failures < 1:
            raise ValueError("`failures` must be at least 1")
        if self.cooldown < 0:
            raise ValueError("`cooldown` must be 0 or more seconds")


class Policy(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    timeout: float = 120.0  # overall budget of one request, seconds
    attempt_timeout: float = 120.0  # one attempt, sending to the last byte
    connect_timeout: float = 10.0  # opening a connection to the upstream
    ttft_timeout: float = 20.0  # sending the request to the first content event
    idle_timeout: float = 30.0  # the longest gap between two stream events
    # The longest wait for a free slot of a backend's max_connections (the sidecar's own
    # limit, not the upstream's time): then 529 / RESOURCE_EXHAUSTED. See engine/slots.py.
    pool_timeout: float = 5.0
    retries: int = 0  # extra attempts on the same target before moving on
    backoff_base: float = 0.5  # first backoff ceiling; doubles each retry (full jitter)
    backoff_max: float = 8.0
    retry_after_cap: float = 10.0  # a longer Retry-After moves on at once instead of waiting
    breaker: BreakerPolicy = BreakerPolicy()
    move_on: tuple[int, ...] = DEFAULT_MOVE_ON  # upstream statuses that move to the next target
    stop_on: tuple[int, ...] = ()  # statuses that stop the chain even if listed in move_on
    on_context_overflow: str | None = None  # chain to continue with when the context is too long
    # Hedging (engine/hedge.py): when an attempt has not committed after ``hedge_after`` seconds,
    # the next target starts in parallel; at most ``hedge_budget`` of the chain's requests of
    # the last 60 s are hedged. None: never.
    hedge_after: float | None = None
    hedge_budget: float = 0.1

    def __post_init__(self) -> None:
        for name in (
            "timeout",
            "attempt_timeout",
            "connect_timeout",
            "ttft_timeout",
            "idle_timeout",
            "pool_timeout",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"`{name}` must be a positive number of seconds")
        for name in ("backoff_base", "backoff_max", "retry_after_cap"):
            if getattr(self, name) < 0:
                raise ValueError(f"`{name}` must be 0 or more seconds")
        if self.retries < 0:
            raise ValueError("`retries` must be 0 or more")
        if self.hedge_after is not None and self.hedge_after <= 0:
            raise ValueError("`hedge_after` must be a positive number of seconds")
        if not 0 < self.hedge_budget <= 1:
            raise ValueError("`hedge_budget` must be in (0, 1]")


class Target(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    backend: str
    model: str | None = None  # the upstream model name; None: the request's own
    weight: float = 1.0  # its share within a group (strategy ``weighted``)
    rpm: int | None = None  # requests per sliding 60 s this sidecar sends it (engine/limits.py)
    tpm: int | None = None  # tokens (input + output) per sliding 60 s

    def __post_init__(self) -> None:
        if self.weight <= 0:
            raise ValueError("`weight` must be a positive number")
        for name in ("rpm", "tpm"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"`{name}` must be at least 1")

    @property
    def label(self) -> str:
        return f"{self.backend}/{self.model}" if self.model else self.backend


Strategy = Literal["weighted", "least_busy", "latency"]


class Group(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A chain step of several targets, one chosen per request by ``strategy``
    (engine/balance.py); the others are tried after it before the chain's next step."""

    group: tuple[Target, ...]
    strategy: Strategy = "weighted"

    def __post_init__(self) -> None:
        if not self.group:
            raise ValueError("a group needs at least one target")

    @property
    def label(self) -> str:
        return "group(" + ",".join(t.label for t in self.group) + ")"


Step = Target | Group


class Chain(msgspec.Struct, frozen=True):
    name: str
    targets: tuple[Step, ...]  # the steps, in order: a target, or a group of them
    policy: Policy

    def members(self) -> tuple[Target, ...]:
        """Every target of the chain, groups flattened, in order."""
        out: list[Target] = []
        for step in self.targets:
            out += step.group if isinstance(step, Group) else (step,)
        return tuple(out)


MAX_RESOLVED = 1024  # distinct model names remembered by ``Routes.resolve``


class Routes:
    """Model name → chain name: first matching glob, else a chain of that name, else default."""

    def __init__(self, routes: list[tuple[str, str]], chains: dict[str, Chain]) -> None:
        self._routes = [(re.compile(fnmatch.translate(glob)), chain) for glob, chain in routes]
        self._globs = [glob for glob, _ in routes]
        self.chains = chains
        # model -> what ``resolve`` answered: a request's model is matched against the globs
        # once, not on every request (routes and chains never change; a reload makes new ones).
        self._resolved: dict[str, tuple[Chain, str]] = {}

    def chain_for(self, model: str) -> Chain:
        return self.resolve(model)[0]

    def resolve(self, model: str) -> tuple[Chain, str]:
        """The chain for ``model`` and what chose it (a bounded label for metrics)."""
        known = self._resolved.get(model)
        if known is not None:
            return known
        if len(self._resolved) >= MAX_RESOLVED:  # model names come from callers: bounded
            self._resolved.clear()
        known = self._resolved[model] = self._match(model)
        return known

    def _match(self, model: str) -> tuple[Chain, str]:
        for (pattern, name), glob in zip(self._routes, self._globs, strict=True):
            if pattern.match(model):
                return self.chains[name], glob
        chain = self.chains.get(model)
        if chain is not None:
            return chain, "name"
        return self.chains["default"], "default"
