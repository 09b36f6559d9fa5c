"""Running the fake Vertex AI (``tests.upstream.vertex_server``) from a test, with credentials.

    fake = VertexFake(tmp_path)          # a new RSA key, the server, a service-account JSON
    fake.credentials_file                # its token_uri is the fake's /token
    fake.script({"status": 429})         # the next model request gets a RESOURCE_EXHAUSTED
    fake.log()                           # what it saw: paths, statuses, tokens
    fake.close()                         # stopped by PID, checked gone

``google_env()`` is the environment for any process that uses google-auth in a test: every
``GOOGLE_*`` / ``CLOUDSDK_*`` variable removed and the metadata server pointed at a dead local
port, so that nothing can reach a real Google endpoint or metadata server.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.upstream.processes import STARTUP_TIMEOUT, ManagedProcess, parse_upstream_ready

PROJECT = "fake-project"
CLIENT_EMAIL = "sidecar@fake-project.iam.gserviceaccount.com"


def dead_port() -> int:
    """A local port nothing listens on (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def google_env(extra: dict[str, str] | None = None) -> dict[str, str | None]:
    """Variables to set (and, as None, to remove) so google-auth stays on this machine."""
    env: dict[str, str | None] = {
        k: None for k in os.environ if k.startswith(("GOOGLE_", "CLOUDSDK_", "GCE_"))
    }
    dead = f"127.0.0.1:{dead_port()}"
    # google-auth skips the metadata-server probe only for exactly "true" (lower case).
    env.update({"GCE_METADATA_HOST": dead, "GCE_METADATA_IP": dead, "NO_GCE_CHECK": "true"})
    # No gcloud user credentials from the home directory either.
    env["CLOUDSDK_CONFIG"] = "/nonexistent-gcloud-config"
    env.update(extra or {})
    return env


def apply_google_env(monkeypatch: Any) -> None:
    """``google_env`` for the test process itself."""
    for key, value in google_env().items():
        if value is None:
            monkeypatch.delenv(key, raising=False)
        else:
            monkeypatch.setenv(key, value)


class VertexFake:
    """The fake Vertex process, its RSA key and a service-account JSON that points at it."""

    def __init__(self, directory: Path, name: str = "vertex", max_seconds: float = 600.0) -> None:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        private_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        public_path = directory / f"{name}-public.pem"
        public_path.write_bytes(
            key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        argv = [sys.executable, "-m", "tests.upstream.vertex_server", "--port", "0"]
        argv += ["--max-seconds", str(max_seconds), "--public-key", str(public_path)]
        self.process = ManagedProcess(name, argv, directory)
        self.port = self.process.wait_for_line(parse_upstream_ready, STARTUP_TIMEOUT)
        self.pid = self.process.pid
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.token_uri = f"{self.base_url}/token"
        self.credentials_file = directory / f"{name}-service-account.json"
        self.credentials_file.write_text(
            json.dumps(
                {
                    "type": "service_account",
                    "project_id": PROJECT,
                    "private_key_id": "fake-key-1",
                    "private_key": private_pem,
                    "client_email": CLIENT_EMAIL,
                    "client_id": "1234567890",
                    "token_uri": self.token_uri,
                }
            ),
            encoding="utf-8",
        )
        self._http = httpx.Client(base_url=self.base_url, timeout=10.0)

    def _post(self, path: str, value: Any) -> None:
        response = self._http.post(path, json=value)
        assert response.status_code == 200, response.text

    def script(self, *behaviours: dict[str, Any]) -> None:
        self._post("/_control/script", list(behaviours))

    def tokens(self, *, expires_in: int | None = None, revoke: bool = False) -> None:
        value: dict[str, Any] = {"revoke": revoke}
        if expires_in is not None:
            value["expires_in"] = expires_in
        self._post("/_control/tokens", value)

    def reset(self) -> None:
        self._post("/_control/reset", None)

    def log(self) -> list[dict[str, Any]]:
        requests: list[dict[str, Any]] = self._http.get("/_control/log").json()["requests"]
        return requests

    def model_requests(self) -> list[dict[str, Any]]:
        return [e for e in self.log() if e["path"].startswith("/v1/")]

    def wait_for(
        self, done: Callable[[list[dict[str, Any]]], bool], timeout: float = 10.0
    ) -> list[dict[str, Any]]:
        """Poll the model requests until ``done(them)``; a bound, never a measurement."""
        deadline = time.monotonic() + timeout
        while True:
            requests = self.model_requests()
            if done(requests):
                return requests
            if time.monotonic() >= deadline:
                raise AssertionError(f"fake Vertex log never satisfied the wait: {requests}")
            time.sleep(0.02)

    def token_requests(self) -> list[dict[str, Any]]:
        return [e for e in self.log() if e["path"] == "/token"]

    def close(self) -> None:
        self._http.close()
        code = self.process.stop()
        self.process.assert_gone()
        assert code == 0, f"fake Vertex exited with {code}\n{self.process.output(tail=30)}"
