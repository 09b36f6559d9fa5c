"""Golden fixture files: one JSON file per case under tests/fixtures/translate/<kind>/.

Each file holds the input and the expected output of one case. ``UPDATE_GOLDEN=1 pytest ...``
rewrites the expected parts from what the code produces now (review the diff before committing).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "translate"
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"


def cases(kind: str) -> list[Any]:
    """``pytest.param(path, case, id=stem)`` for every fixture file of ``kind``."""
    paths = sorted((FIXTURES / kind).glob("*.json"))
    assert paths, f"no fixtures under {FIXTURES / kind}"
    return [pytest.param(p, json.loads(p.read_text()), id=p.stem) for p in paths]


def check(path: Path, case: dict[str, Any], expected: dict[str, Any]) -> None:
    """Assert that each ``expected`` key equals the case's; in update mode, write them instead."""
    if UPDATE:
        for key in ("expected", "notes", "error"):
            case.pop(key, None)
        case.update(expected)
        path.write_text(json.dumps(case, indent=2, ensure_ascii=False) + "\n")
        return
    for key, value in expected.items():
        assert value == case.get(key), f"{path.name}: {key!r} differs"
    for key in ("expected", "notes", "error"):
        assert key in expected or key not in case, f"{path.name}: unexpected {key!r}"
