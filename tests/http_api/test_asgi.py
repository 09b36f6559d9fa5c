"""The shared ASGI plumbing: header lookup, request ids, response headers from metadata."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest

from sidecar.http_api.asgi import Exchange, _request_id, encode_headers
from sidecar.ids import new_request_id


async def _receive() -> dict[str, Any]:
    return {"type": "http.disconnect"}


async def _send(message: Any) -> None:
    return None


def exchange(headers: Any) -> Exchange:
    scope = {"type": "http", "method": "POST", "path": "/v1/messages", "headers": headers}
    return Exchange(scope, _receive, _send, "", "/v1/messages", 1 << 20)


HEADERS = [
    (b"x-anyllm-chain", b"first"),
    (b"anthropic-version", b"2023-06-01"),
    (b"x-anyllm-chain", b"second"),
    (b"x-odd", "caf\u00e9".encode("latin-1")),
]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        pytest.param(b"x-anyllm-chain", "first", id="the-first-of-repeated-names"),
        pytest.param(b"anthropic-version", "2023-06-01", id="present"),
        pytest.param(b"x-odd", "caf\u00e9", id="latin-1"),
        pytest.param(b"x-missing", None, id="absent"),
    ],
)
@pytest.mark.parametrize("shape", [pytest.param(list, id="list"), pytest.param(tuple, id="tuple")])
def test_header(name: bytes, expected: str | None, shape: type) -> None:
    ex = exchange(shape(HEADERS))
    assert ex.header(name) == expected
    assert ex.header(name) == expected  # again, from the index


def test_a_fresh_request_id_has_uuid4_hex_shape_and_is_unique() -> None:
    ids = {new_request_id() for _ in range(20_000)}
    assert len(ids) == 20_000
    for value in list(ids)[:500]:
        assert re.fullmatch(r"[0-9a-f]{32}", value)
        parsed = uuid.UUID(hex=value)
        assert (parsed.version, parsed.variant) == (4, uuid.RFC_4122)


@pytest.mark.parametrize(
    ("bits", "expected"),
    [
        pytest.param(0, "00000000000040008000000000000000", id="zeros-get-the-version"),
        pytest.param((1 << 128) - 1, "ffffffffffff4fffbfffffffffffffff", id="ones-lose-bits"),
    ],
)
def test_request_id_bits(bits: int, expected: str) -> None:
    assert new_request_id(lambda n: bits) == expected
    assert uuid.UUID(hex=expected).version == 4


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        pytest.param(b"req-123", True, id="a-token"),
        pytest.param(b"has space", False, id="a-space"),
        pytest.param(b"x" * 129, False, id="too-long"),
        pytest.param(b"", False, id="empty"),
    ],
)
def test_request_id_from_the_caller(given: bytes, kept: bool) -> None:
    got = _request_id(exchange([(b"x-request-id", given)]))
    assert (got == given.decode()) is kept
    assert kept or re.fullmatch(r"[0-9a-f]{32}", got)


@pytest.mark.parametrize(
    ("pairs", "expected"),
    [
        pytest.param(
            [("x-request-id", "r1"), ("x-anyllm-chain", "c")],
            [(b"x-request-id", b"r1"), (b"x-anyllm-chain", b"c"), (b"request-id", b"r1")],
            id="request-id-repeats-ours",
        ),
        pytest.param(
            [("x-request-id", "r1"), ("request-id", "req_up"), ("anthropic-x", "v")],
            [(b"x-request-id", b"r1"), (b"request-id", b"req_up"), (b"anthropic-x", b"v")],
            id="the-upstreams-own-request-id-is-kept",
        ),
        pytest.param([], [], id="none"),
        pytest.param(
            [("x-anyllm-degradation", "caf\u00e9")],
            [(b"x-anyllm-degradation", "caf\u00e9".encode("latin-1"))],
            id="latin-1",
        ),
    ],
)
def test_encode_headers(pairs: list[tuple[str, str]], expected: list[tuple[bytes, bytes]]) -> None:
    assert encode_headers(pairs) == expected
