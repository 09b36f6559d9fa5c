"""Shared fixtures: real processes on 127.0.0.1 — the fake upstream and the sidecar.

Every process is started with ``subprocess.Popen`` in its own session (so the terminal's Ctrl-C
goes to pytest, and a test's signals reach only the process it means), with stdout and stderr
written to files under the test's ``tmp_path`` (their paths are in every failure message; the tail
is printed when a test fails). Teardown stops each process by its PID — SIGTERM, up to 10 s,
then SIGKILL — and asserts that it and its process group are gone.

Fixtures
--------
``upstream``
    The session's fake upstream (``tests.upstream.server``), reset (empty script and log) before
    each test: an ``UpstreamProcess`` with ``.base_url`` ("http://127.0.0.1:PORT"), ``.port``,
    ``.control`` (``UpstreamControl``), ``.pid``, ``.proc``, ``.log_lines()``.
``start_upstream``
    A factory, ``start_upstream(max_seconds=600.0) -> UpstreamProcess``, for tests that need more
    upstreams, or one of their own; each is stopped at the end of the test.
``sidecar_factory``
    ``sidecar_factory(config, *, env=None, args=(), command=None, config_text=None,
    startup_timeout=20.0) -> SidecarProcess``. Writes ``config`` (a YAML-serialisable dict; or
    ``config_text`` verbatim; neither: no ``--config``) to a file, runs ``command`` (default
    ``[sys.executable, "-m", "sidecar"]``) + ``["--config", path]`` + ``args`` from the repository
    root, and waits for the ready line on stdout: a JSON object with ``"event": "ready"``,
    ``"http": "127.0.0.1:PORT"`` and ``"grpc": "127.0.0.1:PORT"``. The environment is
    ``os.environ`` without the variables that select a zero-config mode (``OPENAI_*``,
    ``ANTHROPIC_*``, ``ANYLLM_*``, ``BIG_MODEL``, ``SMALL_MODEL``), plus ``env`` (a ``None`` value
    removes a variable). A process that exits or stays silent for ``startup_timeout`` seconds fails
    with ``ProcessStartError`` (an ``AssertionError`` with ``.returncode`` and ``.output``).
    The ``SidecarProcess`` has ``.http_url`` ("http://127.0.0.1:PORT"), ``.grpc_target``
    ("127.0.0.1:PORT"), ``.http_port``, ``.grpc_port``, ``.ready`` (the parsed ready line),
    ``.pid``, ``.proc``, ``.config_path``, ``.log_lines()`` (stdout then stderr lines so far),
    ``.signal(sig)``, ``.stop(timeout=10.0) -> returncode`` and ``.wait(timeout) -> returncode``.

Configs use ``server: {http: "127.0.0.1:0", grpc: "127.0.0.1:0"}`` for ephemeral ports;
``sidecar_config(upstream_url, ...)`` is not provided here on purpose: the config schema belongs to
``sidecar.config``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # so that ``tests.upstream`` imports in any pytest import mode
    sys.path.insert(0, str(REPO_ROOT))

from tests.upstream.client import UpstreamControl  # noqa: E402

T = TypeVar("T")

STOP_TIMEOUT = 10.0
STARTUP_TIMEOUT = 20.0
ENV_PREFIXES_REMOVED = ("OPENAI_", "ANTHROPIC_", "ANYLLM_")
ENV_NAMES_REMOVED = ("BIG_MODEL", "SMALL_MODEL")


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

    def __init__(self, log_dir: Path, name: str = "upstream", max_seconds: float = 600.0) -> None:
        argv = [
            sys.executable,
            "-m",
            "tests.upstream.server",
            "--port",
            "0",
            "--max-seconds",
            str(max_seconds),
        ]
        self.process = ManagedProcess(name, argv, log_dir)
        self.port: int = self.process.wait_for_line(_parse_upstream_ready, STARTUP_TIMEOUT)
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.control = UpstreamControl(self.base_url)
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


def _parse_upstream_ready(line: str) -> int | None:
    if line.startswith("READY port="):
        return int(line.removeprefix("READY port=").strip())
    return None


@pytest.fixture(scope="session")
def _upstream_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[UpstreamProcess]]:
    holder: list[UpstreamProcess] = []  # replaced if it ever dies (e.g. after --max-seconds)
    yield holder
    for up in holder:
        up.close()


@pytest.fixture
def upstream(
    _upstream_session: list[UpstreamProcess], tmp_path_factory: pytest.TempPathFactory
) -> UpstreamProcess:
    """The shared fake upstream, with an empty script and log."""
    if not _upstream_session or not _upstream_session[-1].alive():
        log_dir = tmp_path_factory.mktemp("upstream")
        _upstream_session.append(UpstreamProcess(log_dir, max_seconds=3600.0))
    up = _upstream_session[-1]
    up.control.reset()
    return up


@pytest.fixture
def start_upstream(tmp_path: Path) -> Iterator[Callable[..., UpstreamProcess]]:
    """Start extra fake upstreams, stopped at the end of the test."""
    started: list[UpstreamProcess] = []

    def start(max_seconds: float = 600.0) -> UpstreamProcess:
        up = UpstreamProcess(tmp_path, name=f"upstream{len(started) + 1}", max_seconds=max_seconds)
        started.append(up)
        return up

    yield start
    for up in started:
        up.close()


# --------------------------------------------------------------------------- the sidecar


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


def _parse_sidecar_ready(line: str) -> dict[str, Any] | None:
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


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call":
        item.stash[_CALL_FAILED] = report.failed
    return report


_CALL_FAILED = pytest.StashKey[bool]()


@pytest.fixture
def sidecar_factory(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Callable[..., SidecarProcess]]:
    """Start sidecar processes from config dicts; each is stopped at the end of the test."""
    started: list[ManagedProcess] = []

    def start(
        config: Mapping[str, Any] | None = None,
        *,
        env: Mapping[str, str | None] | None = None,
        args: Sequence[str] = (),
        command: Sequence[str] | None = None,
        config_text: str | None = None,
        startup_timeout: float = STARTUP_TIMEOUT,
    ) -> SidecarProcess:
        n = len(started) + 1
        argv = list(command) if command is not None else [sys.executable, "-m", "sidecar"]
        config_path: Path | None = None
        if config is not None or config_text is not None:
            config_path = tmp_path / f"sidecar{n}.yaml"
            text = config_text if config_text is not None else yaml.safe_dump(dict(config or {}))
            config_path.write_text(text, encoding="utf-8")
            argv += ["--config", str(config_path)]
        argv += list(args)
        process = ManagedProcess(f"sidecar{n}", argv, tmp_path, env=sidecar_env(env))
        started.append(process)
        ready = process.wait_for_line(_parse_sidecar_ready, startup_timeout)
        return SidecarProcess(process, ready, config_path)

    yield start

    failed = request.node.stash.get(_CALL_FAILED, False)
    errors = []
    for process in started:
        process.stop()
        if failed:
            print(process.output(tail=60))
        try:
            process.assert_gone()
        except AssertionError as exc:
            errors.append(str(exc))
    assert not errors, errors
