"""Routing a model to a chain (``Routes.resolve``): globs first, then a chain's name, else
the default; the answer for a model is remembered, within a bound."""

from __future__ import annotations

import pytest

from sidecar.engine import policy
from sidecar.engine.policy import Chain, Policy, Routes, Target


def chains() -> dict[str, Chain]:
    return {name: Chain(name, (Target(name),), Policy()) for name in ("default", "fast", "big")}


ROUTES = [("claude-*haiku*", "fast"), ("*-big", "big")]


@pytest.mark.parametrize(
    ("model", "chain", "route"),
    [
        pytest.param("claude-3-5-haiku-latest", "fast", "claude-*haiku*", id="first-glob"),
        pytest.param("gpt-big", "big", "*-big", id="second-glob"),
        pytest.param("fast", "fast", "name", id="a-chains-name"),
        pytest.param("anything", "default", "default", id="default"),
    ],
)
def test_resolve(model: str, chain: str, route: str) -> None:
    routes = Routes(ROUTES, chains())
    for _ in range(2):  # the second answer is the remembered one: the same
        got, why = routes.resolve(model)
        assert (got.name, why) == (chain, route)


def test_the_memory_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(policy, "MAX_RESOLVED", 8)
    routes = Routes(ROUTES, chains())
    for i in range(100):
        assert routes.resolve(f"caller-model-{i}")[1] == "default"
        assert len(routes._resolved) <= 8
    assert routes.resolve("claude-haiku")[0].name == "fast"
