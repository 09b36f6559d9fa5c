"""Upstream backends behind the one ``Backend`` protocol; ``build_backend`` picks the kind."""

from __future__ import annotations

from .base import Backend
from .registry import KINDS, build_backend
from .settings import BackendSettings

__all__ = ["KINDS", "Backend", "BackendSettings", "build_backend"]
