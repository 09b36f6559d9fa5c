"""Configuration shared by the integration tests: chains over the fake upstream.

``primary`` and ``secondary`` are two OpenAI-compatible backends on the same fake upstream,
told apart in its log by their keys and upstream model names; ``native`` is the Anthropic
backend on it. Keys are recognisable strings so tests can look for leaks.
"""

from __future__ import annotations

from typing import Any

PRIMARY_KEY = "sk-primary-SECRET-0001"
SECONDARY_KEY = "sk-secondary-SECRET-0002"
NATIVE_KEY = "sk-ant-native-SECRET-0003"
CALLER_KEY = "caller-key-SECRET-0004"


def sidecar_config(upstream_url: str, **policy: Any) -> dict[str, Any]:
    return {
        "server": {"http": "127.0.0.1:0", "grpc": "127.0.0.1:0", "grace": 5},
        "policy": {"ttft_timeout": 5, "idle_timeout": 5, "timeout": 20, **policy},
        "backends": {
            "primary": {"kind": "openai", "base_url": f"{upstream_url}/v1", "api_key": PRIMARY_KEY},
            "secondary": {
                "kind": "openai",
                "base_url": f"{upstream_url}/v1",
                "api_key": SECONDARY_KEY,
            },
            "native": {"kind": "anthropic", "base_url": upstream_url, "api_key": NATIVE_KEY},
        },
        "chains": {
            "default": [
                {"backend": "primary", "model": "gpt-primary"},
                {"backend": "secondary", "model": "gpt-secondary"},
            ],
            "native": [{"backend": "native", "model": "claude-upstream"}],
            "native-then-primary": [{"backend": "native"}, {"backend": "primary"}],
        },
    }


WEATHER_TOOL: dict[str, Any] = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}
