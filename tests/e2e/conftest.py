"""End-to-end fixtures: real clients (Claude Code, the TypeScript SDK) and real upstream servers
(llama.cpp's server via llama-cpp-python, LiteLLM's proxy) around a real sidecar process.

Everything they need is installed by ``scripts/e2e-setup.sh`` into ``$E2E_HOME`` (default
``<repo>/.e2e``). The tests here run only when selected with ``-m e2e`` (``make e2e``); a
plain ``pytest`` run deselects them. A selected test whose tools are missing is skipped, or
fails when ``CI`` is set (CI installs them first, so a missing tool there is a broken setup,
not a reason to skip).

Every process is started with ``tests.upstream.processes.ManagedProcess`` (its own session,
output in files) and stopped by its PID: SIGTERM, then SIGKILL after 10 s, and checked gone.
The servers are session-scoped (llama.cpp and LiteLLM take seconds to start); Claude Code runs
once per call, with a fresh ``HOME`` and a hard timeout.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests.upstream.processes import ManagedProcess  # noqa: E402

E2E_HOME = Path(os.environ.get("E2E_HOME", REPO_ROOT / ".e2e"))
NODE_MODULES = E2E_HOME / "node" / "node_modules"
CLAUDE = NODE_MODULES / ".bin" / "claude"
LLAMA_PYTHON = E2E_HOME / "llama-venv" / "bin" / "python"
LITELLM_BIN = E2E_HOME / "litellm-venv" / "bin" / "litellm"
LITELLM_PYTHON = E2E_HOME / "litellm-venv" / "bin" / "python"
HERE = Path(__file__).resolve().parent

SERVER_START_TIMEOUT = 120.0
CLAUDE_TIMEOUT = 180.0
LITELLM_KEY = "sk-e2e-litellm-master"
CALLER_KEY = "sk-e2e-caller"

# LiteLLM's proxy: answers from mock_response, no retries; errors raised by the mock itself.
LITELLM_MODELS = {
    "mock-ok": "Hello from the LiteLLM mock.",
    "mock-429": "litellm.RateLimitError",
    "mock-500": "litellm.InternalServerError",
}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "e2e: real clients and servers (scripts/e2e-setup.sh); run with -m e2e"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Not asked for with -m e2e: deselected (`make e2e` runs them), so a plain run has no skips.
    selected = "e2e" in (config.option.markexpr or "")
    keep, drop = [], []
    for item in items:
        mine = Path(str(item.fspath)).is_relative_to(HERE)
        if mine:
            item.add_marker(pytest.mark.e2e)
        (drop if mine and not selected else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def require(*paths: Path) -> None:
    """Skip (fail under CI) unless each path exists."""
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        message = f"not installed: {', '.join(missing)} (run scripts/e2e-setup.sh)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_json(
    method: str,
    url: str,
    body: Any = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 120.0,
) -> tuple[int, dict[str, str], Any]:
    """One HTTP request with the standard library: (status, lower-case headers, parsed body)."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("content-type", "application/json")
    for key, value in (headers or {}).items():
        request.add_header(key, value)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
            status, head = response.status, response.headers
    except urllib.error.HTTPError as exc:
        raw, status, head = exc.read(), exc.code, exc.headers
    text = raw.decode("utf-8", errors="replace")
    try:
        parsed: Any = json.loads(text)
    except ValueError:
        parsed = text
    return status, {k.lower(): v for k, v in head.items()}, parsed


def sse_events(text: str) -> list[tuple[str, Any]]:
    """(event name, parsed data) for each SSE frame of a body."""
    events = []
    for frame in text.replace("\r\n", "\n").split("\n\n"):
        name, data = "", []
        for line in frame.split("\n"):
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())
        if data:
            joined = "\n".join(data)
            events.append((name, joined if joined == "[DONE]" else json.loads(joined)))
    return events


def stream_text(url: str, body: Any, headers: Mapping[str, str] | None = None) -> str:
    status, _, text = http_json("POST", url, {**body, "stream": True}, headers)
    assert status == 200, text
    return text if isinstance(text, str) else json.dumps(text)


