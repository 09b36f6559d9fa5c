"""Traffic at scale through both surfaces, against the real sidecar and the scripted upstream:
a group spreads load by weight, a slow-first-token primary is hedged by the next target (and
its connection closed), and a target that announces its rate limit is exhausted is skipped until
its reset.

Each chain has its own upstream model names, so the targets (``backend/model``) of one test do
not share breakers or rate-limit state with another's, and the upstream log tells them apart.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable, Iterator
from typing import Any

import anthropic
import grpc
import httpx
import pytest

from sidecar.grpc_api.gen.anyllm.sidecar.v1 import messages_pb2 as pb
from sidecar.grpc_api.gen.anyllm.sidecar.v1 import messages_service_pb2 as spb
from sidecar.grpc_api.gen.anyllm.sidecar.v1 import messages_service_pb2_grpc as spb_grpc
from tests.integration.helpers import sidecar_config

pytestmark = pytest.mark.integration

SURFACES = ["http", "grpc"]


@pytest.fixture(scope="module")
def sidecar(module_upstream: Any, module_sidecar_factory: Callable[..., Any]) -> Any:
    config = sidecar_config(module_upstream.base_url, breaker={"failures": 1000, "cooldown": 1})
    config["chains"].update(
        {
            "weighted-http": [
                {
                    "group": [
                        {"backend": "primary", "model": "wh-a"},
                        {"backend": "secondary", "model": "wh-b", "weight": 2},
                    ]
                }
            ],
            "weighted-grpc": [
                {
                    "group": [
                        {"backend": "primary", "model": "wg-a"},
                        {"backend": "secondary", "model": "wg-b", "weight": 2},
                    ]
                }
            ],
            **{
                f"hedged-{n}": {
                    "targets": [
                        {"backend": "primary", "model": f"h{n}-a"},
                        {"backend": "secondary", "model": f"h{n}-b"},
                    ],
                    "policy": {"hedge_after": 0.3, "hedge_budget": 1.0},
                }
                for n in range(8)
            },
            **{
                f"limited-{surface}": [
                    {"backend": "primary", "model": f"l{surface}-a"},
                    {"backend": "secondary", "model": f"l{surface}-b"},
                ]
                for surface in SURFACES
            },
        }
    )
    return module_sidecar_factory(config)


@pytest.fixture(scope="module")
def client(sidecar: Any) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=sidecar.http_url, api_key="k", max_retries=0) as c:
        yield c


@pytest.fixture(scope="module")
def stub(sidecar: Any) -> Iterator[spb_grpc.MessagesServiceStub]:
    with grpc.insecure_channel(sidecar.grpc_target) as channel:
        yield spb_grpc.MessagesServiceStub(channel)


def ask(
    surface: str,
    client: anthropic.Anthropic,
    stub: spb_grpc.MessagesServiceStub,
    chain: str,
    stream: bool = False,
) -> tuple[str, dict[str, str]]:
    """(the answer's text, the outcome's headers / metadata) through one surface."""
    if surface == "http":
        body: dict[str, Any] = {
            "model": "m",
            "max_tokens": 20,
            "messages": [{"role": "user", "content": "go"}],
            "extra_headers": {"x-anyllm-chain": chain},
        }
        if not stream:
            raw = client.messages.with_raw_response.create(**body)
            return raw.parse().content[0].text, dict(raw.headers)  # type: ignore[union-attr]
        with client.messages.stream(**body) as events:
            text = events.get_final_text()
            return text, dict(events.response.headers)
    content = [pb.ContentBlock(text=pb.TextBlock(text="go"))]
    request = spb.CreateMessageRequest(
        model="m", max_tokens=20, messages=[pb.InputMessage(role=pb.ROLE_USER, content=content)]
    )
    metadata = [("x-anyllm-chain", chain)]
    if not stream:
        message, call = stub.CreateMessage.with_call(request, metadata=metadata, timeout=30)
        seen = dict(call.trailing_metadata())
        # the hedge is told in the initial metadata, as on streams: read it from there only
        seen.pop("x-anyllm-hedged", None)
        hedged = dict(call.initial_metadata()).get("x-anyllm-hedged")
        if hedged is not None:
            seen["x-anyllm-hedged"] = hedged
        return message.content[0].text.text, {k: str(v) for k, v in seen.items()}
    responses = stub.StreamMessage(request, metadata=metadata, timeout=30)
    text = "".join(
        e.content_block_delta.text_delta
        for e in responses
        if e.WhichOneof("event") == "content_block_delta"
    )
    return text, {k: str(v) for k, v in dict(responses.initial_metadata()).items()}


@pytest.mark.parametrize("surface", SURFACES)
def test_a_group_spreads_load_by_weight(
    surface: str, client: Any, stub: Any, upstream: Any
) -> None:
    n = 60
    for i in range(n):
        ask(surface, client, stub, f"weighted-{surface}", stream=i % 2 == 1)
    models = collections.Counter(body["model"] for body in upstream.control.bodies())
    prefix = "wh" if surface == "http" else "wg"
    # Smooth weighted round robin is exact over whole rounds; a tolerance all the same.
    assert abs(models[f"{prefix}-a"] - n / 3) <= 2, models
    assert abs(models[f"{prefix}-b"] - 2 * n / 3) <= 2, models
    assert sum(models.values()) == n


HEDGE_CASES = [
    pytest.param(surface, stream, fault, id=f"{surface}-{'stream' if stream else 'unary'}-{name}")
    for surface in SURFACES
    for stream in (False, True)
    for name, fault in [("slow-headers", {"delay": 20})]
    + ([("role-then-stall", {"role_only_then_stall": True})] if stream else [])
]


@pytest.mark.parametrize(("surface", "stream", "fault"), HEDGE_CASES)
def test_a_slow_first_token_is_hedged_and_the_loser_disconnected(
    surface: str, stream: bool, fault: dict[str, Any], client: Any, stub: Any, upstream: Any
) -> None:
    index = HEDGE_CASES_IDS.index((surface, stream, str(fault)))
    chain = f"hedged-{index}"
    upstream.control.script(fault)  # the first request (the primary's) is slow
    text, seen = ask(surface, client, stub, chain, stream=stream)
    assert text.startswith("echo: go")
    assert seen["x-anyllm-backend"] == "secondary"
    assert seen["x-anyllm-hedged"] == "true"
    log = upstream.control.wait_for(
        lambda entries: any(
            e["body"]["model"] == f"h{index}-a" and e["outcome"] == "disconnected" for e in entries
        ),
        timeout=10,
    )
    assert [e["body"]["model"] for e in log] == [f"h{index}-a", f"h{index}-b"]


HEDGE_CASES_IDS = [(c.values[0], c.values[1], str(c.values[2])) for c in HEDGE_CASES]


def test_an_answer_in_time_is_not_hedged(client: Any, stub: Any, upstream: Any) -> None:
    _, seen = ask("http", client, stub, "hedged-7")
    assert seen["x-anyllm-backend"] == "primary" and "x-anyllm-hedged" not in seen
    assert len(upstream.control.log()) == 1


@pytest.mark.parametrize("surface", SURFACES)
def test_a_target_announcing_no_requests_left_is_skipped_until_its_reset(
    surface: str, client: Any, stub: Any, upstream: Any
) -> None:
    chain = f"limited-{surface}"
    reset = 3.0
    upstream.control.script(
        {
            "headers": {
                "x-ratelimit-remaining-requests": "0",
                "x-ratelimit-reset-requests": f"{reset:g}s",
            }
        }
    )
    sent = time.monotonic()
    _, first = ask(surface, client, stub, chain)
    assert first["x-anyllm-backend"] == "primary"  # the answer is fine; it says "no more"
    _, second = ask(surface, client, stub, chain)
    if time.monotonic() < sent + reset:  # answered within the window: it must have skipped
        assert second["x-anyllm-backend"] == "secondary"
    answered = second["x-anyllm-backend"]
    deadline = time.monotonic() + 20
    while answered != "primary":  # eligible again once the window reset
        assert time.monotonic() < deadline, "the target never came back"
        time.sleep(0.2)
        _, seen = ask(surface, client, stub, chain)
        answered = seen["x-anyllm-backend"]
    assert time.monotonic() >= sent + reset - 0.001  # not before its reset
    models = [body["model"] for body in upstream.control.bodies()]
    assert models[0] == f"l{surface}-a" and models[-1] == f"l{surface}-a"
    assert set(models[1:-1]) <= {f"l{surface}-b"}


def metric(text: str, name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        head, _, value = line.rpartition(" ")
        if all(f'{k}="{v}"' in head for k, v in labels.items()):
            total += float(value)
    return total


def test_metrics_show_hedges_skips_ttft_tokens_and_in_flight(
    sidecar: Any, client: Any, stub: Any, upstream: Any
) -> None:
    upstream.control.script({"delay": 20})
    ask("http", client, stub, "hedged-6", stream=True)  # hedged: the hedge wins
    upstream.control.script({"headers": {"x-ratelimit-remaining-requests": "0"}})
    ask("http", client, stub, "default")
    ask("http", client, stub, "default")  # skips primary/gpt-primary for 1 s
    text = httpx.get(f"{sidecar.http_url}/metrics", timeout=10).text
    assert metric(text, "anyllm_hedges_total", chain="hedged-6", outcome="won") == 1
    assert (
        metric(text, "anyllm_upstream_attempts_total", target="primary/h6-a", result="hedge_lost")
        == 1
    )
    assert (
        metric(text, "anyllm_skipped_total", target="primary/gpt-primary", reason="rate_limited")
        >= 1
    )
    assert metric(text, "anyllm_upstream_ttft_seconds_count", target="secondary/h6-b") == 1
    assert metric(text, "anyllm_tokens_total", direction="output") > 0
    assert "anyllm_upstream_in_flight{" in text
    assert metric(text, "anyllm_upstream_in_flight") == 0  # nothing left in flight
    assert (
        metric(text, "anyllm_state_shared") == 0 and metric(text, "anyllm_state_errors_total") == 0
    )
