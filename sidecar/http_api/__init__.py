"""The HTTP surface (Anthropic Messages API over ASGI)."""
