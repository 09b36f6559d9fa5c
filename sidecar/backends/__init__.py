"""Upstream backends behind the one ``Backend`` protocol; ``build_backend`` picks the kind."""

from __future__ import annotations

from .base import Backend
from .settings import BackendSettings


def build_backend(name: str, settings: BackendSettings) -> Backend:
    """A backend of the configured kind; a new kind is one module and one line here."""
    if settings.kind == "openai":
        from .openai import OpenAIBackend

        return OpenAIBackend(name, settings)
    if settings.kind == "anthropic":
        from .anthropic import AnthropicBackend

        return AnthropicBackend(name, settings)
    from .demo import DemoBackend

    return DemoBackend(name, settings)


__all__ = ["Backend", "BackendSettings", "build_backend"]
