"""The outcome's metadata: caller-chosen names in the degradation header are made header-safe."""

from __future__ import annotations

import pytest

from sidecar.engine.outcome import MAX_HEADER, Outcome, degradation_header

HEADER = {
    "plain": (["field:a", "block:b"], "field:a,block:b"),
    "repeated-once": (["x", "y", "x"], "x,y"),
    "line-separator": (["field:a\u2028b"], "field:a%E2%80%A8b"),
    "emoji": (["block:\U0001f600"], "block:%F0%9F%98%80"),
    "cr-lf-nul": (["field:\r\n\x00"], "field:%0D%0A%00"),
    "list-separator": (["field:a,b"], "field:a%2Cb"),
    "percent": (["field:100%"], "field:100%25"),
    "space": (["field:a b"], "field:a%20b"),
    "latin-1": (["field:café"], "field:caf%C3%A9"),
}


@pytest.mark.parametrize(("items", "value"), HEADER.values(), ids=HEADER.keys())
def test_degradation_header(items: list[str], value: str) -> None:
    assert degradation_header(items) == value


def test_degradation_header_is_bounded() -> None:
    items = [f"field:{i}{'x' * 300}" for i in range(100)]
    value = degradation_header(items)
    assert len(value) <= MAX_HEADER + 20
    assert value.isascii() and value.isprintable()
    kept = value.split(",")
    assert kept[-1] == f"more:{100 - (len(kept) - 1)}"
    assert all(len(item) <= 100 for item in kept)


def test_metadata_carries_the_safe_header() -> None:
    outcome = Outcome(request_id="r", chain="c", degradations=["field:\n"])
    assert ("x-anyllm-degradation", "field:%0A") in outcome.metadata()
