"""The OpenAI door's translation modules are pure too: they load no IO, server or async code."""

from __future__ import annotations

import json
import subprocess
import sys

from .test_imports import FORBIDDEN

DOOR_MODULES = (
    "sidecar.translate.openai_chat_wire",
    "sidecar.translate.openai_chat_tools",
    "sidecar.translate.openai_chat_params",
    "sidecar.translate.openai_chat_to_anthropic",
    "sidecar.translate.anthropic_to_openai_chat",
    "sidecar.translate.openai_errors",
    "sidecar.translate.relayed_to_model",
)

SCRIPT = f"""
import importlib, json, sys
for name in {DOOR_MODULES!r}:
    importlib.import_module(name)
print(json.dumps(sorted(sys.modules)))
"""


def test_openai_door_translation_imports_nothing_with_io() -> None:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], check=True, capture_output=True, text=True
    ).stdout
    loaded = json.loads(out)
    bad = [
        m for m in loaded if any(m == f or m.startswith(f + ".") for f in (*FORBIDDEN, "openai"))
    ]
    assert bad == []
    ours = {m for m in loaded if m.startswith("sidecar")}
    assert ours <= {"sidecar", "sidecar.errors"} | {
        m for m in ours if m.startswith(("sidecar.translate", "sidecar.model"))
    }
