"""The engine's view of configuration: per-chain policy, targets and chains, and routing.

These are plain frozen structs that ``sidecar.config`` builds from the YAML; the engine never
reads configuration files itself. ``Routes`` holds the globs compiled once at start-up, so
routing a request is a loop of ``re.match`` calls and a dict lookup.
"""

from __future__ import annotations

import fnmatch
import re

import msgspec

# Statuses after which the engine moves on to the next target (DESIGN.md, "Engine"): the
# reference's 429/500/502/503, plus 408, 504 and 529 as an extension.
DEFAULT_MOVE_ON = (408, 429, 500, 502, 503, 504, 529)


class Policy(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    timeout: float = 120.0  # overall budget of one request, seconds
    attempt_timeout: float = 120.0  # one attempt, sending to the last byte
    ttft_timeout: float = 20.0  # sending the request to the first content event
    idle_timeout: float = 30.0  # the longest gap between two stream events
    move_on: tuple[int, ...] = DEFAULT_MOVE_ON  # upstream statuses that move to the next target

    def __post_init__(self) -> None:
        for name in (
            "timeout",
            "attempt_timeout",
            "ttft_timeout",
            "idle_timeout",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"`{name}` must be a positive number of seconds")


class Target(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    backend: str
    model: str | None = None  # the upstream model name; None: the request's own

    @property
    def label(self) -> str:
        return f"{self.backend}/{self.model}" if self.model else self.backend


class Chain(msgspec.Struct, frozen=True):
    name: str
    targets: tuple[Target, ...]
    policy: Policy


class Routes:
    """Model name → chain name: first matching glob, else a chain of that name, else default."""

    def __init__(self, routes: list[tuple[str, str]], chains: dict[str, Chain]) -> None:
        self._routes = [(re.compile(fnmatch.translate(glob)), chain) for glob, chain in routes]
        self.chains = chains

    def chain_for(self, model: str) -> Chain:
        for pattern, name in self._routes:
            if pattern.match(model):
                return self.chains[name]
        return self.chains.get(model) or self.chains["default"]
