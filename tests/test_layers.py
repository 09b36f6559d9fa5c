"""The import boundaries of DESIGN.md, held by importing each layer in a fresh interpreter and
looking at what got loaded: arrows point down only."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

SURFACES = ("sidecar.http_api", "sidecar.grpc_api")
CONCRETE_BACKENDS = (
    "sidecar.backends.openai",
    "sidecar.backends.azure",
    "sidecar.backends.anthropic",
    "sidecar.backends.http",
    "sidecar.backends.bedrock",
)

TRANSLATE = ", ".join(
    f"sidecar.translate.{path.stem}"
    for path in sorted((ROOT / "sidecar" / "translate").glob("*.py"))
    if path.stem != "__init__"
)
NO_IO = ("httpx", "aiohttp", "grpc", "uvicorn", "asyncio", "socket", "ssl")

LAYERS = [
    pytest.param(
        TRANSLATE,  # every module of the package
        (*NO_IO, "sidecar.engine", "sidecar.backends", *SURFACES),
        id="translate-is-pure",
    ),
    pytest.param(
        "sidecar.translate.bedrock_errors",
        ("botocore", "aiohttp", "asyncio", "sidecar.engine", "sidecar.backends", *SURFACES),
        id="bedrock-errors-are-pure",
    ),
    pytest.param(
        "sidecar.backends.bedrock",
        ("grpc", "uvicorn", "sidecar.engine", "sidecar.config", *SURFACES),
        id="bedrock-below-the-engine",
    ),
    pytest.param(
        "sidecar.engine.engine",
        ("httpx", "grpc", "uvicorn", "redis", "sidecar.config", *CONCRETE_BACKENDS, *SURFACES),
        id="engine-knows-only-the-backend-protocol",
    ),
    pytest.param(
        "sidecar.engine.shared",
        ("redis", "httpx", "grpc", "uvicorn", "sidecar.config", *CONCRETE_BACKENDS, *SURFACES),
        id="shared-state-logic-knows-only-its-store-protocol",
    ),
    pytest.param(
        "sidecar.translate.ratelimit_headers",
        ("asyncio", "sidecar.engine", "sidecar.backends", "httpx", "aiohttp"),
        id="rate-limit-headers-are-pure",
    ),
    pytest.param(
        "sidecar.backends.openai",
        ("grpc", "uvicorn", "sidecar.engine", "sidecar.config", *SURFACES),
        id="backends-below-the-engine",
    ),
    pytest.param(
        "sidecar.backends.azure",
        ("grpc", "uvicorn", "sidecar.engine", "sidecar.config", *SURFACES),
        id="azure-below-the-engine",
    ),
    *(
        pytest.param(
            f"sidecar.http_api.{door}",
            (
                "grpc",
                "httpx",
                "sidecar.config",
                "sidecar.grpc_api",
                "sidecar.engine.engine",  # the doors know the engine's protocol only
                *CONCRETE_BACKENDS,
            ),
            id=f"http-{door}-never-calls-a-backend",
        )
        for door in ("asgi", "anthropic_door", "openai_door", "ops")
    ),
    pytest.param(
        "sidecar.grpc_api.server",
        ("uvicorn", "httpx", "sidecar.config", "sidecar.http_api", *CONCRETE_BACKENDS),
        id="grpc-surface-never-calls-a-backend",
    ),
    pytest.param(
        "sidecar.model", ("sidecar.errors", "sidecar.engine", "httpx"), id="model-is-a-leaf"
    ),
    pytest.param("sidecar.errors", ("sidecar.model", "grpc", "httpx"), id="errors-is-a-leaf"),
]


@pytest.mark.parametrize(("module", "forbidden"), LAYERS)
def test_layer_imports(module: str, forbidden: tuple[str, ...]) -> None:
    code = f"import sys, json, {module}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    loaded = json.loads(out)
    bad = sorted(
        name for name in loaded for f in forbidden if name == f or name.startswith(f + ".")
    )
    assert not bad, f"{module} loads {bad}"
