"""The engine's own cost per request for groups, the rate-limit predictor, hedging and shared
state, against the plain chain: in-process, no network, CPU time per request.

    .venv/bin/python bench/engine_overhead.py [--requests 20000] [--rounds 3]

Each variant sends ``--requests`` sequential ``create`` calls through one ``Engine`` whose
backends answer at once (reporting rate-limit headers as the HTTP layer does, in the variants
that read them), and reports the best round's process CPU time per request (``time.process_time``,
so other load on the machine matters less than it does for wall-clock numbers). What it leaves
out: HTTP, JSON, sockets — the sidecar's full cost per request is ``make bench``'s, about
0.5 ms; this measures the part these features add to it.

``shared`` runs the background rounds of ``engine/shared.py`` (every 0.1 s) against an
in-memory store, so it counts their CPU but not a Redis round trip (which happens off the
request path, in the background task).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from sidecar.backends.base import report_response_headers
from sidecar.engine.engine import Engine
from sidecar.engine.policy import Chain, Group, Policy, Routes, Step, Target
from sidecar.engine.shared import SharedState
from sidecar.model import Call, InputMessage, Message, MessagesRequest, TextBlock, Usage

HEADERS = {
    "x-ratelimit-remaining-requests": "4999",
    "x-ratelimit-remaining-tokens": "159000",
    "x-ratelimit-reset-requests": "12ms",
    "x-ratelimit-reset-tokens": "6m0s",
}


class Instant:
    kind = "bench"

    def __init__(self, name: str, headers: bool) -> None:
        self.name = name
        self._headers = headers
        self._message = Message(
            id="msg_1",
            model="m",
            content=[TextBlock(text="ok")],
            stop_reason="end_turn",
            usage=Usage(input_tokens=10, output_tokens=5),
        )

    async def create(self, call: Call, model: str, notes: list[str], **_: Any) -> Message:
        if self._headers:
            report_response_headers(HEADERS)
        return self._message

    async def aclose(self) -> None:
        return None


class Store:
    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    async def read(self, keys: list[str]) -> list[bytes | None]:
        return [self.data.get(k) for k in keys]

    async def write(self, sets: Any, deletes: Any, increments: Any) -> None:
        for key, value, _ in sets:
            self.data[key] = value.encode()

    async def claim(self, key: str, value: str, ttl_ms: int) -> bool:
        return True

    async def aclose(self) -> None:
        return None


def variants() -> dict[str, tuple[tuple[Step, ...], Policy, bool, bool]]:
    a, b = Target("a"), Target("b")
    limited = (Target("a", rpm=10**9, tpm=10**12), Target("b", rpm=10**9, tpm=10**12))
    return {
        "plain chain": ((a, b), Policy(), False, False),
        "weighted group": ((Group(group=(a, b)),), Policy(), False, False),
        "latency group": ((Group(group=(a, b), strategy="latency"),), Policy(), False, False),
        "rpm/tpm + headers read": (limited, Policy(), True, False),
        "hedge_after (not hit)": ((a, b), Policy(hedge_after=10.0), False, False),
        "all + shared state": (
            (Group(group=limited),),
            Policy(hedge_after=10.0),
            True,
            True,
        ),
    }


async def measure(
    steps: tuple[Step, ...], policy: Policy, headers: bool, shared: bool, n: int
) -> float:
    chain = Chain(name="default", targets=steps, policy=policy)
    engine = Engine(
        backends={"a": Instant("a", headers), "b": Instant("b", headers)},
        routes=Routes([], {"default": chain}),
    )
    task = None
    if shared:
        state = SharedState(
            Store(),
            prefix="b:",
            timeout=0.05,
            breakers=engine.breakers,
            limits=engine.limits,
            targets=chain.members,
        )
        task = asyncio.create_task(state.run())
    request = MessagesRequest(
        model="m", max_tokens=10, messages=[InputMessage(role="user", content="hi")]
    )
    call = Call(request=request, request_id="r")
    for _ in range(500):  # warm-up
        await engine.create(call)
    start = time.process_time()
    for i in range(n):
        await engine.create(call)
        if shared and i % 200 == 0:
            await asyncio.sleep(0)  # let the background round run as it would
    spent = time.process_time() - start
    if task is not None:
        task.cancel()
    return spent / n


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    results: dict[str, float] = {}
    for _ in range(args.rounds):
        for name, (steps, policy, headers, shared) in variants().items():
            cost = await measure(steps, policy, headers, shared, args.requests)
            results[name] = min(results.get(name, cost), cost)
    base = results["plain chain"]
    print("| variant | engine CPU µs/request | vs plain chain |")
    print("|---|---|---|")
    for name, cost in results.items():
        print(f"| {name} | {cost * 1e6:.1f} | {cost * 1e6 - base * 1e6:+.1f} µs |")


if __name__ == "__main__":
    asyncio.run(main())
