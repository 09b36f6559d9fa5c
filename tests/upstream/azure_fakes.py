"""Fake Azure OpenAI processes for tests (``tests.upstream.azure_server``), sharing one identity.

    fakes = AzureFakes(tmp_path)           # a federated token file, a key, a token secret
    east = fakes.start("east")             # an Azure OpenAI resource (and Entra endpoint)
    west = fakes.start("west", deployments=("gpt-4o",))
    fakes.rotate_token_file()               # what the kubelet does to the projected token
    fakes.workload_identity_env(east)       # AZURE_* as the AKS webhook sets them
    fakes.close()                           # stop them all by PID, checked

Every process accepts the same ``api-key`` and the same Entra tokens (one HMAC secret), so a
token issued by one process's token endpoint works at every "region".
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from tests.upstream.processes import UpstreamProcess

API_KEY = "azure-key-SECRET-0005"
TENANT = "72f988bf-0000-4000-8000-00000000tenant"
CLIENT_ID = "0e1f2a3b-0000-4000-8000-0000000client"


class AzureFakes:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.token_file = directory / "azure-identity-token"
        self.token_secret = secrets.token_hex(16)
        self.api_key = API_KEY
        self.tenant = TENANT
        self.client_id = CLIENT_ID
        self.rotate_token_file()
        self.started: list[UpstreamProcess] = []

    def rotate_token_file(self) -> str:
        """Write a new service-account token (a JWT-shaped string) and return it."""
        token = "eyJhbGciOiJSUzI1NiJ9." + secrets.token_urlsafe(24) + "." + secrets.token_urlsafe(8)
        self.token_file.write_text(token, encoding="utf-8")  # no newline, as the kubelet writes it
        return token

    def start(
        self,
        name: str = "azure",
        *,
        deployments: tuple[str, ...] = (),
        token_lifetime: float = 3600.0,
        api_key: str | None = None,
        tls: tuple[str, str, str] | None = None,  # certificate, key, CA: serve HTTPS
    ) -> UpstreamProcess:
        args = [
            "--api-key",
            self.api_key if api_key is None else api_key,
            "--token-secret",
            self.token_secret,
            "--tenant",
            self.tenant,
            "--client-id",
            self.client_id,
            "--federated-token-file",
            str(self.token_file),
            "--token-lifetime",
            str(token_lifetime),
            "--deployments",
            ",".join(deployments),
        ]
        process = UpstreamProcess(
            self.directory,
            name=name,
            module="tests.upstream.azure_server",
            extra_args=args,
            tls=tls,
        )
        self.started.append(process)
        return process

    def workload_identity_env(self, entra: UpstreamProcess) -> dict[str, Any]:
        return {
            "AZURE_CLIENT_ID": self.client_id,
            "AZURE_TENANT_ID": self.tenant,
            "AZURE_AUTHORITY_HOST": entra.base_url,
            "AZURE_FEDERATED_TOKEN_FILE": str(self.token_file),
        }

    def close(self) -> None:
        for process in self.started:
            process.close()
