"""The streaming guarantee under arbitrary upstream behaviour and under load: every stream a
caller receives either completes (``message_stop``) or ends with an explicit error — never
silently cut — and nothing leaks afterwards."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.integration.helpers import sidecar_config

pytestmark = pytest.mark.integration

BEHAVIOURS = [
    {},
    {"status": 500},
    {"status": 429},
    {"status": 400},
    {"reset": True},
    {"stream_cut_after": 1},
    {"stream_cut_after": 3, "chunk_delay": 0.02},
    {"stall_after": 3, "chunk_delay": 0.02},
    {"role_only_then_stall": True},
    {"inband_error": {}, "inband_error_after": 1},
    {"inband_error": {}, "inband_error_after": 3, "chunk_delay": 0.02},
    {"malformed": True},
    {"no_done": True},
    {"no_finish": True},
    {"tool_calls": [{"id": "c1", "name": "f", "arguments": {"a": 1}}]},
    {"delay": 0.3},
]


@pytest.fixture(scope="module")
def sidecar(module_upstream: Any, module_sidecar_factory: Callable[..., Any]) -> Any:
    config = sidecar_config(
        module_upstream.base_url,
        ttft_timeout=0.5,
        idle_timeout=0.5,
        attempt_timeout=2,
        breaker={"failures": 1000, "cooldown": 1},
    )
    return module_sidecar_factory(config)


def sse_outcome(response: httpx.Response) -> str:
    """'complete', 'error' (an error event or an error status), or 'cut' (neither)."""
    if response.status_code != 200:
        assert response.json()["type"] == "error"
        return "error"
    events = [line[7:] for line in response.text.splitlines() if line.startswith("event: ")]
    if events and events[-1] == "message_stop":
        assert events[0] == "message_start"
        return "complete"
    if events and events[-1] == "error":
        return "error"
    return "cut"


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(script=st.lists(st.sampled_from(BEHAVIOURS), min_size=1, max_size=2))
def test_any_upstream_behaviour_never_cuts_a_stream_silently(
    sidecar: Any, module_upstream: Any, script: list[dict[str, Any]]
) -> None:
    module_upstream.control.reset()
    module_upstream.control.script(*script)
    body = {
        "model": "m",
        "max_tokens": 50,
        "stream": True,
        "messages": [{"role": "user", "content": "a b c"}],
    }
    with httpx.Client(base_url=sidecar.http_url, timeout=30) as http:
        response = http.post("/v1/messages", json=body)
    assert sse_outcome(response) in {"complete", "error"}, response.text


async def _stream_once(port: int, body: bytes) -> str:
    """One streamed request over a raw connection (cheap enough for hundreds at once)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(
            b"POST /v1/messages HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
            b"connection: close\r\ncontent-length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )
        raw = await reader.read(-1)
    finally:
        writer.close()
    head, _, payload = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    if status != 200:
        return "error"
    events = [line[7:] for line in payload.decode().splitlines() if line.startswith("event: ")]
    if events and events[-1] == "message_stop":
        return "complete"
    return "error" if events and events[-1] == "error" else "cut"


def test_200_concurrent_streams_with_a_flaky_primary(
    start_upstream: Callable[..., Any], upstream: Any, sidecar_factory: Callable[..., Any]
) -> None:
    flaky = start_upstream()
    # The breaker stays out of it here (it could open on a run of failures and skip the primary).
    config = sidecar_config(
        upstream.base_url, ttft_timeout=5, idle_timeout=5, breaker={"failures": 1000, "cooldown": 1}
    )
    config["backends"]["primary"]["base_url"] = f"{flaky.base_url}/v1"
    sidecar = sidecar_factory(config)
    with httpx.Client(base_url=sidecar.http_url) as http:
        idle = http.get("/debug/tasks").json()
    n = 200
    # Every other request to the primary fails, in assorted ways.
    failures = [{"status": 500}, {"reset": True}, {"stream_cut_after": 1}, {"status": 503}]
    flaky.control.script(*[failures[i % 4] if i % 2 == 0 else {} for i in range(n)])
    body = json.dumps(
        {
            "model": "m",
            "max_tokens": 20,
            "stream": True,
            "messages": [{"role": "user", "content": "x"}],
        }
    ).encode()

    async def run_all() -> list[str]:
        async with asyncio.timeout(60):
            return await asyncio.gather(*(_stream_once(sidecar.http_port, body) for _ in range(n)))

    outcomes = asyncio.run(run_all())
    assert outcomes.count("cut") == 0
    assert outcomes.count("complete") == n  # the secondary catches every failure
    primary_log, secondary_log = flaky.control.log(), upstream.control.log()
    # Each failure reached the secondary once; a reset met on a reused connection was first
    # sent again to the primary (and reset again: the fake's resets belong to the request).
    assert len(primary_log) >= n
    assert len(secondary_log) == n // 2
    # Nothing left hanging on either upstream, nor inside the sidecar.
    assert all(e["outcome"] != "pending" for e in primary_log + secondary_log)
    deadline = time.monotonic() + 10
    with httpx.Client(base_url=sidecar.http_url) as http:
        while (after := http.get("/debug/tasks").json())["tasks"] > idle["tasks"]:
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
    assert after["names"] == idle["names"], "tasks left behind by the load"
