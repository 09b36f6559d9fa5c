"""Process lifecycle: the zero-config demo mode, and SIGTERM draining in-flight work on both
surfaces before exiting 0."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import anthropic
import grpc
import httpx
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from sidecar.grpc_api.gen.anyllm.sidecar.v1 import messages_pb2 as pb
from sidecar.grpc_api.gen.anyllm.sidecar.v1 import messages_service_pb2 as spb
from sidecar.grpc_api.gen.anyllm.sidecar.v1 import messages_service_pb2_grpc as spb_grpc
from tests.integration.helpers import WEATHER_TOOL, sidecar_config

pytestmark = pytest.mark.integration


def test_zero_config_serves_the_demo_backend(sidecar_factory: Callable[..., Any]) -> None:
    sidecar = sidecar_factory(None)  # no --config, no OPENAI_*/ANTHROPIC_* variables
    lines = "\n".join(sidecar.log_lines())
    assert '"event":"demo_mode"' in lines and "no real upstream is configured" in lines
    with anthropic.Anthropic(base_url=sidecar.http_url, api_key="x", max_retries=0) as client:
        message = client.messages.create(
            model="claude-x", max_tokens=100, messages=[{"role": "user", "content": "ping"}]
        )
        assert "You said: ping" in message.content[0].text  # type: ignore[union-attr]
        with client.messages.stream(
            model="claude-x", max_tokens=100, messages=[{"role": "user", "content": "pong"}]
        ) as stream:
            assert "You said: pong" in "".join(stream.text_stream)
        tool_call = client.messages.create(
            model="claude-x",
            max_tokens=100,
            tools=[WEATHER_TOOL],  # type: ignore[list-item]
            messages=[{"role": "user", "content": "weather?"}],
        )
        assert tool_call.stop_reason == "tool_use"
        assert tool_call.content[0].input == {"city": "demo"}  # type: ignore[union-attr]


def test_sigterm_drains_in_flight_streams_and_exits_zero(
    upstream: Any, sidecar_factory: Callable[..., Any]
) -> None:
    sidecar = sidecar_factory(sidecar_config(upstream.base_url))
    slow = {"chunk_delay": 0.15, "text": "one two three four five six seven eight nine ten"}
    upstream.control.script(slow, slow)
    results: dict[str, Any] = {}
    started = threading.Barrier(3)

    def http_stream() -> None:
        client = anthropic.Anthropic(base_url=sidecar.http_url, api_key="x", max_retries=0)
        with (
            client,
            client.messages.stream(
                model="x", max_tokens=100, messages=[{"role": "user", "content": "hi"}]
            ) as stream,
        ):
            pieces = iter(stream.text_stream)
            first = next(pieces)
            started.wait(timeout=10)
            results["http"] = first + "".join(pieces)

    def grpc_stream() -> None:
        with grpc.insecure_channel(sidecar.grpc_target) as channel:
            stub = spb_grpc.MessagesServiceStub(channel)
            request = spb.CreateMessageRequest(
                model="x",
                max_tokens=100,
                messages=[
                    pb.InputMessage(
                        role=pb.ROLE_USER, content=[pb.ContentBlock(text=pb.TextBlock(text="hi"))]
                    )
                ],
            )
            responses = stub.StreamMessage(request)
            kinds = [next(responses).WhichOneof("event")]
            while kinds[-1] != "content_block_delta":
                kinds.append(next(responses).WhichOneof("event"))
            started.wait(timeout=10)
            kinds.extend(e.WhichOneof("event") for e in responses)
            results["grpc"] = kinds

    threads = [threading.Thread(target=http_stream), threading.Thread(target=grpc_stream)]
    for thread in threads:
        thread.start()
    started.wait(timeout=10)  # both streams have content on the wire
    sidecar.signal(signal.SIGTERM)
    # Draining: not ready on both surfaces, new work refused with a retryable error...
    with httpx.Client(base_url=sidecar.http_url) as http:
        _until(lambda: http.get("/readyz").status_code == 503)
        refused = http.post(
            "/v1/messages",
            json={"model": "x", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]},
        )
        assert refused.status_code == 529
        assert refused.headers["retry-after"] == "1"
    with grpc.insecure_channel(sidecar.grpc_target) as channel:
        status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest()).status
        assert status == health_pb2.HealthCheckResponse.NOT_SERVING
    # ...while the streams in flight finish.
    for thread in threads:
        thread.join(timeout=20)
    assert results["http"] == "one two three four five six seven eight nine ten"
    assert results["grpc"][-1] == "message_stop"
    assert sidecar.wait(timeout=20) == 0
    with pytest.raises(httpx.ConnectError):  # nothing listens any more
        httpx.get(f"{sidecar.http_url}/healthz")
    lines = "\n".join(sidecar.log_lines())
    assert '"event":"draining"' in lines and '"event":"stopped"' in lines


def _until(predicate: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_grace_end_ends_streams_explicitly(
    upstream: Any, sidecar_factory: Callable[..., Any]
) -> None:
    config = sidecar_config(upstream.base_url, idle_timeout=60)
    config["server"]["grace"] = 1
    sidecar = sidecar_factory(config)
    upstream.control.script({"stall_after": 3, "chunk_delay": 0.05, "text": "a b c d e f"})
    with (
        anthropic.Anthropic(base_url=sidecar.http_url, api_key="x", max_retries=0) as client,
        client.messages.stream(
            model="x", max_tokens=50, messages=[{"role": "user", "content": "hi"}]
        ) as stream,
    ):
        pieces = iter(stream.text_stream)
        next(pieces)
        sidecar.signal(signal.SIGTERM)  # the stream stalls: the grace (1 s) runs out
        with pytest.raises(anthropic.APIStatusError) as info:
            list(pieces)
    assert "shut down" in str(info.value)  # an explicit error event, not a silent end
    assert sidecar.wait(timeout=20) == 0
    upstream.control.wait_for(lambda log: log and log[0]["disconnected"])


def _wait_for_log(
    sidecar: Any, event: str, count: int = 1, timeout: float = 10
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        found = [
            line
            for line in (json.loads(x) for x in sidecar.log_lines() if x.startswith("{"))
            if line["event"] == event
        ]
        if len(found) >= count:
            return found
        assert time.monotonic() < deadline, f"no {event!r} log line"
        time.sleep(0.05)


def test_sighup_reloads_a_valid_config_and_keeps_the_old_on_a_bad_one(
    upstream: Any, sidecar_factory: Callable[..., Any]
) -> None:
    config = sidecar_config(upstream.base_url)
    sidecar = sidecar_factory(config)
    slow = {"chunk_delay": 0.1, "text": "a b c d e f g h"}
    upstream.control.script(slow)
    client = anthropic.Anthropic(base_url=sidecar.http_url, api_key="x", max_retries=0)
    user = [{"role": "user", "content": "hi"}]
    with client.messages.stream(model="m", max_tokens=50, messages=user) as stream:
        pieces = iter(stream.text_stream)
        first = next(pieces)  # in flight on the old configuration...

        config["chains"]["fresh"] = [{"backend": "secondary", "model": "gpt-fresh"}]
        sidecar.config_path.write_text(yaml.safe_dump(config))
        sidecar.signal(signal.SIGHUP)
        _wait_for_log(sidecar, "reloaded")
        fresh = client.messages.with_raw_response.create(
            model="m", max_tokens=5, messages=user, extra_headers={"x-anyllm-chain": "fresh"}
        )
        assert fresh.headers["x-anyllm-backend"] == "secondary"
        assert upstream.control.log()[-1]["body"]["model"] == "gpt-fresh"

        assert first + "".join(pieces) == "a b c d e f g h"  # ...and it finished on it

    sidecar.config_path.write_text("backends: {broken: {kind: nope}}\n")
    sidecar.signal(signal.SIGHUP)
    (rejected,) = _wait_for_log(sidecar, "reload_rejected")
    assert "backends.broken.kind" in rejected["reason"]
    still = client.messages.with_raw_response.create(
        model="m", max_tokens=5, messages=user, extra_headers={"x-anyllm-chain": "fresh"}
    )
    assert still.headers["x-anyllm-backend"] == "secondary"  # the last good config stays
    client.close()
    assert sidecar.stop() == 0
