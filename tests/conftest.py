"""Shared fixtures: real processes on 127.0.0.1 — the fake upstream and the sidecar.

The processes are ``tests.upstream.processes`` objects: each runs in its own session with stdout
and stderr written to files under ``tmp_path`` (their paths are in every failure message; a
sidecar's tail is printed when a test fails). Teardown stops each process by its PID — SIGTERM,
up to 10 s, then SIGKILL — and asserts that it and its process group are gone.

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
    ``os.environ`` without the variables that select a zero-config mode (``OPENAI_*``, ``AZURE_*``,
    ``ANTHROPIC_*``, ``ANYLLM_*``, ``BIG_MODEL``, ``SMALL_MODEL``, ``BEDROCK_MODEL``), plus ``env``
    (a ``None`` value removes a variable). A process that exits or stays silent for
    ``startup_timeout`` seconds fails
    with ``ProcessStartError`` (an ``AssertionError`` with ``.returncode`` and ``.output``;
    import it from ``tests.upstream.processes``).
    The ``SidecarProcess`` has ``.http_url`` ("http://127.0.0.1:PORT"), ``.grpc_target``
    ("127.0.0.1:PORT"), ``.http_port``, ``.grpc_port``, ``.ready`` (the parsed ready line),
    ``.pid``, ``.proc``, ``.config_path``, ``.log_lines()`` (stdout then stderr lines so far),
    ``.signal(sig)``, ``.stop(timeout=10.0) -> returncode`` and ``.wait(timeout) -> returncode``.

Configs use ``server: {http: "127.0.0.1:0", grpc: "127.0.0.1:0"}`` for ephemeral ports;
``sidecar_config(upstream_url, ...)`` is not provided here on purpose: the config schema belongs to
``sidecar.config``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # so that ``tests.upstream`` imports in any pytest import mode
    sys.path.insert(0, str(REPO_ROOT))

from tests.upstream.processes import (  # noqa: E402
    STARTUP_TIMEOUT,
    ManagedProcess,
    SidecarProcess,
    UpstreamProcess,
    parse_sidecar_ready,
    sidecar_env,
)


@pytest.fixture(scope="session")
def _upstream_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[UpstreamProcess]]:
    holder: list[UpstreamProcess] = []  # replaced if it ever dies (e.g. after --max-seconds)
    yield holder
    for up in holder:
        up.close()


def _live_upstream(
    holder: list[UpstreamProcess], tmp_path_factory: pytest.TempPathFactory
) -> UpstreamProcess:
    if not holder or not holder[-1].alive():
        log_dir = tmp_path_factory.mktemp("upstream")
        holder.append(UpstreamProcess(log_dir, max_seconds=3600.0))
    return holder[-1]


@pytest.fixture(scope="module")
def module_upstream(
    _upstream_session: list[UpstreamProcess], tmp_path_factory: pytest.TempPathFactory
) -> UpstreamProcess:
    """The shared fake upstream, for module-scoped fixtures (e.g. a module's sidecar config)."""
    return _live_upstream(_upstream_session, tmp_path_factory)


@pytest.fixture
def upstream(
    _upstream_session: list[UpstreamProcess], tmp_path_factory: pytest.TempPathFactory
) -> UpstreamProcess:
    """The shared fake upstream, with an empty script and log."""
    up = _live_upstream(_upstream_session, tmp_path_factory)
    up.control.reset()
    return up


@pytest.fixture
def start_upstream(tmp_path: Path) -> Iterator[Callable[..., UpstreamProcess]]:
    """Start extra fake upstreams, stopped at the end of the test."""
    started: list[UpstreamProcess] = []

    def start(
        max_seconds: float = 600.0, tls: tuple[str, str, str] | None = None
    ) -> UpstreamProcess:
        name = f"upstream{len(started) + 1}"
        up = UpstreamProcess(tmp_path, name=name, max_seconds=max_seconds, tls=tls)
        started.append(up)
        return up

    yield start
    for up in started:
        up.close()


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
        ready = process.wait_for_line(parse_sidecar_ready, startup_timeout)
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


@pytest.fixture(scope="module")
def module_sidecar_factory(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., SidecarProcess]]:
    """``sidecar_factory`` for a sidecar shared by a whole test module (stopped at its end).

    For modules of many short cases against one configuration, where a process per test would
    cost more than the cases themselves.
    """
    directory = tmp_path_factory.mktemp("module-sidecar")
    started: list[ManagedProcess] = []

    def start(
        config: Mapping[str, Any], *, env: Mapping[str, str | None] | None = None
    ) -> SidecarProcess:
        n = len(started) + 1
        config_path = directory / f"sidecar{n}.yaml"
        config_path.write_text(yaml.safe_dump(dict(config)), encoding="utf-8")
        argv = [sys.executable, "-m", "sidecar", "--config", str(config_path)]
        process = ManagedProcess(f"sidecar{n}", argv, directory, env=sidecar_env(env))
        started.append(process)
        ready = process.wait_for_line(parse_sidecar_ready, STARTUP_TIMEOUT)
        return SidecarProcess(process, ready, config_path)

    yield start
    for process in started:
        process.stop()
        process.assert_gone()
