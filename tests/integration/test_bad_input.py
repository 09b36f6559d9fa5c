"""Bad input on the real process is a 400 / INVALID_ARGUMENT naming what is wrong, never a 500,
an empty reply or a lost answer: one row per defect found by fuzzing (issue 11), each sent to the
sidecar process over HTTP or gRPC, with the upstream being the fake upstream process."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import httpx
import pytest

from sidecar.grpc_api.convert import dict_to_struct
from sidecar.grpc_api.gen.anyllm.sidecar.v1 import messages_pb2 as pb
from sidecar.grpc_api.gen.anyllm.sidecar.v1 import messages_service_pb2 as spb
from sidecar.grpc_api.gen.anyllm.sidecar.v1 import messages_service_pb2_grpc as spb_grpc
from sidecar.http_api.limits import MAX_DEPTH
from tests.integration.helpers import sidecar_config

pytestmark = pytest.mark.integration

BASE = '{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"hi"}]'
COUNT_BASE = '{"model":"m","messages":[{"role":"user","content":"hi"}]'
BIG = str(2**64)


def nested(levels: int) -> str:
    return "[" * levels + "]" * levels


def schema_with(extra: str) -> str:
    return f',"tools":[{{"name":"t","input_schema":{{"type":"object"{extra}}}}}]'


@pytest.fixture(scope="module")
def sidecar(module_upstream: Any, module_sidecar_factory: Callable[..., Any]) -> Any:
    return module_sidecar_factory(sidecar_config(module_upstream.base_url))


@pytest.fixture(scope="module")
def http(sidecar: Any) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sidecar.http_url, timeout=30) as client:
        yield client


def post(http: httpx.Client, path: str, body: str, chain: str = "default") -> httpx.Response:
    headers = {"content-type": "application/json", "x-anyllm-chain": chain}
    return http.post(path, content=body.encode(), headers=headers)


def error_lines(sidecar: Any) -> list[str]:
    """ERROR lines of the sidecar's JSON log, and any traceback it printed."""
    found = []
    for line in sidecar.log_lines():
        try:
            level = json.loads(line).get("level")
        except ValueError:  # not JSON (or still being written)
            level = "error" if "Traceback" in line else None
        if level in ("error", "critical"):
            found.append(line)
    return found


# (path, chain, body, expected status, a piece of the error message)
REFUSED = {
    "deep-unknown-field": ("/v1/messages", "default", BASE + ',"x":' + nested(990) + "}", "128"),
    "deep-unknown-field-native": (
        "/v1/messages",
        "native",
        BASE + ',"x":' + nested(990) + "}",
        "128",
    ),
    "just-past-the-limit": (
        "/v1/messages",
        "default",
        BASE + ',"x":' + nested(MAX_DEPTH) + "}",  # the body itself is one more level
        "128",
    ),
    "deep-count-tokens": (
        "/v1/messages/count_tokens",
        "default",
        COUNT_BASE + ',"x":' + nested(5000) + "}",
        "128",
    ),
    "deep-unbalanced": ("/v1/messages", "default", BASE + ',"x":' + "[" * 5000, "128"),
    "max-tokens-2^64": (
        "/v1/messages",
        "default",
        BASE.replace('"max_tokens":5', f'"max_tokens":{BIG}') + "}",
        "max_tokens",
    ),
    "schema-int-2^64-openai": (
        "/v1/messages",
        "default",
        BASE + schema_with(f',"maximum":{BIG}') + "}",
        "64 bits",
    ),
    "tool-input-int-2^64-openai": (
        "/v1/messages",
        "default",
        '{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"hi"},'
        '{"role":"assistant","content":[{"type":"tool_use","id":"t1","name":"t",'
        f'"input":{{"n":{BIG}}}}}]}},{{"role":"user","content":[{{"type":"tool_result",'
        '"tool_use_id":"t1","content":"ok"}]}]}',
        "64 bits",
    ),
}


