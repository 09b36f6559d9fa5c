"""sidecar.grpc_api.relay: delta merging and the reader / writer hand-off, with plain asyncio."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import orjson
import pytest

from sidecar import model as m
from sidecar.errors import UpstreamError
from sidecar.grpc_api.gen.anyllm.sidecar.v1 import messages_pb2 as pb
from sidecar.grpc_api.relay import relay
from sidecar.grpc_api.reverse import event_from_proto
from tests.grpc_api.merge import coalesce


def text(index: int, value: str) -> m.ContentBlockDelta:
    return m.ContentBlockDelta(index=index, delta=m.TextDelta(text=value))


def json_(index: int, value: str) -> m.ContentBlockDelta:
    return m.ContentBlockDelta(index=index, delta=m.InputJsonDelta(partial_json=value))


def thinking(index: int, value: str) -> m.ContentBlockDelta:
    return m.ContentBlockDelta(index=index, delta=m.ThinkingDelta(thinking=value))


SIG = m.ContentBlockDelta(index=0, delta=m.SignatureDelta(signature="s"))
STOP0 = m.ContentBlockStop(index=0)

COALESCE = {
    "empty": ([], []),
    "one": ([text(0, "a")], [text(0, "a")]),
    "text_run": ([text(0, "a"), text(0, "b"), text(0, "c")], [text(0, "abc")]),
    "json_run": ([json_(1, '{"a'), json_(1, '": 1}')], [json_(1, '{"a": 1}')]),
    "thinking_run": ([thinking(0, "x"), thinking(0, "y")], [thinking(0, "xy")]),
    "other_index": ([text(0, "a"), text(1, "b")], [text(0, "a"), text(1, "b")]),
    "other_kind": ([thinking(0, "a"), text(0, "b")], [thinking(0, "a"), text(0, "b")]),
    "signature_not_merged": ([thinking(0, "a"), SIG, SIG], [thinking(0, "a"), SIG, SIG]),
    "broken_by_stop": (
        [text(0, "a"), text(0, "b"), STOP0, text(1, "c"), text(1, "d")],
        [text(0, "ab"), STOP0, text(1, "cd")],
    ),
}


@pytest.mark.parametrize(("events", "expected"), COALESCE.values(), ids=COALESCE.keys())
def test_coalesce(events: list[m.StreamEvent], expected: list[m.StreamEvent]) -> None:
    assert coalesce(events) == expected


async def _source(
    events: list[m.StreamEvent], *, gap: float = 0.0, then: BaseException | None = None
) -> AsyncIterator[list[m.StreamEvent]]:
    for event in events:  # one event per batch: one upstream read each
        if gap:
            await asyncio.sleep(gap)
        yield [event]
    if then is not None:
        raise then


class Writer:
    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.got: list[m.StreamEvent] = []

    async def __call__(self, message: pb.StreamEvent) -> None:
        self.got.append(event_from_proto(message))
        await asyncio.sleep(self.delay)


DELTAS = [text(0, str(i)) for i in range(20)]


class Connection:
    """An upstream connection as the engine reads it: events arrive on their own schedule
    (``push``) and wait in its buffer; a read takes everything that arrived (at least one)."""

    def __init__(self) -> None:
        self.buffer: list[m.StreamEvent] = []
        self.arrived = asyncio.Event()
        self.ended = False

    def push(self, *events: m.StreamEvent) -> None:
        self.buffer += events
        self.arrived.set()

    def end(self) -> None:
        self.ended = True
        self.arrived.set()

    async def reads(self) -> AsyncIterator[list[m.StreamEvent]]:
        while self.buffer or not self.ended:
            if not self.buffer:
                self.arrived.clear()
                await self.arrived.wait()
                continue
            batch, self.buffer = self.buffer, []
            yield batch


async def test_deltas_that_arrive_while_a_write_is_pending_go_out_merged() -> None:
    connection = Connection()
    writing, release = asyncio.Event(), asyncio.Event()
    got: list[m.StreamEvent] = []

    async def write(message: pb.StreamEvent) -> None:
        got.append(event_from_proto(message))
        if len(got) == 1:  # the caller is behind: the first write stays pending a while
            writing.set()
            await release.wait()

    task = asyncio.create_task(relay(connection.reads(), write))
    connection.push(DELTAS[0])
    await writing.wait()
    connection.push(*DELTAS[1:], STOP0)
    connection.end()
    release.set()
    await task
    assert got == [DELTAS[0], text(0, "".join(str(i) for i in range(1, 20))), STOP0]


async def test_writer_that_keeps_up_gets_each_delta() -> None:
    writer = Writer()
    await relay(_source(DELTAS, gap=0.002), writer)
    assert writer.got == DELTAS


async def test_error_after_events_is_raised_after_they_are_written() -> None:
    writer = Writer(delay=0.005)
    boom = RuntimeError("upstream broke")
    with pytest.raises(RuntimeError) as caught:
        await relay(_source([STOP0, SIG], then=boom), writer)
    assert caught.value is boom
    assert writer.got == [STOP0, SIG]


async def test_cancel_stops_the_reader() -> None:
    closed = asyncio.Event()

    async def endless() -> AsyncIterator[list[m.StreamEvent]]:
        try:
            while True:
                yield [text(0, "x")]
                await asyncio.sleep(0.001)
        finally:
            closed.set()

    task = asyncio.create_task(relay(endless(), Writer(delay=0.001)))
    await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.wait_for(closed.wait(), 1)


async def test_error_event_becomes_an_error() -> None:
    writer = Writer()
    error = m.ErrorEvent(error=m.ErrorBody(type="overloaded_error", message="busy"))
    with pytest.raises(UpstreamError) as caught:
        await relay(_source([STOP0, error, SIG]), writer)
    assert (caught.value.error_type, caught.value.message) == ("overloaded_error", "busy")
    assert writer.got == [STOP0]


async def test_a_batch_of_one_read_is_merged_even_when_the_writer_keeps_up() -> None:
    async def one_read() -> AsyncIterator[list[m.StreamEvent]]:
        yield [STOP0, *DELTAS[:3]]

    writer = Writer()
    await relay(one_read(), writer)
    assert writer.got == [STOP0, text(0, "012")]


def _raw(doc: dict[str, object]) -> m.RawEvent:
    data = orjson.dumps(doc)
    return m.RawEvent(type=str(doc["type"]), data=data, view=m.event_view_decoder.decode(data))


async def test_relayed_events_are_written_whole_and_merged() -> None:
    got: list[pb.StreamEvent] = []

    async def write(message: pb.StreamEvent) -> None:
        got.append(message)

    async def one_read() -> AsyncIterator[list[m.StreamItem]]:
        yield [
            _raw({"type": "future_event", "x": 1}),
            _raw(
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": "a"},
                }
            ),
            _raw(
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": "b"},
                }
            ),
        ]

    await relay(one_read(), write)
    assert [e.WhichOneof("event") for e in got] == ["raw", "content_block_delta"]
    assert got[1].content_block_delta.text_delta == "ab"


async def test_relayed_error_event_becomes_an_error() -> None:
    writer = Writer()
    error = _raw({"type": "error", "error": {"type": "overloaded_error", "message": "busy"}})
    with pytest.raises(UpstreamError) as caught:
        await relay(_source([STOP0, error]), writer)  # type: ignore[list-item]
    assert (caught.value.error_type, caught.value.message) == ("overloaded_error", "busy")
