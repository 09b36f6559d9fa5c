"""The backend kinds: ``kind`` → (settings type, constructor), with no silent default.

Constructors are named by module path and imported on first use, so a kind's dependencies
(botocore, google-auth...) load only when a configured backend needs them. ``build_backend``
for a kind that is not here is a ``ValueError`` naming the kinds that exist; the configuration
checks ``kind`` against ``KINDS`` first, so a user sees that as a config error with its path.
"""

from __future__ import annotations

import importlib
from typing import Any

from .base import Backend

# kind -> "module:Class" of its backend (the module under sidecar.backends).
KINDS: dict[str, str] = {
    "openai": "openai:OpenAIBackend",
    "azure": "azure:AzureBackend",
    "anthropic": "anthropic:AnthropicBackend",
    "bedrock": "bedrock:BedrockBackend",
    "demo": "demo:DemoBackend",
}


def build_backend(name: str, settings: Any) -> Backend:
    """The backend ``name`` of the kind ``settings`` describe."""
    kind = settings.kind
    where = KINDS.get(kind)
    if where is None:
        raise ValueError(f"unknown backend kind {kind!r} (known: {', '.join(sorted(KINDS))})")
    module, cls = where.split(":")
    constructor = getattr(importlib.import_module(f"sidecar.backends.{module}"), cls)
    backend: Backend = constructor(name, settings)
    return backend