@pytest.mark.parametrize(("path", "chain", "body", "names"), REFUSED.values(), ids=REFUSED.keys())
def test_bad_input_is_a_400_naming_it(
    sidecar: Any, http: httpx.Client, path: str, chain: str, body: str, names: str
) -> None:
    response = post(http, path, body, chain)
    assert response.status_code == 400, response.text
    error = response.json()
    assert error["type"] == "error"
    assert error["error"]["type"] == "invalid_request_error"
    assert names in error["error"]["message"]
    assert post(http, "/v1/messages", BASE + "}").status_code == 200  # still serving
    assert error_lines(sidecar) == []


def test_invalid_utf8_anywhere_is_a_400(sidecar: Any, http: httpx.Client) -> None:
    # In a field the sidecar does not model (msgspec skips those unread): relayed, then refused
    # by the model rewrite's parser, it was a 500.
    body = (BASE + ',"\xff\xc3(":null}').encode("latin-1")
    for chain in ("native", "default"):
        response = http.post(
            "/v1/messages",
            content=body,
            headers={"content-type": "application/json", "x-anyllm-chain": chain},
        )
        assert response.status_code == 400, response.text
        assert "not valid UTF-8" in response.json()["error"]["message"]
    assert error_lines(sidecar) == []


def test_a_relayed_body_keeps_numbers_python_cannot_hold(
    sidecar: Any, http: httpx.Client, module_upstream: Any
) -> None:
    # The native chain names another upstream model: the body is rewritten, and was parsed
    # into Python values to do it (1e400 failed with a 500; 2**64 became a float).
    module_upstream.control.reset()
    body = BASE + f',"x":1e400,"y":{BIG}}}'
    response = post(http, "/v1/messages", body, "native")
    assert response.status_code == 200, response.text
    (entry,) = module_upstream.control.log()
    assert entry["body"]["model"] == "claude-upstream"
    assert entry["body"]["x"] == float("inf") and entry["body"]["y"] == 2**64


# Accepted: at the limit, and what the backends can encode.
ACCEPTED = {
    "at-the-limit": ("/v1/messages", "default", BASE + ',"x":' + nested(MAX_DEPTH - 1) + "}"),
    "brackets-inside-strings": (
        "/v1/messages",
        "default",
        BASE.replace('"hi"', json.dumps("[" * 3000 + '\\"{' * 300)) + "}",
    ),
    "schema-int-2^64-count-tokens": (
        "/v1/messages/count_tokens",
        "default",
        COUNT_BASE + schema_with(f',"maximum":{BIG}') + "}",
    ),
    "schema-int-2^64-native": (
        "/v1/messages",
        "native",
        BASE + schema_with(f',"maximum":{BIG}') + "}",
    ),
}


@pytest.mark.parametrize(("path", "chain", "body"), ACCEPTED.values(), ids=ACCEPTED.keys())
def test_good_input_near_the_limits_is_answered(
    sidecar: Any, http: httpx.Client, path: str, chain: str, body: str
) -> None:
    response = post(http, path, body, chain)
    assert response.status_code == 200, response.text
    assert error_lines(sidecar) == []


# Caller-chosen names that reach the x-anyllm-degradation header (unknown fields and blocks,
# dropped for a translating upstream), and how the header shows them.
NAMES = {
    "line-separator": ('"a\u2028b"', "field:a%E2%80%A8b"),
    "emoji": ('"\U0001f600"', "field:%F0%9F%98%80"),
    "cr-lf": ('"a\\r\\nb"', "field:a%0D%0Ab"),
    "nul": ('"a\\u0000b"', "field:a%00b"),
    "comma-and-percent": ('"a,b%c"', "field:a%2Cb%25c"),
    "space": ('"a b"', "field:a%20b"),
}


@pytest.mark.parametrize(("name", "shown"), NAMES.values(), ids=NAMES.keys())
def test_caller_names_in_the_degradation_header_are_encoded(
    sidecar: Any, http: httpx.Client, name: str, shown: str
) -> None:
    response = post(http, "/v1/messages", BASE + f",{name}:1}}")
    assert response.status_code == 200, response.text
    assert response.json()["content"][0]["text"] == "echo: hi"  # the answer is not lost
    assert shown in response.headers["x-anyllm-degradation"].split(",")
    assert error_lines(sidecar) == []


