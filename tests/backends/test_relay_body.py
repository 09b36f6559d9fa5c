"""Rewriting model and stream in a relayed body leaves every other byte as the caller sent it."""

from __future__ import annotations

import json

import pytest

from sidecar.backends.relay_body import with_model

CASES = {
    "plain": (b'{"model":"a","max_tokens":5}', b'{"model":"b","max_tokens":5}'),
    "stream-replaced": (b'{"stream":true,"model":"a"}', b'{"stream":false,"model":"b"}'),
    "big-integer": (b'{"model":"a","x":18446744073709551616}', None),
    "huge-float": (b'{"model":"a","x":1e400}', None),
    "exact-digits": (b'{"model":"a","t":0.1000000000000000055511151231257827}', None),
    "unicode": ('{"model":"a","x":"é😀\\u2028"}'.encode(), None),
}


def test_a_stream_is_asked_for() -> None:
    assert with_model(b'{"model":"a"}', "b", stream=True) == b'{"model":"b","stream":true}'


@pytest.mark.parametrize(("body", "expected"), CASES.values(), ids=CASES.keys())
def test_with_model(body: bytes, expected: bytes | None) -> None:
    out = with_model(body, "b", stream=False)
    if expected is not None:
        assert out == expected
    doc = json.loads(out)
    assert (doc["model"], doc.get("stream", False)) == ("b", False)
    assert ("stream" in doc) == (b'"stream"' in body)  # none added where the caller sent none
    for key, value in json.loads(body).items():  # Python's json keeps these exactly
        if key not in ("model", "stream"):
            assert doc[key] == value
            raw = body.split(f'"{key}":'.encode(), 1)[1].rstrip(b"}")
            assert raw in out  # the caller's own bytes
