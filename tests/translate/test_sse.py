"""SSE framing: line endings, fields, comments, splits at every byte, the size cap, encoding."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar.errors import FailureKind, UpstreamError
from sidecar.translate.sse import SSEDecoder, SSEFrame, encode_sse


def decode_all(raw: bytes, *, close: bool = True) -> list[SSEFrame]:
    decoder = SSEDecoder()
    frames = decoder.feed(raw)
    return frames + decoder.close() if close else frames


F = SSEFrame

CASES: list[tuple[str, bytes, list[SSEFrame]]] = [
    ("lf", b"data: a\n\ndata: b\n\n", [F(None, "a"), F(None, "b")]),
    ("crlf", b"data: a\r\n\r\ndata: b\r\n\r\n", [F(None, "a"), F(None, "b")]),
    ("cr", b"data: a\r\rdata: b\r\r", [F(None, "a"), F(None, "b")]),
    (
        "mixed-endings",
        b"data: a\r\n\ndata: b\r\rdata: c\n\r\n",
        [F(None, "a"), F(None, "b"), F(None, "c")],
    ),
    ("event-name", b"event: message_start\ndata: {}\n\n", [F("message_start", "{}")]),
    ("event-no-space", b"event:x\ndata: 1\n\n", [F("x", "1")]),
    ("event-one-space-stripped", b"event:  x\ndata: 1\n\n", [F(" x", "1")]),
    ("event-empty", b"event:\ndata: 1\n\n", [F("", "1")]),
    ("event-without-colon", b"event\ndata: 1\n\n", [F("", "1")]),
    ("event-invalid-utf8-replaced", b"event: \xff\ndata: 1\n\n", [F("\ufffd", "1")]),
    ("event-reset-per-frame", b"event: x\ndata: 1\n\ndata: 2\n\n", [F("x", "1"), F(None, "2")]),
    ("multi-line-data", b"data: a\ndata: b\ndata:\ndata: c\n\n", [F(None, "a\nb\n\nc")]),
    ("no-space-after-colon", b'data:{"a":1}\n\n', [F(None, '{"a":1}')]),
    ("only-one-space-stripped", b"data:  two\n\n", [F(None, " two")]),
    ("colon-in-value", b"data: a: b\n\n", [F(None, "a: b")]),
    ("comment", b": keep-alive\n\n: ping\ndata: x\n\n", [F(None, "x")]),
    ("field-without-colon", b"data\n\n", [F(None, "")]),
    ("id-and-retry-ignored", b"id: 7\nretry: 100\ndata: x\n\n", [F(None, "x")]),
    ("unknown-field-ignored", b"foo: bar\ndata: x\n\n", [F(None, "x")]),
    ("event-without-data", b"event: ping\n\ndata: x\n\n", [F(None, "x")]),
    ("blank-lines", b"\n\n\ndata: x\n\n\n\n", [F(None, "x")]),
    ("bom", b"\xef\xbb\xbfdata: x\n\n", [F(None, "x")]),
    ("utf8", "data: héllo \u2013 世界 🎉\n\n".encode(), [F(None, "héllo \u2013 世界 🎉")]),
    ("invalid-utf8-replaced", b"data: \xff\n\n", [F(None, "\ufffd")]),
    (
        "openai-done",
        b'data: {"choices":[]}\n\ndata: [DONE]\n\n',
        [F(None, '{"choices":[]}'), F(None, "[DONE]")],
    ),
    ("close-flushes-complete-lines", b"data: a\ndata: b\n", [F(None, "a\nb")]),
    ("close-drops-partial-line", b"data: a\n\ndata: parti", [F(None, "a")]),
    ("close-cr-ended", b"data: a\r", [F(None, "a")]),
]


@pytest.mark.parametrize(("raw", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_decode(raw: bytes, expected: list[SSEFrame]) -> None:
    assert decode_all(raw) == expected


@pytest.mark.parametrize(("raw", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_split_at_every_offset(raw: bytes, expected: list[SSEFrame]) -> None:
    for cut in range(len(raw) + 1):
        decoder = SSEDecoder()
        frames = decoder.feed(raw[:cut]) + decoder.feed(b"") + decoder.feed(raw[cut:])
        frames += decoder.close()
        assert frames == expected, f"split at {cut}"


@pytest.mark.parametrize(("raw", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_byte_by_byte(raw: bytes, expected: list[SSEFrame]) -> None:
    decoder = SSEDecoder()
    frames: list[SSEFrame] = []
    for i in range(len(raw)):
        frames += decoder.feed(raw[i : i + 1])
    assert frames + decoder.close() == expected


def test_frames_are_returned_as_soon_as_complete() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\n") == []
    assert decoder.feed(b"\n") == [F(None, "a")]
    assert decoder.feed(b"data: b\r") == []
    assert decoder.feed(b"\r") == [F(None, "b")]
    assert decoder.feed(b"") == []


def test_empty_feed_between_cr_and_lf() -> None:
    decoder = SSEDecoder()
    frames = decoder.feed(b"event: e\r") + decoder.feed(b"") + decoder.feed(b"\ndata: x\r\n\r\n")
    assert frames == [F("e", "x")]


@pytest.mark.parametrize(
    "raw",
    [
        b"data: " + b"x" * 200 + b"\n\n",
        b"data: " + b"x" * 200,
        b"data: " + b"x" * 60 + b"\n" * 1 + b"data: " + b"y" * 60 + b"\n",
    ],
    ids=["complete-line", "partial-line", "many-data-lines"],
)
def test_frame_over_cap_raises(raw: bytes) -> None:
    decoder = SSEDecoder(max_frame_size=100)
    with pytest.raises(UpstreamError) as info:
        for i in range(0, len(raw), 7):
            decoder.feed(raw[i : i + 7])
    assert info.value.kind is FailureKind.INVALID_RESPONSE


def test_cap_is_per_frame_not_per_stream() -> None:
    decoder = SSEDecoder(max_frame_size=100)
    frames: list[SSEFrame] = []
    for _ in range(50):
        frames += decoder.feed(b"data: " + b"x" * 80 + b"\n\n")
    assert len(frames) == 50


def test_long_line_in_many_pieces_is_linear() -> None:
    decoder = SSEDecoder()
    decoder.feed(b"data: ")
    for _ in range(20_000):
        assert decoder.feed(b"x" * 50) == []
    assert decoder.feed(b"\n\n") == [F(None, "x" * 1_000_000)]


@pytest.mark.parametrize(
    ("event", "data", "expected"),
    [
        (
            "message_stop",
            b'{"type":"message_stop"}',
            b'event: message_stop\ndata: {"type":"message_stop"}\n\n',
        ),
        ("ping", b"{}", b"event: ping\ndata: {}\n\n"),
        ("x", b"a\nb", b"event: x\ndata: a\ndata: b\n\n"),
    ],
    ids=["json", "ping", "newline-in-data"],
)
def test_encode(event: str, data: bytes, expected: bytes) -> None:
    encoded = encode_sse(event, data)
    assert encoded == expected
    assert decode_all(encoded) == [F(event, data.decode())]


_frames = st.lists(
    st.tuples(
        st.none() | st.sampled_from(["message_start", "content_block_delta", "ping"]),
        st.lists(
            st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\r\n"), max_size=20),
            min_size=1,
            max_size=3,
        ),
    ),
    max_size=6,
)


@settings(max_examples=300, deadline=None)
@given(_frames, st.sampled_from([b"\n", b"\r\n", b"\r"]), st.data())
def test_any_chunking_gives_the_same_frames(
    frames: list[tuple[str | None, list[str]]], eol: bytes, data: st.DataObject
) -> None:
    raw = b""
    for event, lines in frames:
        if event is not None:
            raw += b"event: " + event.encode() + eol
        raw += b": comment" + eol
        for line in lines:
            raw += b"data: " + line.encode() + eol
        raw += eol
    expected = [F(event, "\n".join(lines)) for event, lines in frames]
    cuts = sorted(data.draw(st.lists(st.integers(0, len(raw)), max_size=10)))
    bounds = [0, *cuts, len(raw)]
    decoder = SSEDecoder()
    got: list[SSEFrame] = []
    for a, b in itertools.pairwise(bounds):
        got += decoder.feed(raw[a:b])
    assert got + decoder.close() == expected
