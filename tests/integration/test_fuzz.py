"""Fuzzing the real process: mutated valid requests over HTTP (both doors) and gRPC.

Each case starts from a valid request (plain, with tools, a tool round trip, system blocks, an
image, thinking; streamed or not) and mutates it a few times: a value replaced by any JSON (big
integers, odd floats, strings with control characters, line separators and emoji), a key
dropped, an unknown key with a strange name added, a value nested past the depth limit; then,
sometimes, the bytes themselves (cut short, invalid UTF-8). On gRPC the mutations go through the
message descriptors (any field, any value of its type, unknown enum values, deep Structs) or the
serialized bytes. The chain is an OpenAI-compatible one (translated) or the Anthropic one
(relayed), both served by the healthy fake upstream.

The OpenAI door (``/v1/chat/completions``) gets the same mutations of valid Chat Completions
requests, relayed (an OpenAI-compatible chain) or translated (the Anthropic one).

Whatever is sent: never a 5xx (or INTERNAL / UNKNOWN / UNAVAILABLE), never an empty reply, the
door's own error shape on every 4xx, streams that end properly (``message_stop``; ``[DONE]``);
and at the end no ERROR line or traceback in the sidecar's log, and the process still serving.
Examples are derandomized, so a CI run is repeatable; ``ANYLLM_FUZZ_EXAMPLES=5000`` runs a
longer search and ``ANYLLM_FUZZ_RANDOM=1`` a new one each time (hypothesis prints how to
reproduce a failure).
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf import descriptor, struct_pb2
from google.protobuf.message import Message as ProtoMessage
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sidecar.errors import TYPE_STATUS
from sidecar.grpc_api.convert import dict_to_struct
from sidecar.grpc_api.gen.anyllm.sidecar.v1 import messages_pb2 as pb
from sidecar.grpc_api.gen.anyllm.sidecar.v1 import messages_service_pb2 as spb
from tests.integration.helpers import WEATHER_TOOL, sidecar_config

pytestmark = pytest.mark.integration

EXAMPLES = int(os.environ.get("ANYLLM_FUZZ_EXAMPLES", "250"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=not os.environ.get("ANYLLM_FUZZ_RANDOM"),
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)

# --------------------------------------------------------------------------- seeds

USER = {"role": "user", "content": "what is the weather in Paris?"}
SEEDS: list[dict[str, Any]] = [
    {"model": "m", "max_tokens": 32, "messages": [USER]},
    {"model": "claude-x", "max_tokens": 32, "stream": True, "messages": [USER]},
    {
        "model": "m",
        "max_tokens": 64,
        "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        "tools": [WEATHER_TOOL],
        "tool_choice": {"type": "auto"},
        "temperature": 0.5,
        "stop_sequences": ["END"],
        "messages": [
            USER,
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Let me look."},
                    {"type": "tool_use", "id": "t1", "name": "get_weather", "input": {"city": "P"}},
                ],
            },
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "sunny"}],
            },
        ],
    },
    {
        "model": "m",
        "max_tokens": 2048,
        "stream": True,
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "metadata": {"user_id": "u1"},
        "messages": [
            {
                "role": "user",
                "content": [
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0K"},
                    },
                    {"type": "text", "text": "what is this?"},
                ],
            }
        ],
    },
]

# --------------------------------------------------------------------------- JSON mutations

ODD_TEXT = st.sampled_from(
    ["", "\u2028", "\x00", "a\r\nb", "\U0001f600", "%,;", "é", "\ud7ff", "x" * 500, "null"]
)
TEXT = st.text(max_size=12) | ODD_TEXT
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.sampled_from([0, -1, 2**31, 2**63, 2**64, 10**30])
    | st.floats(allow_nan=False, allow_infinity=False)
    | TEXT
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=8,
)
DEEP = "__deep_%d__"


def _slots(doc: Any, out: list[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
    """Every (container, key) in ``doc``."""
    if isinstance(doc, dict):
        for key, value in doc.items():
            out.append((doc, key))
            _slots(value, out)
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            out.append((doc, i))
            _slots(value, out)
    return out


CHAT_USER = {"role": "user", "content": "what is the weather in Paris?"}
CHAT_SEEDS: list[dict[str, Any]] = [
    {"model": "m", "messages": [CHAT_USER]},
    {
        "model": "m",
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_completion_tokens": 64,
        "messages": [{"role": "system", "content": "Be brief."}, CHAT_USER],
    },
    {
        "model": "m",
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "description": "Weather for a city",
                    "parameters": WEATHER_TOOL["input_schema"],
                },
            }
        ],
        "tool_choice": "auto",
        "temperature": 0.5,
        "stop": ["END"],
        "messages": [
            CHAT_USER,
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "P"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
        ],
    },
    {
        "model": "m",
        "stream": True,
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "w", "schema": {"type": "object"}},
        },
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what is this?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0K"}},
                ],
            }
        ],
    },
]


@st.composite
def json_requests(draw: st.DrawFn, seeds: list[dict[str, Any]] = SEEDS) -> bytes:
    doc = copy.deepcopy(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(0, 3))):
        slots = _slots(doc, [])
        if not slots:  # every key was dropped: {} is mutated enough
            break
        container, key = draw(st.sampled_from(slots))
        op = draw(
            st.sampled_from([*["replace"] * 2, "drop", *["add"] * 3, "deep", *["odd-text"] * 2])
        )
        if op == "replace":
            container[key] = draw(VALUES)
        elif op == "drop" and isinstance(container, dict):
            del container[key]
        elif op == "add" and isinstance(container, dict):
            container[draw(TEXT)] = draw(VALUES)
        elif op == "deep":
            container[key] = DEEP % draw(st.sampled_from([20, 120, 127, 129, 600, 3000]))
        else:
            container[key] = draw(ODD_TEXT)
    text = json.dumps(doc, ensure_ascii=draw(st.booleans()))
    for levels in (20, 120, 127, 129, 600, 3000):
        text = text.replace(json.dumps(DEEP % levels), "[" * levels + "{}" + "]" * levels)
    body = text.encode("utf-8", "surrogatepass")
    cut = draw(st.sampled_from(["none"] * 6 + ["truncate", "bad-utf8", "garbage"]))
    if cut == "truncate":
        body = body[: draw(st.integers(0, len(body)))]
    elif cut == "bad-utf8":
        at = draw(st.integers(0, len(body)))
        body = body[:at] + b"\xff\xc3(" + body[at:]
    elif cut == "garbage":
        body = draw(st.binary(max_size=64))
    return body


HEADERS = st.fixed_dictionaries(
    {},
    optional={
        "x-anyllm-timeout": st.sampled_from(["0", "-1", "abc", "nan", "inf", "1e9", "60"]),
        "x-request-id": st.sampled_from(["r-1", "x" * 300, "é", "a b", "%00"]),
        "anthropic-version": st.sampled_from(["2023-06-01", "", "é"]),
        "anthropic-beta": st.sampled_from(["tools-2024-04-04", "x,y"]),
        "content-type": st.sampled_from(["text/plain", "application/json; charset=latin-1"]),
    },
)

# --------------------------------------------------------------------------- the process


@pytest.fixture(scope="module")
def sidecar(module_upstream: Any, module_sidecar_factory: Callable[..., Any]) -> Any:
    return module_sidecar_factory(sidecar_config(module_upstream.base_url, timeout=60))


@pytest.fixture(scope="module")
def http(sidecar: Any) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sidecar.http_url, timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def channel(sidecar: Any) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(sidecar.grpc_target) as ch:
        yield ch


def check_http_answer(response: httpx.Response, stream: bool) -> None:
    assert response.status_code < 500, response.text[:500]
    assert response.content, f"empty reply with status {response.status_code}"
    if response.status_code >= 400:
        error = response.json()
        assert error["type"] == "error", error
        assert error["error"]["type"] in TYPE_STATUS, error
        assert isinstance(error["error"]["message"], str) and error["error"]["message"], error
    elif response.headers["content-type"].startswith("text/event-stream"):
        events = [line[7:] for line in response.text.splitlines() if line.startswith("event: ")]
        assert events[0] == "message_start" and events[-1] == "message_stop", events
    else:
        doc = response.json()
        assert doc.get("type") == "message" or isinstance(doc.get("input_tokens"), int), doc


@FUZZ
@given(
    body=json_requests(),
    headers=HEADERS,
    path=st.sampled_from(["/v1/messages", "/v1/messages", "/v1/messages/count_tokens"]),
    chain=st.sampled_from(["default", "native", None]),
)
def test_http_mutations(
    http: httpx.Client, body: bytes, headers: dict[str, str], path: str, chain: str | None
) -> None:
    sent = {"content-type": "application/json", **headers}
    if chain is not None:
        sent["x-anyllm-chain"] = chain
    encoded = {k: v.encode("utf-8") for k, v in sent.items()}
    response = http.post(path, content=body, headers=encoded)
    check_http_answer(response, stream=b'"stream": true' in body)


def check_openai_answer(response: httpx.Response) -> None:
    assert response.status_code < 500, response.text[:500]
    assert response.content, f"empty reply with status {response.status_code}"
    if response.status_code >= 400:
        error = response.json()["error"]
        assert isinstance(error["message"], str) and error["message"], error
        assert isinstance(error["type"], str), error
        assert {"param", "code"} <= set(error), error
    elif response.headers["content-type"].startswith("text/event-stream"):
        data = [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]
        assert data and data[-1] == "[DONE]", data[-3:]
        assert not any('"error"' in d[:12] for d in data), data
    else:
        doc = response.json()
        assert doc.get("object") == "chat.completion" and doc["choices"], doc


@FUZZ
@given(
    body=json_requests(CHAT_SEEDS),
    headers=HEADERS,
    chain=st.sampled_from(["default", "native", None]),
)
def test_openai_door_mutations(
    http: httpx.Client, body: bytes, headers: dict[str, str], chain: str | None
) -> None:
    sent = {"content-type": "application/json", **headers}
    sent.pop("anthropic-version", None)  # an OpenAI client sends none
    if chain is not None:
        sent["x-anyllm-chain"] = chain
    encoded = {k: v.encode("utf-8") for k, v in sent.items()}
    check_openai_answer(http.post("/v1/chat/completions", content=body, headers=encoded))


# --------------------------------------------------------------------------- gRPC mutations


def _grpc_seeds() -> list[spb.CreateMessageRequest]:
    text = pb.ContentBlock(text=pb.TextBlock(text="what is the weather in Paris?"))
    simple = spb.CreateMessageRequest(
        model="m", max_tokens=32, messages=[pb.InputMessage(role=pb.ROLE_USER, content=[text])]
    )
    tools = spb.CreateMessageRequest()
    tools.CopyFrom(simple)
    tool = tools.tools.add(name="get_weather", description="Weather for a city")
    dict_to_struct(WEATHER_TOOL["input_schema"], tool.input_schema)
    turn = tools.messages.add(role=pb.ROLE_ASSISTANT)
    use = turn.content.add().tool_use
    use.id, use.name = "t1", "get_weather"
    dict_to_struct({"city": "Paris"}, use.input)
    result = tools.messages.add(role=pb.ROLE_USER).content.add().tool_result
    result.tool_use_id = "t1"
    result.content.add().text.text = "sunny"
    return [simple, tools]


GRPC_SEEDS = [seed.SerializeToString() for seed in _grpc_seeds()]
F = descriptor.FieldDescriptor
_INTS = {
    F.CPPTYPE_INT32: st.integers(-(2**31), 2**31 - 1),
    F.CPPTYPE_INT64: st.integers(-(2**63), 2**63 - 1),
    F.CPPTYPE_UINT32: st.integers(0, 2**32 - 1),
    F.CPPTYPE_UINT64: st.integers(0, 2**64 - 1),
}
PROTO_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=12) | ODD_TEXT.filter(
    lambda s: s != "\ud7ff"
)


def _scalar(draw: st.DrawFn, field: descriptor.FieldDescriptor) -> Any:
    kind = field.cpp_type
    if kind in _INTS:
        return draw(_INTS[kind] | st.sampled_from([0, 1]))
    if kind in (F.CPPTYPE_DOUBLE, F.CPPTYPE_FLOAT):
        return draw(st.floats(width=32 if kind == F.CPPTYPE_FLOAT else 64))
    if kind == F.CPPTYPE_BOOL:
        return draw(st.booleans())
    if kind == F.CPPTYPE_ENUM:
        return draw(st.integers(-2, 12))  # unknown values too: proto3 enums are open
    if field.type == F.TYPE_BYTES:
        return draw(st.binary(max_size=16))
    return draw(PROTO_TEXT)


def _deep_json(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {"type": "string"}
    for _ in range(levels):
        value = {"type": "object", "properties": {"p": value}}
    return value


def _mutate(draw: st.DrawFn, message: ProtoMessage, depth: int = 0) -> None:
    if isinstance(message, struct_pb2.Struct):
        message.Clear()
        doc = draw(
            st.dictionaries(TEXT, VALUES, max_size=3) | st.builds(_deep_json, st.integers(1, 40))
        )
        dict_to_struct(doc, message)
        return
    fields = list(message.DESCRIPTOR.fields)
    if not fields:  # e.g. ThinkingDisabled {}: being set is all there is
        return
    field = draw(st.sampled_from(fields))
    value = getattr(message, field.name)
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        value_field = field.message_type.fields_by_name["value"]
        if value_field.message_type is None:
            value[draw(PROTO_TEXT)] = _scalar(draw, value_field)
    elif field.is_repeated:
        if field.message_type is None:
            value.append(_scalar(draw, field))
        elif len(value) and draw(st.booleans()):
            _mutate(draw, value[draw(st.integers(0, len(value) - 1))], depth + 1)
        elif depth < 6:
            _mutate(draw, value.add(), depth + 1)
    elif field.message_type is not None:
        if depth < 6:
            _mutate(draw, value, depth + 1)  # sets presence (and picks a oneof case)
    else:
        setattr(message, field.name, _scalar(draw, field))


@st.composite
def grpc_requests(draw: st.DrawFn) -> tuple[str, bytes]:
    method = draw(st.sampled_from(["CreateMessage", "StreamMessage", "CountTokens"]))
    request = spb.CreateMessageRequest.FromString(draw(st.sampled_from(GRPC_SEEDS)))
    for _ in range(draw(st.integers(0, 3))):
        _mutate(draw, request)
    # CountTokens too: its fields have the same numbers; the create-only ones are unknown there.
    data = request.SerializeToString()
    cut = draw(st.sampled_from(["none"] * 5 + ["truncate", "flip", "garbage"]))
    if cut == "truncate":
        data = data[: draw(st.integers(0, len(data)))]
    elif cut == "flip" and data:
        at = draw(st.integers(0, len(data) - 1))
        data = data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1 :]
    elif cut == "garbage":
        data = draw(st.binary(max_size=64))
    return method, data


ALLOWED = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND}


@FUZZ
@given(case=grpc_requests(), chain=st.sampled_from(["default", "native"]))
def test_grpc_mutations(channel: grpc.Channel, case: tuple[str, bytes], chain: str) -> None:
    method, data = case
    path = f"/anyllm.sidecar.v1.MessagesService/{method}"
    metadata = [("x-anyllm-chain", chain)]
    try:
        if method == "StreamMessage":
            events = [
                pb.StreamEvent.FromString(raw).WhichOneof("event")
                for raw in channel.unary_stream(path)(data, timeout=60, metadata=metadata)
            ]
            assert events[0] == "message_start" and events[-1] == "message_stop", events
        else:
            reply = channel.unary_unary(path)(data, timeout=60, metadata=metadata)
            assert isinstance(reply, bytes)
    except grpc.RpcError as error:
        code = error.code()  # type: ignore[attr-defined]
        assert code in ALLOWED, (code, error.details())  # type: ignore[attr-defined]
        assert error.details()  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- after all that


def test_the_process_is_still_serving_and_logged_no_error(sidecar: Any, http: httpx.Client) -> None:
    # Runs after the fuzz tests of this module (pytest keeps the file's order).
    assert http.get("/healthz").status_code == 200
    answered = http.post("/v1/messages", json=SEEDS[0])
    assert answered.status_code == 200 and answered.json()["content"]
    assert sidecar.proc.poll() is None
    bad = []
    for line in sidecar.log_lines():
        try:
            level = json.loads(line).get("level")
        except ValueError:
            level = "error" if "Traceback" in line or "Error" in line else None
        if level in ("error", "critical"):
            bad.append(line[:500])
    assert not bad, bad
