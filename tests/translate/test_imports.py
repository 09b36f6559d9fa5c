"""The translation layer is pure: importing it loads no IO, server or async machinery."""

from __future__ import annotations

import json
import subprocess
import sys

FORBIDDEN = (
    "httpx",
    "httpcore",
    "grpc",
    "uvicorn",
    "uvloop",
    "starlette",
    "anyio",
    "asyncio",
    "socket",
    "ssl",
    "logging",
    "anthropic",
    "pydantic",
    "sidecar.backends",
    "sidecar.engine",
    "sidecar.http_api",
    "sidecar.grpc_api",
    "sidecar.config",
)

MODULES = (
    "sidecar.translate",
    "sidecar.translate.sse",
    "sidecar.translate.openai_request",
    "sidecar.translate.openai_response",
    "sidecar.translate.openai_stream",
    "sidecar.translate.upstream_errors",
    "sidecar.translate.tokens",
)

SCRIPT = f"""
import importlib, json, sys
for name in {MODULES!r}:
    importlib.import_module(name)
print(json.dumps(sorted(sys.modules)))
"""


def test_translate_imports_nothing_with_io() -> None:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    loaded = json.loads(out)
    bad = [m for m in loaded if any(m == f or m.startswith(f + ".") for f in FORBIDDEN)]
    assert bad == []
    ours = {m for m in loaded if m.startswith("sidecar")}
    model = {
        "sidecar.model",
        "sidecar.model.messages",
        "sidecar.model.relayed",
        "sidecar.model.call",
    }
    assert ours <= {"sidecar", *model, "sidecar.errors", *MODULES}
