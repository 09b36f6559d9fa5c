"""Metrics, logs and secrets, observed from outside the real process: a Prometheus scrape parsed
with the Prometheus text parser, log lines parsed as JSON, and the configured keys searched for
everywhere a caller or an operator can look."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import anthropic
import grpc
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from sidecar.grpc_api.gen.anyllm.sidecar.v1 import messages_pb2 as pb
from sidecar.grpc_api.gen.anyllm.sidecar.v1 import messages_service_pb2 as spb
from sidecar.grpc_api.gen.anyllm.sidecar.v1 import messages_service_pb2_grpc as spb_grpc
from tests.integration.helpers import (
    CALLER_KEY,
    NATIVE_KEY,
    PRIMARY_KEY,
    SECONDARY_KEY,
    sidecar_config,
)

pytestmark = pytest.mark.integration


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(f"{url}/metrics").text
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` whose labels include ``labels``."""
    return sum(
        v
        for (n, ls), v in samples.items()
        if n == name and all(dict(ls).get(k) == want for k, want in labels.items())
    )


def test_metrics_logs_and_no_secrets(upstream: Any, sidecar_factory: Callable[..., Any]) -> None:
    sidecar = sidecar_factory(sidecar_config(upstream.base_url))
    before = scrape(sidecar.http_url)
    assert value(before, "anyllm_requests_total") == 0

    client = anthropic.Anthropic(base_url=sidecar.http_url, api_key=CALLER_KEY, max_retries=0)
    user = [{"role": "user", "content": "hello"}]
    client.messages.create(model="m", max_tokens=20, messages=user)  # ok
    upstream.control.script({"status": 500})
    client.messages.create(  # a fallback, with the caller's request id
        model="m", max_tokens=20, messages=user, extra_headers={"x-request-id": "trace-me-1"}
    )
    upstream.control.script(
        {"status": 400, "body": {"error": {"message": f"bad key {PRIMARY_KEY}"}}}
    )
    with pytest.raises(anthropic.BadRequestError) as bad:
        client.messages.create(model="m", max_tokens=20, messages=user)
    with client.messages.stream(model="m", max_tokens=20, messages=user) as stream:
        stream.get_final_message()
    with grpc.insecure_channel(sidecar.grpc_target) as channel:
        stub = spb_grpc.MessagesServiceStub(channel)
        content = [pb.ContentBlock(text=pb.TextBlock(text="hi"))]
        stub.CreateMessage(
            spb.CreateMessageRequest(
                model="m",
                max_tokens=5,
                messages=[pb.InputMessage(role=pb.ROLE_USER, content=content)],
            ),
            metadata=[("authorization", f"Bearer {CALLER_KEY}")],
        )
    client.close()

    after = scrape(sidecar.http_url)
    assert value(after, "anyllm_requests_total", surface="http", kind="create", result="ok") == 2
    assert (
        value(after, "anyllm_requests_total", surface="http", result="invalid_request_error") == 1
    )
    assert value(after, "anyllm_requests_total", surface="http", kind="stream", result="ok") == 1
    assert value(after, "anyllm_requests_total", surface="grpc", kind="create", result="ok") == 1
    assert value(after, "anyllm_requests_total", route="default", chain="default") == 5
    assert (
        value(after, "anyllm_fallbacks_total", target="primary/gpt-primary", reason="http_500") == 1
    )
    assert value(after, "anyllm_upstream_attempts_total", target="secondary/gpt-secondary") == 1
    assert value(after, "anyllm_tokens_total", direction="output") > 0
    assert value(after, "anyllm_in_flight_requests") == 0
    assert value(after, "anyllm_request_duration_seconds_count") == 5
    assert value(after, "anyllm_time_to_first_token_seconds_count") == 1
    assert ("anyllm_breaker_state", (("target", "primary/gpt-primary"),)) in after

    # One JSON log line per request, with the fields an operator searches by.
    lines = [json.loads(line) for line in sidecar.log_lines() if line.startswith("{")]
    requests = [line for line in lines if line["event"] == "request"]
    assert len(requests) == 5
    fallback = next(line for line in requests if line["request_id"] == "trace-me-1")
    assert fallback["surface"] == "http" and fallback["chain"] == "default"
    assert fallback["backend"] == "secondary" and fallback["result"] == "ok"
    assert [(a["target"], a["result"], a["status"]) for a in fallback["attempts"]] == [
        ("primary/gpt-primary", "status", 500),
        ("secondary/gpt-secondary", "ok", None),
    ]
    assert all(a["duration_ms"] >= 0 for a in fallback["attempts"])
    assert fallback["output_tokens"] > 0
    # The caller's request id was forwarded upstream.
    assert any(e["headers"].get("x-request-id") == "trace-me-1" for e in upstream.control.log())

    # No key anywhere: logs, metrics, error bodies (the upstream echoed one in its error).
    everywhere = "\n".join(
        [
            *sidecar.log_lines(),
            httpx.get(f"{sidecar.http_url}/metrics").text,
            bad.value.response.text,
        ]
    )
    for secret in (PRIMARY_KEY, SECONDARY_KEY, NATIVE_KEY, CALLER_KEY):
        assert secret not in everywhere
