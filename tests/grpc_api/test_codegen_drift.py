"""The committed generated code is what ``python scripts/gen_proto.py`` produces from proto/."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "sidecar" / "grpc_api" / "gen"


def _load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_proto", ROOT / "scripts" / "gen_proto.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("gen_proto", module)
    spec.loader.exec_module(module)
    return module


def _tree(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): p.read_text(encoding="utf-8")
        for p in sorted(root.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }


def test_generated_code_is_up_to_date(tmp_path: Path) -> None:
    pytest.importorskip("grpc_tools")
    gen_proto = _load_script()
    gen_proto.generate(tmp_path / "gen")
    fresh, committed = _tree(tmp_path / "gen"), _tree(COMMITTED)
    hint = "run `python scripts/gen_proto.py` and commit sidecar/grpc_api/gen/"
    assert sorted(fresh) == sorted(committed), hint
    stale = [name for name in fresh if fresh[name] != committed[name]]
    assert not stale, f"{stale} differ: {hint}"


def test_rewrite_leaves_descriptor_bytes_alone() -> None:
    gen_proto = _load_script()
    line = "DESCRIPTOR = b'\\n anyllm/sidecar/v1/messages.proto\\x12\\x11anyllm.sidecar.v1'"
    assert gen_proto.rewrite(line) == line
    assert gen_proto.rewrite("from anyllm.sidecar.v1 import a_pb2 as b\n") == (
        "from . import a_pb2 as b\n"
    )
