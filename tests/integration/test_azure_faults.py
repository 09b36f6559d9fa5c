"""The fault matrix of ``test_faults.py``, run against Azure OpenAI backends.

The same test functions (imported, so every row there is a row here) with this module's
``sidecar`` / ``stub`` / ``upstream`` fixtures: ``primary`` is an Azure deployment
(deployments API, ``api-key``) and ``secondary`` the v1 API of the same fake Azure resource
(``tests.upstream.azure_server``, whose streams begin with the ``prompt_filter_results`` chunk).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from sidecar.grpc_api.gen.anyllm.sidecar.v1 import messages_service_pb2_grpc as spb_grpc
from tests.integration import test_faults
from tests.upstream.azure_fakes import API_KEY, AzureFakes
from tests.upstream.processes import UpstreamProcess

pytestmark = pytest.mark.integration

test_fault_before_content_falls_back = test_faults.test_fault_before_content_falls_back
test_status_that_stops_the_chain = test_faults.test_status_that_stops_the_chain
test_fault_after_content_ends_the_stream_explicitly = (
    test_faults.test_fault_after_content_ends_the_stream_explicitly
)
test_exhausted_chain_is_marked = test_faults.test_exhausted_chain_is_marked
test_http_client_disconnect_cancels_the_upstream = (
    test_faults.test_http_client_disconnect_cancels_the_upstream
)
test_x_anyllm_timeout_is_the_budget = test_faults.test_x_anyllm_timeout_is_the_budget
test_breaker_state_is_visible = test_faults.test_breaker_state_is_visible
test_context_overflow_moves_to_the_long_context_chain = (
    test_faults.test_context_overflow_moves_to_the_long_context_chain
)


@pytest.fixture(scope="module")
def azure_fake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpstreamProcess]:
    fakes = AzureFakes(Path(tmp_path_factory.mktemp("azure-faults")))
    yield fakes.start("azure")
    fakes.close()


@pytest.fixture
def upstream(azure_fake: UpstreamProcess) -> UpstreamProcess:
    azure_fake.control.reset()
    return azure_fake


@pytest.fixture(scope="module")
def sidecar(azure_fake: UpstreamProcess, module_sidecar_factory: Callable[..., Any]) -> Any:
    azure = {"kind": "azure", "base_url": azure_fake.base_url, "api_key": "env:AZURE_KEY"}
    config = {
        "server": {"http": "127.0.0.1:0", "grpc": "127.0.0.1:0", "grace": 5},
        "policy": {
            "timeout": 20,
            "ttft_timeout": 1.0,
            "idle_timeout": 1.0,
            "attempt_timeout": 1.5,
            "breaker": {"failures": 1000, "cooldown": 1},
        },
        "backends": {"primary": {**azure, "api_version": "2024-10-21"}, "secondary": azure},
        "chains": {
            "default": {
                "targets": [
                    {"backend": "primary", "model": "gpt-primary"},
                    {"backend": "secondary", "model": "gpt-secondary"},
                ],
                "policy": {"on_context_overflow": "long"},
            },
            "long": [{"backend": "secondary", "model": "gpt-long-context"}],
        },
    }
    return module_sidecar_factory(config, env={"AZURE_KEY": API_KEY})


@pytest.fixture(scope="module")
def stub(sidecar: Any) -> Iterator[spb_grpc.MessagesServiceStub]:
    with grpc.insecure_channel(sidecar.grpc_target) as channel:
        yield spb_grpc.MessagesServiceStub(channel)


def test_the_matrix_ran_on_azure_paths(sidecar: Any, upstream: UpstreamProcess) -> None:
    """Not a fault: the two targets really are the two Azure URL styles."""
    body = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}
    upstream.control.script({"status": 503})
    with httpx.Client(base_url=sidecar.http_url, timeout=30) as http:
        assert http.post("/v1/messages", json=body).status_code == 200
    paths = [(e["path"], e["query"], e["auth"]) for e in upstream.control.log()]
    assert paths == [
        ("/openai/deployments/gpt-primary/chat/completions", "api-version=2024-10-21", "api-key"),
        ("/openai/v1/chat/completions", "", "api-key"),
    ]
