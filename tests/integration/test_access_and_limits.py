"""Access control and limits on the real process: tokens on both surfaces (probes and metrics
stay open), oversized input, and the concurrency limit answering overload instead of queueing."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from sidecar.grpc_api.gen.anyllm.sidecar.v1 import messages_pb2 as pb
from sidecar.grpc_api.gen.anyllm.sidecar.v1 import messages_service_pb2 as spb
from sidecar.grpc_api.gen.anyllm.sidecar.v1 import messages_service_pb2_grpc as spb_grpc
from tests.integration.helpers import sidecar_config

pytestmark = pytest.mark.integration

TOKEN = "sidecar-token-SECRET-0005"
BODY = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}


def grpc_request(text: str = "hi") -> spb.CreateMessageRequest:
    content = [pb.ContentBlock(text=pb.TextBlock(text=text))]
    return spb.CreateMessageRequest(
        model="m", max_tokens=5, messages=[pb.InputMessage(role=pb.ROLE_USER, content=content)]
    )


def test_tokens_required_on_both_surfaces(
    upstream: Any, sidecar_factory: Callable[..., Any]
) -> None:
    config = sidecar_config(upstream.base_url)
    config["server"]["auth_tokens"] = ["env:SIDECAR_TOKEN", "another-token"]
    sidecar = sidecar_factory(config, env={"SIDECAR_TOKEN": TOKEN})
    with httpx.Client(base_url=sidecar.http_url) as http:
        denied = http.post("/v1/messages", json=BODY)
        assert denied.status_code == 401
        assert denied.json()["error"]["type"] == "authentication_error"
        assert (
            http.post("/v1/messages", json=BODY, headers={"x-api-key": "wrong"}).status_code == 401
        )
        assert http.post("/v1/messages", json=BODY, headers={"x-api-key": TOKEN}).status_code == 200
        bearer = {"authorization": f"Bearer {TOKEN}"}
        assert http.post("/v1/messages", json=BODY, headers=bearer).status_code == 200
        assert http.get("/v1/models").status_code == 401
        assert http.get("/debug/breakers").status_code == 401
        for open_path in ("/healthz", "/readyz", "/metrics"):  # probes and scrapers
            assert http.get(open_path).status_code == 200
    with grpc.insecure_channel(sidecar.grpc_target) as channel:
        stub = spb_grpc.MessagesServiceStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.CreateMessage(grpc_request())
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED  # type: ignore[attr-defined]
        with pytest.raises(grpc.RpcError) as info:
            list(stub.StreamMessage(grpc_request(), metadata=[("authorization", "Bearer nope")]))
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED  # type: ignore[attr-defined]
        ok = stub.CreateMessage(grpc_request(), metadata=[("authorization", f"Bearer {TOKEN}")])
        assert ok.content[0].text.text == "echo: hi"
        other = stub.CreateMessage(grpc_request(), metadata=[("authorization", "another-token")])
        assert other.content[0].text.text == "echo: hi"
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        assert health.status == health_pb2.HealthCheckResponse.SERVING
    assert len(upstream.control.log()) == 4  # only the authorized calls went anywhere
    assert TOKEN not in "\n".join(sidecar.log_lines())


def test_oversized_input_is_refused_with_the_limit(
    upstream: Any, sidecar_factory: Callable[..., Any]
) -> None:
    config = sidecar_config(upstream.base_url)
    config["server"].update(max_body_bytes=4096, max_message_bytes=4096)
    sidecar = sidecar_factory(config)
    big = {**BODY, "messages": [{"role": "user", "content": "x" * 10_000}]}
    with httpx.Client(base_url=sidecar.http_url) as http:
        response = http.post("/v1/messages", json=big)
        assert response.status_code == 413
        assert response.json()["error"]["type"] == "request_too_large"
        assert "4096" in response.json()["error"]["message"]
        assert http.post("/v1/messages", json=BODY).status_code == 200  # still serving
    with grpc.insecure_channel(sidecar.grpc_target) as channel:
        stub = spb_grpc.MessagesServiceStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.CreateMessage(grpc_request("x" * 10_000))
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED  # type: ignore[attr-defined]
        assert "4096" in info.value.details()  # type: ignore[attr-defined]
        assert stub.CreateMessage(grpc_request()).content[0].text.text == "echo: hi"
    assert len(upstream.control.log()) == 2


def test_concurrency_limit_answers_overloaded(
    upstream: Any, sidecar_factory: Callable[..., Any]
) -> None:
    config = sidecar_config(upstream.base_url)
    config["server"]["max_concurrent_requests"] = 2
    sidecar = sidecar_factory(config)
    upstream.control.script({"delay": 3, "times": 2})  # long enough for a loaded machine
    results: list[int] = []

    def slow() -> None:
        with httpx.Client(base_url=sidecar.http_url, timeout=30) as http:
            results.append(http.post("/v1/messages", json=BODY).status_code)

    threads = [threading.Thread(target=slow) for _ in range(2)]
    for thread in threads:
        thread.start()
    upstream.control.wait_for(lambda log: len(log) == 2)  # both slots are taken
    with httpx.Client(base_url=sidecar.http_url) as http:
        refused = http.post("/v1/messages", json=BODY)
    assert refused.status_code == 529
    assert refused.json()["error"]["type"] == "overloaded_error"
    assert "limit of 2 concurrent requests" in refused.json()["error"]["message"]
    assert refused.headers["retry-after"] == "1"
    with (
        grpc.insecure_channel(sidecar.grpc_target) as channel,
        pytest.raises(grpc.RpcError) as info,
    ):
        spb_grpc.MessagesServiceStub(channel).CreateMessage(grpc_request())
    # The sidecar's own limit, like a quota: RESOURCE_EXHAUSTED (UNAVAILABLE is for draining).
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED  # type: ignore[attr-defined]
    for thread in threads:
        thread.join(timeout=30)
    assert results == [200, 200]
    with httpx.Client(base_url=sidecar.http_url) as http:  # the slots are free again
        assert http.post("/v1/messages", json=BODY).status_code == 200


def _metric(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_a_full_backend_pool_is_a_local_529_not_an_upstream_failure(
    upstream: Any, sidecar_factory: Callable[..., Any]
) -> None:
    config = sidecar_config(upstream.base_url, pool_timeout=0.5, breaker={"failures": 1})
    config["backends"]["primary"]["max_connections"] = 2
    sidecar = sidecar_factory(config)
    upstream.control.script({"delay": 3, "times": 2})
    results: list[int] = []

    def slow() -> None:
        with httpx.Client(base_url=sidecar.http_url, timeout=30) as http:
            results.append(http.post("/v1/messages", json=BODY).status_code)

    threads = [threading.Thread(target=slow) for _ in range(2)]
    for thread in threads:
        thread.start()
    upstream.control.wait_for(lambda log: len(log) == 2)  # both of primary's slots are taken
    with httpx.Client(base_url=sidecar.http_url) as http:
        refused = http.post("/v1/messages", json=BODY)
        assert refused.status_code == 529
        assert refused.json()["error"]["type"] == "overloaded_error"
        message = refused.json()["error"]["message"]
        assert "limit of 2 concurrent requests to backend 'primary' (max_connections)" in message
        assert refused.headers["retry-after"] == "1"
        assert refused.headers["x-anyllm-attempts"] == "0"
        assert "x-anyllm-fallback-exhausted" not in refused.headers
        for thread in threads:
            thread.join(timeout=30)
        assert results == [200, 200]
        assert len(upstream.control.log()) == 2  # neither primary nor secondary was tried
        # No breaker moved (one failure would have opened primary's), and it still answers.
        answered = http.post("/v1/messages", json=BODY)
        assert answered.headers["x-anyllm-backend"] == "primary"
        metrics = http.get("/metrics").text
    assert _metric(metrics, "anyllm_local_rejections_total", reason="pool") == 1
    assert _metric(metrics, "anyllm_pool_wait_seconds_count", backend="primary") == 1
    assert _metric(metrics, "anyllm_upstream_attempts_total", result="ok") == 3
    assert "anyllm_fallbacks_total{" not in metrics


def test_waiting_for_a_pool_slot_is_not_time_to_first_token(
    upstream: Any, sidecar_factory: Callable[..., Any]
) -> None:
    # One slot; the first stream holds it ~2 s; the second waits for it longer than its
    # ttft_timeout (1 s) and is still answered by the primary: its timer starts with the slot.
    config = sidecar_config(upstream.base_url, ttft_timeout=1, pool_timeout=20)
    config["backends"]["primary"]["max_connections"] = 1
    sidecar = sidecar_factory(config)
    upstream.control.script({"chunk_delay": 0.25, "text": "a b c d e f g h"})
    stream = {**BODY, "stream": True}
    backends: list[str] = []

    def run() -> None:
        with httpx.Client(base_url=sidecar.http_url, timeout=30) as http:
            response = http.post("/v1/messages", json=stream)
            assert response.status_code == 200
            assert response.text.rstrip().endswith('data: {"type":"message_stop"}')
            backends.append(response.headers["x-anyllm-backend"])

    first = threading.Thread(target=run)
    first.start()
    upstream.control.wait_for(lambda log: len(log) == 1)
    second = threading.Thread(target=run)
    second.start()
    first.join(timeout=30)
    second.join(timeout=30)
    assert backends == ["primary", "primary"]
    assert len(upstream.control.log()) == 2  # no fallback to the secondary