def test_an_unknown_block_type_with_an_emoji_is_named_encoded(http: httpx.Client) -> None:
    body = (
        '{"model":"m","max_tokens":5,"messages":[{"role":"user","content":'
        '[{"type":"\U0001f600"},{"type":"text","text":"hi"}]}]}'
    )
    response = post(http, "/v1/messages", body)
    assert response.status_code == 200, response.text
    assert "block:%F0%9F%98%80" in response.headers["x-anyllm-degradation"].split(",")


def test_a_huge_unknown_field_name_is_clipped_in_the_header(http: httpx.Client) -> None:
    names = ",".join(f'"{i}{"x" * 500}":1' for i in range(50))
    response = post(http, "/v1/messages", BASE + "," + names + "}")
    assert response.status_code == 200, response.text
    header = response.headers["x-anyllm-degradation"]
    assert len(header) < 2100
    assert header.split(",")[-1].startswith("more:")


def test_a_strange_request_id_is_replaced(http: httpx.Client) -> None:
    response = http.post(
        "/v1/messages", content=(BASE + "}").encode(), headers={"x-request-id": "a b\tc"}
    )
    assert response.status_code == 200
    assert response.headers["x-request-id"] not in ("a b\tc", "")


# --------------------------------------------------------------------------- gRPC


def raw_call(sidecar: Any, method: str, data: bytes) -> grpc.RpcError:
    with grpc.insecure_channel(sidecar.grpc_target) as channel:
        call = channel.unary_unary(f"/anyllm.sidecar.v1.MessagesService/{method}")
        with pytest.raises(grpc.RpcError) as info:
            call(data, timeout=10)
    return info.value


def good_request() -> spb.CreateMessageRequest:
    content = [pb.ContentBlock(text=pb.TextBlock(text="hi"))]
    return spb.CreateMessageRequest(
        model="m", max_tokens=5, messages=[pb.InputMessage(role=pb.ROLE_USER, content=content)]
    )


GOOD = good_request().SerializeToString()
UNPARSABLE = {
    "random-bytes": b"\xff\xfe\xfd\x00garbage\x13\x37" * 10,
    "truncated": GOOD[: len(GOOD) // 2 + 1],
    # field 1 (model, a proto3 string): length 2, then bytes that are not UTF-8
    "invalid-utf8": b"\x0a\x02\xc3\x28" + GOOD,
}


@pytest.mark.parametrize("method", ["CreateMessage", "CountTokens"])
@pytest.mark.parametrize("data", UNPARSABLE.values(), ids=UNPARSABLE.keys())
def test_grpc_bytes_that_do_not_parse_are_invalid_argument(
    sidecar: Any, method: str, data: bytes
) -> None:
    error = raw_call(sidecar, method, data)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
    assert "do not parse" in error.details()  # type: ignore[attr-defined]
    assert error_lines(sidecar) == []  # the caller's bad bytes are no ERROR of ours


def deep_schema(levels: int) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(levels - 1):
        schema = {"type": "object", "properties": {"p": schema}}
    return schema


def test_grpc_struct_past_protobufs_depth_is_invalid_argument(sidecar: Any) -> None:
    request = good_request()
    tool = request.tools.add(name="deep")
    dict_to_struct(deep_schema(40), tool.input_schema)
    with grpc.insecure_channel(sidecar.grpc_target) as channel:
        stub = spb_grpc.MessagesServiceStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.CreateMessage(request, timeout=10)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
        assert "Struct" in info.value.details()  # type: ignore[attr-defined]
        shallow = good_request()
        dict_to_struct(deep_schema(10), shallow.tools.add(name="ok").input_schema)
        assert stub.CreateMessage(shallow, timeout=10).content[0].text.text == "echo: hi"
    assert error_lines(sidecar) == []
