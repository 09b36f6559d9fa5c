"""The fake Bedrock process for tests (``tests.upstream.bedrock_server``) and the environment that
keeps botocore away from real AWS.

    fake = BedrockFake(tmp_path)                      # started, READY read, stopped by close()
    fake.script({"error": "ThrottlingException", "status": 429})
    fake.log()                                        # what it saw (Bedrock and STS requests)

``aws_env(tmp_path, **extra)`` is the environment for a process (or a test) that uses botocore:
every ``AWS_*`` variable of the outer environment removed (``None``, as ``sidecar_factory``
takes it), IMDS disabled, config and credentials files pointed at empty files under
``tmp_path``, plus ``extra``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from tests.upstream.processes import STARTUP_TIMEOUT, ManagedProcess, parse_upstream_ready

ACCESS_KEY = "AKIAFAKEBEDROCK00001"
SECRET_KEY = "fake-bedrock-SECRET-key-0005"
REGION = "us-east-1"


class BedrockFake:
    def __init__(
        self,
        log_dir: Path,
        *,
        name: str = "bedrock",
        args: Sequence[str] = (),
        access_key: str = ACCESS_KEY,
        secret_key: str = SECRET_KEY,
        max_seconds: float = 600.0,
    ) -> None:
        argv = [
            sys.executable,
            "-m",
            "tests.upstream.bedrock_server",
            "--port",
            "0",
            "--region",
            REGION,
            "--access-key",
            access_key,
            "--secret-key",
            secret_key,
            "--max-seconds",
            str(max_seconds),
            *args,
        ]
        self.process = ManagedProcess(name, argv, log_dir)
        self.port = self.process.wait_for_line(parse_upstream_ready, STARTUP_TIMEOUT)
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._http = httpx.Client(base_url=self.base_url, timeout=10)

    def script(self, *behaviours: dict[str, Any]) -> None:
        self._http.post("/_control/script", json=list(behaviours)).raise_for_status()

    def reset(self) -> None:
        self._http.post("/_control/reset").raise_for_status()

    def log(self, service: str | None = "bedrock") -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = self._http.get("/_control/log").json()["requests"]
        return [e for e in entries if service is None or e["service"] == service]

    def close(self) -> None:
        self._http.close()
        code = self.process.stop()
        self.process.assert_gone()
        assert code == 0, f"fake Bedrock exited with {code}\n{self.process.output(tail=40)}"


def aws_env(tmp_path: Path, **extra: str) -> dict[str, str | None]:
    """An environment in which botocore sees only what a test gives it."""
    config = tmp_path / "aws-config"
    credentials = tmp_path / "aws-credentials"
    config.touch()
    credentials.touch()
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("AWS_")}
    env.update(
        AWS_EC2_METADATA_DISABLED="true",
        AWS_CONFIG_FILE=str(config),
        AWS_SHARED_CREDENTIALS_FILE=str(credentials),
    )
    env.update(extra)
    return env
