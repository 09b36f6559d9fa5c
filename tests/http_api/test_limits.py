"""The JSON nesting limit checked at the HTTP door, as a table of bodies."""

from __future__ import annotations

import json

import pytest

from sidecar.errors import InvalidRequestError
from sidecar.http_api.limits import MAX_DEPTH, check_body, exceeds_depth


def arrays(levels: int) -> bytes:
    return b"[" * levels + b"]" * levels


def objects(levels: int) -> bytes:
    return b'{"a":' * levels + b"1" + b"}" * levels


CASES = {
    "flat": (b'{"a":1}', 1, False),
    "arrays-at-limit": (arrays(8), 8, False),
    "arrays-past-limit": (arrays(9), 8, True),
    "objects-at-limit": (objects(8), 8, False),
    "objects-past-limit": (objects(9), 8, True),
    "mixed-past-limit": (b"[{" * 4 + b'"x":[]' + b"}]" * 4, 8, True),
    "mixed-at-limit": (b'[{"k":' * 4 + b"1" + b"}]" * 4, 8, False),
    "siblings-are-not-depth": (b"[" + b"[[]]," * 50 + b"[]]", 3, False),
    "brackets-in-strings": (json.dumps(["[[[[[[[[[[{{{{{{{{{{"]).encode(), 2, False),
    "escaped-quote-in-string": (json.dumps(['"[[[[[[', "x"]).encode(), 2, False),
    "escaped-backslash-then-quote": (json.dumps(["\\", arrays(3).decode()]).encode(), 2, False),
    "deep-behind-escapes": (b'["\\\\",' + arrays(3) + b"]", 3, True),
    "unbalanced-shallow": (b"[[[", 8, False),
    "unbalanced-deep": (b"[" * 20, 8, True),
}


@pytest.mark.parametrize(("body", "limit", "deeper"), CASES.values(), ids=CASES.keys())
def test_exceeds_depth(body: bytes, limit: int, deeper: bool) -> None:
    assert exceeds_depth(body, limit) is deeper


def test_the_documented_limit_is_checked() -> None:
    check_body(arrays(MAX_DEPTH))
    with pytest.raises(InvalidRequestError, match=str(MAX_DEPTH)):
        check_body(arrays(MAX_DEPTH + 1))


UTF8 = {
    "ascii": (b'{"a":"b"}', None),
    "utf-8": ('{"a":"é😀"}'.encode(), None),
    "invalid-byte": (b'{"\xff":1}', "at byte 2"),
    "truncated-sequence": (b'{"a":"\xc3"}', "at byte 6"),
}


@pytest.mark.parametrize(("body", "error"), UTF8.values(), ids=UTF8.keys())
def test_the_body_must_be_utf8(body: bytes, error: str | None) -> None:
    if error is None:
        check_body(body)
    else:
        with pytest.raises(InvalidRequestError, match=error):
            check_body(body)
