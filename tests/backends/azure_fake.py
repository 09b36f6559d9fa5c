"""The fake Azure OpenAI + Entra upstream (``tests.upstream.azure_server``) served on the test's
own event loop, for the in-process tests of ``sidecar.backends.azure`` and ``.entra``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.upstream.azure_server import AzureUpstream

KEY = "azure-key-SECRET-0006"
SECRET = "token-secret"
TENANT = "tenant-1"
CLIENT = "client-1"


class Fake:
    def __init__(self, upstream: AzureUpstream, url: str, token_file: Path) -> None:
        self.upstream = upstream
        self.url = url
        self.token_file = token_file

    def script(self, *behaviours: dict[str, Any]) -> None:
        for b in behaviours:
            self.upstream.queue.append({**b, "_left": b.get("times", 1)})

    def chat(self) -> list[dict[str, Any]]:
        return [e for e in self.upstream.entries if "chat/completions" in e["path"]]

    def tokens(self) -> list[dict[str, Any]]:
        return [e for e in self.upstream.entries if e["path"].endswith("/token")]

    def env(self) -> dict[str, str]:
        return {
            "AZURE_CLIENT_ID": CLIENT,
            "AZURE_TENANT_ID": TENANT,
            "AZURE_AUTHORITY_HOST": self.url,
            "AZURE_FEDERATED_TOKEN_FILE": str(self.token_file),
        }


@pytest.fixture
async def fake(tmp_path: Path) -> AsyncIterator[Fake]:
    token_file = tmp_path / "sa-token"
    token_file.write_text("eyJ.service-account.token\n")
    upstream = AzureUpstream(
        quiet=True,
        api_key=KEY,
        token_secret=SECRET,
        tenant=TENANT,
        client_id=CLIENT,
        federated_token_file=str(token_file),
        token_lifetime=3600,
    )
    server = await asyncio.start_server(upstream.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield Fake(upstream, f"http://127.0.0.1:{port}", token_file)
    server.close()
    for task in list(upstream.tasks):
        task.cancel()
    await asyncio.gather(*upstream.tasks, return_exceptions=True)
    await server.wait_closed()
