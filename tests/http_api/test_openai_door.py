"""The OpenAI door in process, over a scripted fake engine: what it hands the engine, how it
renders each kind of answer (relayed chunks, Anthropic events relayed or ours), and that a
stream never ends quietly. (The door against the real sidecar and the official SDK:
tests/integration/test_openai_door.py.)"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from sidecar.engine.outcome import Outcome
from sidecar.errors import FailureKind, OverloadedError, UpstreamError
from sidecar.http_api.anthropic_door import AnthropicDoor
from sidecar.http_api.asgi import HttpApp
from sidecar.http_api.openai_door import OpenAIDoor
from sidecar.model import (
    Answer,
    Call,
    ContentBlockDelta,
    ContentBlockStart,
    CountCall,
    EventView,
    Message,
    MessageStart,
    RawChatChunk,
    RawEvent,
    RawMessage,
    StreamItem,
    TextBlock,
    TextDelta,
    TokenCount,
    message_view_decoder,
)

BODY = {"model": "gpt-x", "messages": [{"role": "user", "content": "hi"}], "seed": 1}


class FakeStream:
    def __init__(self, batches: list[list[StreamItem] | Exception]) -> None:
        self.outcome = Outcome(request_id="r", chain="default", answered_by="b")
        self.outcome.degradations = ["seed"]
        self._batches = batches
        self.closed = False

    def __aiter__(self) -> AsyncIterator[list[StreamItem]]:
        return self._run()

    async def _run(self) -> AsyncIterator[list[StreamItem]]:
        for batch in self._batches:
            if isinstance(batch, Exception):
                raise batch
            yield batch

    async def aclose(self) -> None:
        self.closed = True


class FakeEngine:
    def __init__(
        self, answer: Answer | None = None, stream: FakeStream | None = None, error: Any = None
    ) -> None:
        self.calls: list[Call] = []
        self._answer, self._stream, self._error = answer, stream, error

    async def create(self, call: Call) -> tuple[Answer, Outcome]:
        self.calls.append(call)
        if self._error is not None:
            raise self._error
        assert self._answer is not None
        return self._answer, Outcome(request_id=call.request_id, chain="default")

    async def open_stream(self, call: Call) -> FakeStream:
        self.calls.append(call)
        assert self._stream is not None
        return self._stream

    async def count_tokens(self, call: CountCall) -> tuple[TokenCount, Outcome]:
        raise AssertionError("not an OpenAI route")


async def post(engine: FakeEngine, body: dict[str, Any], **headers: str) -> httpx.Response:
    doors = [AnthropicDoor(engine, lambda: ["default"]), OpenAIDoor(engine, lambda: ["default"])]
    app = HttpApp(doors, max_body_bytes=1 << 20)
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://sidecar") as client:
        return await client.post("/v1/chat/completions", json=body, headers=headers)


def data_lines(response: httpx.Response) -> list[str]:
    return [line[6:] for line in response.text.split("\n") if line.startswith("data: ")]


def raw_event(doc: dict[str, Any]) -> RawEvent:
    data = json.dumps(doc).encode()
    view = EventView(type=doc["type"])
    return RawEvent(type=doc["type"], data=data, view=view)


START = {
    "type": "message_start",
    "message": {"id": "msg_1", "type": "message", "role": "assistant", "model": "c",
                "content": [], "stop_reason": None,
                "usage": {"input_tokens": 2, "output_tokens": 0}},
}  # fmt: skip
RAW_ANTHROPIC_STREAM = [
    START,
    {"type": "content_block_start", "index": 0,
     "content_block": {"type": "server_tool_use", "id": "s1", "name": "web_search", "input": {}}},
    {"type": "content_block_delta", "index": 0,
     "delta": {"type": "input_json_delta", "partial_json": '{"q": 1}'}},
    {"type": "content_block_stop", "index": 0},
    {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}},
    {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "found"}},
    {"type": "content_block_stop", "index": 1},
    {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 1}},
    {"type": "message_stop"},
]  # fmt: skip


async def test_the_call_carries_the_body_and_its_translation() -> None:
    answer = RawMessage(
        body=b'{"type":"message","id":"m","model":"c","role":"assistant","content":[]}',
        view=message_view_decoder.decode(b'{"type":"message"}'),
    )
    engine = FakeEngine(answer=answer)
    response = await post(engine, BODY, **{"x-anyllm-chain": "native", "x-request-id": "req-7"})
    assert response.status_code == 200
    (call,) = engine.calls
    assert json.loads(call.openai_body or b"") == BODY
    assert call.raw_body is None  # an Anthropic target is sent ``request``, not these bytes
    assert call.request.model == "gpt-x"
    assert call.openai_notes == ("max_tokens.default", "seed")
    assert (call.surface, call.chain, call.request_id) == ("openai", "native", "req-7")
    assert response.json()["object"] == "chat.completion"


async def test_a_relayed_anthropic_stream_with_an_unknown_block_translates() -> None:
    stream = FakeStream([[raw_event(e) for e in RAW_ANTHROPIC_STREAM]])
    response = await post(FakeEngine(stream=stream), {**BODY, "stream": True})
    frames = data_lines(response)
    assert frames[-1] == "[DONE]"
    chunks = [json.loads(f) for f in frames[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "found"  # the server tool's block and its JSON delta were left out
    assert not any("tool_calls" in c["choices"][0]["delta"] for c in chunks if c["choices"])
    assert "block:server_tool_use" in stream.outcome.degradations
    assert stream.closed


OURS = [
    MessageStart(message=Message(id="msg_1", model="c", content=[])),
    ContentBlockStart(index=0, content_block=TextBlock(text="")),
    ContentBlockDelta(index=0, delta=TextDelta(text="half")),
]
BROKEN = RawEvent(type="x", data=b"{", view=EventView(type="x"))  # never from a backend
CUT = UpstreamError("the connection broke", kind=FailureKind.INCOMPLETE)


@pytest.mark.parametrize(
    ("batches", "message"),
    [
        pytest.param([OURS, CUT], "the connection broke", id="translated-then-cut"),
        pytest.param(
            [[RawChatChunk(b'{"choices":[{"index":0,"delta":{"content":"x"}}]}', True)], CUT],
            "the connection broke",
            id="relayed-then-cut",
        ),
        pytest.param([OURS], "ended early", id="ended-without-stop"),
        pytest.param([OURS, [BROKEN]], "internal error", id="a-bug-of-ours"),
    ],
)
async def test_a_stream_never_ends_quietly(batches: list[Any], message: str) -> None:
    stream = FakeStream(batches)
    response = await post(FakeEngine(stream=stream), {**BODY, "stream": True})
    frames = data_lines(response)
    assert "[DONE]" not in frames
    error = json.loads(frames[-1])["error"]
    assert message in error["message"]
    assert stream.closed


async def test_errors_in_openais_shape_with_retry_after() -> None:
    engine = FakeEngine(error=OverloadedError("busy", retry_after=3))
    response = await post(engine, BODY)
    assert response.status_code == 503
    assert response.headers["retry-after"] == "3"
    assert response.json() == {
        "error": {"message": "busy", "type": "server_error", "param": None, "code": "overloaded"}
    }


@pytest.mark.parametrize(
    ("headers", "shape"),
    [
        pytest.param({}, {"object": "list"}, id="openai"),
        pytest.param({"anthropic-version": "2023-06-01"}, {"has_more": False}, id="anthropic"),
    ],
)
async def test_models_by_who_asks(headers: dict[str, str], shape: dict[str, Any]) -> None:
    engine = FakeEngine()
    doors = [AnthropicDoor(engine, lambda: ["a"]), OpenAIDoor(engine, lambda: ["a"])]
    transport = httpx.ASGITransport(app=HttpApp(doors, max_body_bytes=1024))  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://sidecar") as client:
        body = (await client.get("/v1/models", headers=headers)).json()
    assert shape.items() <= body.items()
    assert [m["id"] for m in body["data"]] == ["a"]
