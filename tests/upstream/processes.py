"""Child processes for integration tests: the fake upstream and the sidecar, stopped by PID.

``ManagedProcess`` starts one command with ``subprocess.Popen`` in its own session (so the
terminal's Ctrl-C goes to pytest and a test's signals reach only the process it means), with stdout
and stderr written to files (``<name>.stdout`` / ``<name>.stderr`` in a given directory). It waits
for a ready line by polling the stdout file, which cannot deadlock on a full pipe, and fails with
``ProcessStartError`` (the output included) when the process exits first or stays silent too long.
``stop()`` sends SIGTERM, waits (10 s by default), then SIGKILL; ``assert_gone()`` checks that the
process and everything in its process group have exited.

``UpstreamProcess`` runs ``tests.upstream.server`` (ready line ``READY port=NNNN``);
``SidecarProcess`` wraps a sidecar that printed its ready line, a JSON object
``{"event": "ready", "http": "127.0.0.1:PORT", "grpc": "127.0.0.1:PORT", ...}``.
The pytest fixtures that use these live in ``tests/conftest.py``; tests import the classes from
here (never from ``conftest``, which pytest imports under another module name).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from tests.upstream.client import UpstreamControl

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
STOP_TIMEOUT = 10.0
STARTUP_TIMEOUT = 20.0
ENV_PREFIXES_REMOVED = ("OPENAI_", "ANTHROPIC_", "ANYLLM_", "AZURE_")
ENV_NAMES_REMOVED = ("BIG_MODEL", "SMALL_MODEL", "BEDROCK_MODEL")

T = TypeVar("T")


class ProcessStartError(AssertionError):
    """A process exited, or did not say it was ready, in time."""

    def __init__(self, message: str, returncode: int | None, output: str) -> None:
        super().__init__(f"{message}\n--- output ---\n{output}")
        self.returncode = returncode
        self.output = output


class ManagedProcess:
    """One child process: output in files, stopped by its PID."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_dir: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path = REPO_ROOT,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.stdout_path = log_dir / f"{name}.stdout"
        self.stderr_path = log_dir / f"{name}.stderr"
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self.proc = subprocess.Popen(
                self.argv,
                cwd=cwd,
                env=dict(env) if env is not None else None,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
        self.pid = self.proc.pid

    def stdout_lines(self) -> list[str]:
        return _read_lines(self.stdout_path)

    def stderr_lines(self) -> list[str]:
        return _read_lines(self.stderr_path)

    def log_lines(self) -> list[str]:
        """Everything written so far: stdout lines, then stderr lines."""
        return self.stdout_lines() + self.stderr_lines()

    def output(self, tail: int | None = None) -> str:
        parts = []
        for label, lines in (("stdout", self.stdout_lines()), ("stderr", self.stderr_lines())):
            shown = lines[-tail:] if tail else lines
            path = self.stdout_path if label == "stdout" else self.stderr_path
            parts.append(f"[{self.name} {label}: {path}]\n" + "\n".join(shown))
        return "\n".join(parts)

    def wait_for_line(self, parse: Callable[[str], T | None], timeout: float) -> T:
        """Poll stdout until ``parse(line)`` returns a value; fail if the process exits first."""
        deadline = time.monotonic() + timeout
        while True:
            for line in self.stdout_lines():
                found = parse(line)
                if found is not None:
                    return found
            code = self.proc.poll()
            if code is not None:
                raise ProcessStartError(
                    f"{self.name} (pid {self.pid}) exited with {code} before it was ready",
                    code,
                    self.output(),
                )
            if time.monotonic() >= deadline:
                self.stop()
                raise ProcessStartError(
                    f"{self.name} (pid {self.pid}) not ready within {timeout}s: {self.argv}",
                    self.proc.returncode,
                    self.output(),
                )
            time.sleep(0.01)

    def signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            os.kill(self.pid, sig)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout)

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM, wait up to ``timeout`` s, then SIGKILL; return the exit code."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)
                self.proc.wait(timeout)
        return self.proc.returncode

    def assert_gone(self) -> None:
        """The process has exited and nothing it started is left in its process group."""
        assert self.proc.poll() is not None, f"{self.name} (pid {self.pid}) still running"
        deadline = time.monotonic() + 2.0
        while _group_alive(self.pid):
            if time.monotonic() >= deadline:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, signal.SIGKILL)
                raise AssertionError(f"{self.name} (pid {self.pid}) left processes behind")
            time.sleep(0.01)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        return []


# --------------------------------------------------------------------------- the fake upstream


class UpstreamProcess:
    """A running fake upstream (``tests.upstream.server``)."""

    def __init__(
        self,
        log_dir: Path,
        name: str = "upstream",
        max_seconds: float = 600.0,
        tls: tuple[str, str, str] | None = None,  # certificate, key, CA that signed it
        module: str = "tests.upstream.server",  # or a wrapper of it (tests.upstream.azure_server)
        extra_args: Sequence[str] = (),
    ) -> None:
        argv = [
            sys.executable,
            "-m",
            module,
            "--port",
            "0",
            "--max-seconds",
            str(max_seconds),
            *extra_args,
        ]
        if tls is not None:
            argv += ["--tls-cert", tls[0], "--tls-key", tls[1]]
        self.process = ManagedProcess(name, argv, log_dir)
        self.port: int = self.process.wait_for_line(parse_upstream_ready, STARTUP_TIMEOUT)
        scheme = "https" if tls else "http"
        self.base_url = f"{scheme}://127.0.0.1:{self.port}"
        self.control = UpstreamControl(self.base_url, ca_file=tls[2] if tls else None)
        self.pid = self.process.pid
        self.proc = self.process.proc

    def log_lines(self) -> list[str]:
        return self.process.log_lines()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> int:
        self.control.close()
        return self.process.stop()

    def close(self) -> None:
        """Stop and check: exit status 0 (it handles SIGTERM), nothing left."""
        code = self.stop()
        self.process.assert_gone()
        assert code == 0, f"fake upstream exited with {code}\n{self.process.output(tail=50)}"


def parse_upstream_ready(line: str) -> int | None:
    if line.startswith("READY port="):
        return int(line.removeprefix("READY port=").strip())
    return None


class SidecarProcess:
    """A running sidecar that has printed its ready line."""

    def __init__(self, process: ManagedProcess, ready: dict[str, Any], config_path: Path | None):
        self.process = process
        self.ready = ready
        self.config_path = config_path
        self.pid = process.pid
        self.proc = process.proc
        self.grpc_target: str = ready["grpc"]
        self.http_url = f"http://{ready['http']}"
        self.http_port = int(str(ready["http"]).rsplit(":", 1)[1])
        self.grpc_port = int(str(ready["grpc"]).rsplit(":", 1)[1])

    def log_lines(self) -> list[str]:
        return self.process.log_lines()

    def signal(self, sig: int) -> None:
        self.process.signal(sig)

    def wait(self, timeout: float) -> int:
        return self.process.wait(timeout)

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        return self.process.stop(timeout)


def parse_sidecar_ready(line: str) -> dict[str, Any] | None:
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        value = json.loads(line)
    except ValueError:
        return None
    if not isinstance(value, dict) or value.get("event") != "ready":
        return None
    if not isinstance(value.get("http"), str) or not isinstance(value.get("grpc"), str):
        return None
    return value


def sidecar_env(extra: Mapping[str, str | None] | None = None) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(ENV_PREFIXES_REMOVED) and k not in ENV_NAMES_REMOVED
    }
    for key, value in (extra or {}).items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env
