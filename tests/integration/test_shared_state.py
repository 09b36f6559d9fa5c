"""Two sidecar processes sharing one real Redis (Debian's ``redis-server``, started here on a
free 127.0.0.1 port without persistence and stopped by its PID; ``scripts/ensure-redis.sh``
installs it, ``make check`` runs that first).

- a failure storm seen by one sidecar opens the breaker in the other within 0.5 s, which then
  sends nothing to that target;
- a rate limit announced to one is respected by the other;
- Redis stopped mid-test: requests still succeed on both, each falls back to its own state, and
  says so in its metrics and readiness details (readiness itself stays serving).

The primary target lives on its own fake upstream, so its log counts exactly the requests the
two sidecars sent it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.upstream.processes import ManagedProcess

pytestmark = pytest.mark.integration

REDIS = os.environ.get("REDIS_SERVER", "redis-server")
PRIMARY = "primary/s-a"


class RedisServer:
    def __init__(self, log_dir: Path) -> None:
        for attempt in range(5):
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                self.port = sock.getsockname()[1]
            argv = [
                REDIS,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--protected-mode",
                "yes",
            ]
            self.process = ManagedProcess(f"redis{attempt}", argv, log_dir)
            try:
                self.process.wait_for_line(
                    lambda line: True if "Ready to accept connections" in line else None, 10.0
                )
                break
            except AssertionError:  # the port was taken meanwhile: another one
                self.process.stop()
        else:
            raise AssertionError("redis-server did not start")
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        self.process.stop()
        self.process.assert_gone()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    assert shutil.which(REDIS), f"{REDIS} is not installed: run scripts/ensure-redis.sh"
    server = RedisServer(tmp_path)
    yield server
    server.stop()


def config(primary_url: str, secondary_url: str, redis_url: str) -> dict[str, Any]:
    return {
        "server": {"http": "127.0.0.1:0", "grpc": "127.0.0.1:0", "grace": 2},
        "policy": {"ttft_timeout": 5, "timeout": 20, "breaker": {"failures": 3, "cooldown": 60}},
        "backends": {
            "primary": {"kind": "openai", "base_url": f"{primary_url}/v1", "api_key": "k1"},
            "secondary": {"kind": "openai", "base_url": f"{secondary_url}/v1", "api_key": "k2"},
        },
        "chains": {
            "default": [
                {"backend": "primary", "model": "s-a"},
                {"backend": "secondary", "model": "s-b"},
            ]
        },
        "state": {"redis": redis_url, "key_prefix": "test:", "timeout": 0.05},
    }


@pytest.fixture
def pair(
    redis_server: RedisServer,
    start_upstream: Callable[..., Any],
    sidecar_factory: Callable[..., Any],
) -> tuple[Any, Any, Any, RedisServer]:
    primary, secondary = start_upstream(), start_upstream()
    doc = config(primary.base_url, secondary.base_url, redis_server.url)
    one, two = sidecar_factory(doc), sidecar_factory(doc)
    for sidecar in (one, two):
        wait_until(lambda s=sidecar: details(s)["shared_state"]["mode"] == "shared", 10)
    return one, two, primary, redis_server


def ask(sidecar: Any) -> httpx.Response:
    body = {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
    return httpx.post(f"{sidecar.http_url}/v1/messages", json=body, timeout=30)


def details(sidecar: Any) -> dict[str, Any]:
    response = httpx.get(f"{sidecar.http_url}/readyz?verbose=1", timeout=10)
    assert response.status_code == 200  # readiness stays serving, whatever the state store does
    result: dict[str, Any] = response.json()
    return result


def wait_until(condition: Callable[[], object], within: float) -> float:
    """Poll ``condition`` until true; the seconds it took (fail after ``within``)."""
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < within, f"not within {within} s"
        time.sleep(0.01)
    return time.monotonic() - start


def events(sidecar: Any, name: str) -> list[dict[str, Any]]:
    """The sidecar's JSON log lines of one event."""
    found = []
    for line in sidecar.log_lines():
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if isinstance(record, dict) and record.get("event") == name:
                found.append(record)
    return found


def breaker_state(sidecar: Any) -> str:
    state: str = details(sidecar)["targets"][PRIMARY]["breaker"]["state"]
    return state


def test_a_failure_storm_seen_by_one_opens_the_breaker_in_the_other(pair: Any) -> None:
    one, two, primary, _ = pair
    primary.control.script({"status": 500, "times": 1000})
    for _ in range(3):  # failures: 3 opens it
        response = ask(one)
        assert response.status_code == 200 and response.headers["x-anyllm-backend"] == "secondary"
    assert breaker_state(one) == "open"
    wait_until(lambda: breaker_state(two) == "open", 0.5)
    response = ask(two)  # skips the primary: it never saw a failure of its own
    assert response.status_code == 200 and response.headers["x-anyllm-backend"] == "secondary"
    assert len(primary.control.log()) == 3


def test_a_rate_limit_announced_to_one_is_respected_by_the_other(pair: Any) -> None:
    one, two, primary, _ = pair
    primary.control.script(
        {"headers": {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "1m"}}
    )
    assert ask(one).headers["x-anyllm-backend"] == "primary"
    wait_until(lambda: details(two)["targets"][PRIMARY]["rate_limit"]["wait_seconds"] > 0, 5)
    assert ask(two).headers["x-anyllm-backend"] == "secondary"
    assert len(primary.control.log()) == 1


def test_redis_stopped_mid_test_each_sidecar_goes_on_with_its_own_state(pair: Any) -> None:
    one, two, primary, redis = pair
    assert ask(one).status_code == 200
    redis.stop()
    for sidecar in (one, two):
        for _ in range(5):
            response = ask(sidecar)
            assert response.status_code == 200, response.text
        wait_until(lambda s=sidecar: details(s)["shared_state"]["mode"] == "per_pod", 10)
        state = details(sidecar)["shared_state"]
        assert state["errors"] > 0 and state["last_error"]
        metrics = httpx.get(f"{sidecar.http_url}/metrics", timeout=10).text
        assert "anyllm_state_shared 0.0" in metrics
        errors = [
            line for line in metrics.splitlines() if line.startswith("anyllm_state_errors_total")
        ]
        assert errors and float(errors[0].split()[-1]) > 0
        assert httpx.get(f"{sidecar.http_url}/readyz", timeout=10).status_code == 200
        assert [e["mode"] for e in events(sidecar, "shared_state")][-1] == "per_pod"
    # per pod: a storm seen by one no longer reaches the other
    primary.control.script({"status": 500, "times": 1000})
    for _ in range(3):
        assert ask(one).headers["x-anyllm-backend"] == "secondary"
    assert breaker_state(one) == "open"
    assert breaker_state(two) == "closed"
