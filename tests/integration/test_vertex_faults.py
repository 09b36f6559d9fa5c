"""The fault matrix of tests/integration/test_faults.py, run against kind: vertex: a chain of
two Vertex backends (``vertex`` → ``vertex-eu``) on the fake Vertex AI, with real google-auth
tokens, through both surfaces, streamed and not.

The rows are test_faults' own tables, less what does not apply to a relayed Anthropic stream
(a stream without ``message_delta`` that ends with ``message_stop`` is a valid answer to relay,
not a failure) and with Vertex's own 401 rule (refresh, send again, then move on).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest

from sidecar.grpc_api.gen.anyllm.sidecar.v1 import messages_service_pb2_grpc as spb_grpc
from tests.integration.test_faults import (
    AFTER_COMMIT,
    MOVE_ON,
    STOP,
    STREAM_ONLY_MOVE_ON,
    SURFACES,
    _params,
    call,
)
from tests.upstream.vertex_client import PROJECT, VertexFake, google_env

pytestmark = pytest.mark.integration

STREAM_MOVE_ON = {k: v for k, v in STREAM_ONLY_MOVE_ON.items() if k != "empty-then-done"}
STREAM_AFTER_COMMIT = {k: v for k, v in AFTER_COMMIT.items() if k != "no-finish"}
STOP_CODES = [code for code in STOP if code != 401]


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VertexFake]:
    up = VertexFake(tmp_path_factory.mktemp("vertex-faults"))
    yield up
    up.close()


@pytest.fixture(scope="module")
def sidecar(fake: VertexFake, module_sidecar_factory: Callable[..., Any]) -> Any:
    def vertex(region: str) -> dict[str, Any]:
        return {
            "kind": "vertex",
            "project": PROJECT,
            "region": region,
            "base_url": fake.base_url,
            "credentials_file": str(fake.credentials_file),
        }

    config = {
        "server": {"http": "127.0.0.1:0", "grpc": "127.0.0.1:0", "grace": 5},
        "policy": {
            "ttft_timeout": 1.0,
            "idle_timeout": 1.0,
            "attempt_timeout": 1.5,
            "timeout": 20,
            "breaker": {"failures": 1000, "cooldown": 1},
        },
        "backends": {"vertex": vertex("us-east5"), "vertex-eu": vertex("europe-west1")},
        "chains": {"default": [{"backend": "vertex"}, {"backend": "vertex-eu"}]},
    }
    return module_sidecar_factory(config, env=google_env())


@pytest.fixture
def vertex(fake: VertexFake, sidecar: Any) -> VertexFake:
    fake.reset()
    return fake


@pytest.fixture(scope="module")
def stub(sidecar: Any) -> Iterator[spb_grpc.MessagesServiceStub]:
    with grpc.insecure_channel(sidecar.grpc_target) as channel:
        yield spb_grpc.MessagesServiceStub(channel)


@pytest.mark.parametrize(
    ("surface", "stream", "fault"),
    _params(MOVE_ON, [False, True]) + _params(STREAM_MOVE_ON, [True]),
)
def test_fault_before_content_falls_back(
    sidecar: Any, stub: Any, vertex: VertexFake, surface: str, stream: bool, fault: dict[str, Any]
) -> None:
    vertex.script(fault)
    seen = call(surface, sidecar, stub, stream)
    assert seen.ok, seen
    assert seen.backend == "vertex-eu"
    assert seen.text == "echo: go"
    if stream:
        assert seen.kinds[0] == "message_start" and seen.kinds[-1] == "message_stop"
        assert seen.kinds.count("message_start") == 1  # the failed attempt's was held back
    # The sidecar may have the second answer before the upstream has seen the first
    # connection close: wait for both, not only for the second request. A reset that met a
    # reused connection is sent once more on a fresh one first (not an attempt): three then.
    log = vertex.wait_for(
        lambda entries: (
            len(entries) >= 2
            and "/europe-west1/" in entries[-1]["path"]
            and entries[0]["outcome"] != "pending"
        )
    )
    assert len(log) == 2 or (fault.get("reset") and len(log) == 3), log
    assert all("/us-east5/" in e["path"] for e in log[:-1])
    assert log[0]["outcome"] != "pending"
    if fault.get("hang") or fault.get("delay") or fault.get("role_only_then_stall"):
        assert log[0]["disconnected"], "the sidecar did not cancel the request it gave up on"


@pytest.mark.parametrize("code", STOP_CODES)
@pytest.mark.parametrize("surface", SURFACES)
@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_status_that_stops_the_chain(
    sidecar: Any, stub: Any, vertex: VertexFake, surface: str, stream: bool, code: int
) -> None:
    vertex.script({"status": code})
    seen = call(surface, sidecar, stub, stream)
    error_type, http_status, grpc_code = STOP[code]
    assert not seen.ok
    if surface == "http":
        assert (seen.error_type, seen.status) == (error_type, http_status)
    else:
        assert seen.status == grpc_code
    assert len(vertex.model_requests()) == 1


@pytest.mark.parametrize("surface", SURFACES)
@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_a_401_after_a_refresh_moves_on(
    sidecar: Any, stub: Any, vertex: VertexFake, surface: str, stream: bool
) -> None:
    vertex.script({"status": 401, "times": 2})
    tokens_before = len(vertex.token_requests())
    seen = call(surface, sidecar, stub, stream)
    assert seen.ok and seen.backend == "vertex-eu", seen
    first, again, other = vertex.model_requests()
    assert (first["status"], again["status"], other["status"]) == (401, 401, 200)
    assert "/us-east5/" in again["path"] and again["token"] != first["token"]  # refreshed
    assert len(vertex.token_requests()) == tokens_before + 1


@pytest.mark.parametrize(("surface", "stream", "fault"), _params(STREAM_AFTER_COMMIT, [True]))
def test_fault_after_content_ends_the_stream_explicitly(
    sidecar: Any, stub: Any, vertex: VertexFake, surface: str, stream: bool, fault: dict[str, Any]
) -> None:
    vertex.script(fault)
    seen = call(surface, sidecar, stub, stream)
    assert not seen.ok, seen
    assert "message_stop" not in seen.kinds
    if surface == "http":
        assert "content_block_delta" in seen.kinds
        assert seen.kinds[-1] == "error"
        assert seen.error_type in {"api_error", "timeout_error", "overloaded_error"}
    else:
        assert seen.status not in (None, "OK")
    assert len(vertex.model_requests()) == 1  # nothing retried after the commit point
