"""How one backend is configured: the ``backends.NAME`` mapping of the YAML.

The composition root converts the YAML into this struct and hands it to the backend kind's
constructor; backends never read configuration files themselves.
"""

from __future__ import annotations

from typing import Literal

import msgspec


class BackendSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    kind: Literal["openai", "anthropic", "demo"]
    base_url: str = ""
    api_key: str = ""
    headers: dict[str, str] = {}
    max_connections: int = 100
    # OpenAI-compatible dialect switches (driven by config rather than guessed from names).
    max_completion_tokens: bool = False  # send max_completion_tokens (o-series) not max_tokens
    system_role: Literal["system", "developer"] = "system"
    drop_sampling: bool = False  # drop temperature / top_p for models that reject them
    supports_top_k: bool = False  # pass top_k (vLLM accepts it)
    stream_usage: bool = True  # ask for usage in streams (stream_options.include_usage)
    # Send reasoning_effort for thinking: only reasoning models take it (OpenAI and LiteLLM
    # reject it for others), so it is asked for rather than assumed.
    reasoning_effort: bool = False
    anthropic_version: str = "2023-06-01"  # sent when the caller sent none
    # TLS to the upstream: a private CA, and a client certificate for mutual TLS.
    ca_file: str | None = None
    client_cert: str | None = None
    client_key: str | None = None

    def __repr__(self) -> str:  # never print the key
        return f"BackendSettings(kind={self.kind!r}, base_url={self.base_url!r})"