class Server:
    """A server process (ManagedProcess) on a known port, ready when ``probe`` answers."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_dir: Path,
        port: int,
        probe: str,
        env: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.port = port
        self.base_url = f"http://127.0.0.1:{port}"
        self.process = ManagedProcess(name, argv, log_dir, env=env)
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while True:
            if self.process.proc.poll() is not None:
                raise AssertionError(f"{name} exited early\n{self.process.output(tail=80)}")
            try:
                status, _, _ = http_json("GET", self.base_url + probe, headers=headers, timeout=2)
                if status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.close()
                raise AssertionError(f"{name} not ready in time\n{self.process.output(tail=80)}")
            time.sleep(0.25)

    def log_text(self) -> str:
        return "\n".join(self.process.log_lines())

    def close(self) -> None:
        self.process.stop()
        self.process.assert_gone()


@pytest.fixture(scope="session")
def tiny_gguf() -> Path:
    require(LITELLM_PYTHON)
    script = HERE / "make_tiny_gguf.py"
    digest = hashlib.sha256(script.read_bytes()).hexdigest()[:12]
    path = E2E_HOME / f"tiny-llama-{digest}.gguf"  # a new file whenever the script changes
    if not path.exists():
        subprocess.run(
            [str(LITELLM_PYTHON), str(script), str(path)],
            check=True,
            timeout=120,
        )
    return path


@pytest.fixture(scope="session")
def llama_server(tiny_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """llama.cpp's OpenAI-compatible server (llama-cpp-python) serving the tiny model."""
    require(LLAMA_PYTHON)
    port = free_port()
    argv = [
        str(LLAMA_PYTHON),
        "-m",
        "llama_cpp.server",
        "--model",
        str(tiny_gguf),
        "--model_alias",
        "tiny",
        "--chat_format",
        "chatml-function-calling",
        "--n_ctx",
        "4096",
        "--n_threads",
        "2",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    server = Server("llama-server", argv, tmp_path_factory.mktemp("llama"), port, "/v1/models")
    yield server
    server.close()


@pytest.fixture(scope="session")
def litellm_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """LiteLLM's proxy, offline: mock_response models (one OK, one 429, one 500), no retries."""
    require(LITELLM_BIN)
    directory = tmp_path_factory.mktemp("litellm")
    config = {
        "model_list": [
            {
                "model_name": name,
                "litellm_params": {"model": "openai/gpt-4o-mini", "mock_response": answer},
            }
            for name, answer in LITELLM_MODELS.items()
        ],
        # drop_params: Claude Code's thinking becomes reasoning_effort, which LiteLLM refuses
        # (400 UnsupportedParamsError) for a model it knows as non-reasoning.
        "litellm_settings": {
            "num_retries": 0,
            "request_timeout": 30,
            "telemetry": False,
            "drop_params": True,
        },
        "router_settings": {"num_retries": 0, "allowed_fails": 1000},
        "general_settings": {"master_key": LITELLM_KEY},
    }
    path = directory / "litellm.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    port = free_port()
    env = {
        **os.environ,
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_TELEMETRY": "False",
        "HOME": str(directory),
    }
    argv = [str(LITELLM_BIN), "--config", str(path), "--host", "127.0.0.1", "--port", str(port)]
    headers = {"authorization": f"Bearer {LITELLM_KEY}"}
    server = Server("litellm", argv, directory, port, "/v1/models", env=env, headers=headers)
    yield server
    server.close()


@dataclass
class ClaudeRun:
    result: dict[str, Any]
    returncode: int
    stderr: str

    @property
    def text(self) -> str:
        return str(self.result.get("result", ""))


def run_claude(
    base_url: str,
    prompt: str,
    workdir: Path,
    *,
    model: str = "claude-sonnet-4-5",
    args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    timeout: float = CLAUDE_TIMEOUT,
) -> ClaudeRun:
    """``claude -p PROMPT --output-format json`` headless, offline, with a fresh HOME."""
    require(CLAUDE)
    home = workdir / ".home"
    home.mkdir(parents=True, exist_ok=True)
    environment = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "ANTHROPIC_BASE_URL": base_url,
        "ANTHROPIC_API_KEY": CALLER_KEY,
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_AUTOUPDATER": "1",
        "DISABLE_ERROR_REPORTING": "1",
        **(env or {}),
    }
    argv = [str(CLAUDE), "-p", prompt, "--output-format", "json", "--model", model, *args]
    proc = subprocess.run(
        argv,
        cwd=workdir,
        env=environment,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    try:
        result = json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        result = {"unparsed_stdout": proc.stdout}
    return ClaudeRun(result, proc.returncode, proc.stderr)


def run_sdk(base_url: str, scenario: str, model: str, max_tokens: int = 40) -> dict[str, Any]:
    """The TypeScript SDK script (sdk_client.mjs): one scenario, its JSON result."""
    require(NODE_MODULES / "@anthropic-ai" / "sdk")
    env = {**os.environ, "NODE_PATH": str(NODE_MODULES), "E2E_MAX_TOKENS": str(max_tokens)}
    proc = subprocess.run(
        ["node", str(HERE / "sdk_client.mjs"), base_url, scenario, model],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.stdout.strip(), f"no output (exit {proc.returncode}): {proc.stderr[-2000:]}"
    value: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    assert proc.returncode == 0, value
    return value
