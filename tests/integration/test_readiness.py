"""Readiness that reflects the upstreams (``server.ready_requires_upstream``), on both
surfaces: not ready only while every target of the default chain is open in its breaker, ready
again as soon as the first cool-down ends, without a request; ``/readyz?verbose=1`` shows each
target's state. Without the option a pod with dead upstreams stays ready."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

pytestmark = pytest.mark.integration


def dead_url() -> str:
    with socket.socket() as sock:  # a port nothing listens on: connections are refused
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}/v1"


def config(upstream_url: str, requires: bool) -> dict[str, Any]:
    return {
        "server": {
            "http": "127.0.0.1:0",
            "grpc": "127.0.0.1:0",
            "grace": 2,
            "ready_requires_upstream": requires,
        },
        "policy": {"breaker": {"failures": 1, "cooldown": 3}},
        "backends": {
            "dead": {"kind": "openai", "base_url": dead_url(), "api_key": "k"},
            "alive": {"kind": "openai", "base_url": f"{upstream_url}/v1", "api_key": "k"},
        },
        "chains": {
            "default": [{"backend": "dead", "model": "d1"}, {"backend": "dead", "model": "d2"}],
            "other": [{"backend": "alive"}],
        },
    }


def grpc_serving(sidecar: Any) -> bool:
    with grpc.insecure_channel(sidecar.grpc_target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        status = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=5).status
    return bool(status == health_pb2.HealthCheckResponse.SERVING)


def readyz(sidecar: Any, verbose: bool = False) -> httpx.Response:
    query = "?verbose=1" if verbose else ""
    return httpx.get(f"{sidecar.http_url}/readyz{query}", timeout=10)


def ask(sidecar: Any) -> httpx.Response:
    body = {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
    return httpx.post(f"{sidecar.http_url}/v1/messages", json=body, timeout=30)


def wait_until(condition: Callable[[], object], within: float) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, f"not within {within} s"
        time.sleep(0.05)


def test_not_ready_while_every_default_target_is_open_then_ready_without_a_request(
    upstream: Any, sidecar_factory: Callable[..., Any]
) -> None:
    sidecar = sidecar_factory(config(upstream.base_url, requires=True))
    assert readyz(sidecar).status_code == 200 and grpc_serving(sidecar)
    assert ask(sidecar).status_code >= 500  # both targets refused: both breakers open
    opened = time.monotonic()
    not_ready = readyz(sidecar)
    if time.monotonic() < opened + 3:  # still inside the cool-down
        assert not_ready.status_code == 503
        assert not_ready.json() == {"status": "upstream_unavailable"}
        detail = readyz(sidecar, verbose=True)
        body = detail.json()
        assert detail.status_code == 503 and body["status"] == "upstream_unavailable"
        assert {body["targets"][t]["breaker"]["state"] for t in ("dead/d1", "dead/d2")} == {"open"}
        assert body["targets"]["alive"]["breaker"]["state"] == "closed"
        assert body["shared_state"] == {"mode": "per_pod", "configured": False}
        wait_until(lambda: not grpc_serving(sidecar), 5)
    # the cool-down ends: ready again on both surfaces, with no request in between
    wait_until(lambda: readyz(sidecar).status_code == 200, 10)
    wait_until(lambda: grpc_serving(sidecar), 10)
    assert len(upstream.control.log()) == 0


def test_without_the_option_dead_upstreams_do_not_take_the_pod_out(
    upstream: Any, sidecar_factory: Callable[..., Any]
) -> None:
    sidecar = sidecar_factory(config(upstream.base_url, requires=False))
    assert ask(sidecar).status_code >= 500
    assert readyz(sidecar).status_code == 200 and grpc_serving(sidecar)
    body = readyz(sidecar, verbose=True).json()
    assert body["status"] == "ready" and body["requires_upstream"] is False
    assert body["targets"]["dead/d1"]["breaker"]["state"] == "open"
