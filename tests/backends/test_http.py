"""The pooled upstream session against the real fake-upstream process: a request that dies on a
reused connection the upstream had closed, before any byte of the answer, is sent once more on
a new connection, invisibly; anything else is the upstream's failure, as before."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from sidecar.backends.http import UpstreamSession
from sidecar.errors import FailureKind, UpstreamError
from sidecar.translate.upstream_errors import error_from_openai

pytestmark = pytest.mark.integration

PATH = "/chat/completions"
BODY = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
STREAM = orjson.dumps(
    {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
)


async def post(session: UpstreamSession) -> bytes:
    return await session.post_json("b", PATH, BODY, {}, error_from_openai)


async def stream(session: UpstreamSession) -> int:
    frames = 0
    async for batch in session.post_sse("b", PATH, STREAM, {}, error_from_openai):
        frames += len(batch or [])
    return frames


def outcomes(upstream: Any) -> list[str]:
    return [entry["outcome"] for entry in upstream.control.log()]


# The first request leaves a pooled connection; the second meets what the script says.
REUSED = {
    "dropped-is-sent-again": ([{"drop": True}], "answered", ["completed", "dropped", "completed"]),
    "closed-after-a-400-is-sent-again": (
        [{"status": 400, "close": True}, {}],
        "400-then-answered",
        ["completed", "completed", "completed"],
    ),
    "reset-is-sent-again": ([{"reset": True}], "answered", ["completed", "reset", "completed"]),
    "dropped-twice-is-sent-again-only-once": (
        [{"drop": True, "times": 2}],
        "connect",
        ["completed", "dropped", "dropped"],
    ),
}


@pytest.mark.parametrize(("script", "result", "log"), REUSED.values(), ids=REUSED.keys())
@pytest.mark.parametrize("mode", ["json", "sse"])
async def test_a_reused_connection(
    upstream: Any, mode: str, script: list[dict[str, Any]], result: str, log: list[str]
) -> None:
    session = UpstreamSession(upstream.base_url + "/v1", max_connections=0, headers={})
    call = post if mode == "json" else stream
    try:
        await call(session)  # a connection is now in the pool
        upstream.control.script(*script)
        if result == "400-then-answered":
            with pytest.raises(UpstreamError) as info:
                await call(session)
            assert info.value.status == 400
            await call(session)  # on the connection the upstream closed after its 400
        elif result == "answered":
            assert await call(session)
        else:
            with pytest.raises(UpstreamError) as info:
                await call(session)
            assert info.value.kind is FailureKind.CONNECT
    finally:
        await session.aclose()
    assert outcomes(upstream) == log


@pytest.mark.parametrize("fault", ["drop", "reset"])
@pytest.mark.parametrize("mode", ["json", "sse"])
async def test_a_new_connection_that_breaks_is_a_failure(
    upstream: Any, mode: str, fault: str
) -> None:
    session = UpstreamSession(upstream.base_url + "/v1", max_connections=0, headers={})
    upstream.control.script({fault: True})
    try:
        with pytest.raises(UpstreamError) as info:
            await (post(session) if mode == "json" else stream(session))
    finally:
        await session.aclose()
    assert info.value.kind is FailureKind.CONNECT
    assert outcomes(upstream) == [{"drop": "dropped", "reset": "reset"}[fault]]  # once only
