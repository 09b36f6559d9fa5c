"""Tables for sidecar.grpc_api.convert (and its inverse, sidecar.grpc_api.reverse)."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from google.protobuf import struct_pb2

from sidecar import model as m
from sidecar.errors import InvalidRequestError
from sidecar.grpc_api.convert import (
    count_tokens_request_from_proto,
    dict_to_struct,
    event_to_proto,
    message_to_proto,
    messages_request_from_proto,
    struct_to_dict,
    token_count_to_proto,
)
from sidecar.grpc_api.gen.anyllm.sidecar.v1 import messages_pb2 as pb
from sidecar.grpc_api.gen.anyllm.sidecar.v1 import messages_service_pb2 as spb
from sidecar.grpc_api.reverse import (
    count_tokens_request_to_proto,
    event_from_proto,
    message_from_proto,
    messages_request_to_proto,
)


def _struct(data: dict[str, Any]) -> struct_pb2.Struct:
    return dict_to_struct(data)


def _user(*blocks: pb.ContentBlock) -> pb.InputMessage:
    return pb.InputMessage(role=pb.ROLE_USER, content=list(blocks))


def _text(text: str) -> pb.ContentBlock:
    return pb.ContentBlock(text=pb.TextBlock(text=text))


def _request(**fields: Any) -> spb.CreateMessageRequest:
    base: dict[str, Any] = {"model": "m", "max_tokens": 16, "messages": [_user(_text("hi"))]}
    base.update(fields)
    return spb.CreateMessageRequest(**base)


EPHEMERAL = pb.CacheControl(type="ephemeral")
PNG = pb.Base64Source(media_type="image/png", data="iVBORw0KGgo=")

# ----------------------------------------------------------------------------- requests

REQUESTS = {
    "minimal": _request(),
    "every_block": _request(
        messages=[
            _user(
                pb.ContentBlock(
                    text=pb.TextBlock(
                        text="t", cache_control=pb.CacheControl(type="ephemeral", ttl="1h")
                    )
                ),
                pb.ContentBlock(image=pb.ImageBlock(source=pb.ImageSource(base64=PNG))),
                pb.ContentBlock(
                    image=pb.ImageBlock(
                        source=pb.ImageSource(url=pb.UrlSource(url="https://x/i.png")),
                        cache_control=EPHEMERAL,
                    )
                ),
                pb.ContentBlock(
                    image=pb.ImageBlock(source=pb.ImageSource(file=pb.FileSource(file_id="f1")))
                ),
                pb.ContentBlock(
                    document=pb.DocumentBlock(
                        source=pb.DocumentSource(
                            text=pb.PlainTextSource(data="doc", media_type="text/plain")
                        ),
                        title="T",
                        context="C",
                        citations=pb.CitationsConfig(enabled=True),
                    )
                ),
                pb.ContentBlock(
                    document=pb.DocumentBlock(
                        source=pb.DocumentSource(
                            content=pb.ContentSource(
                                content=[
                                    pb.ContentSourceBlock(text=pb.TextBlock(text="a")),
                                    pb.ContentSourceBlock(
                                        image=pb.ImageBlock(source=pb.ImageSource(base64=PNG))
                                    ),
                                ]
                            )
                        )
                    )
                ),
                pb.ContentBlock(
                    document=pb.DocumentBlock(
                        source=pb.DocumentSource(
                            base64=pb.Base64Source(media_type="application/pdf", data="JVBE")
                        )
                    )
                ),
            ),
            pb.InputMessage(
                role=pb.ROLE_ASSISTANT,
                content=[
                    pb.ContentBlock(thinking=pb.ThinkingBlock(thinking="hmm", signature="sig")),
                    pb.ContentBlock(redacted_thinking=pb.RedactedThinkingBlock(data="xyz")),
                    pb.ContentBlock(
                        tool_use=pb.ToolUseBlock(
                            id="toolu_1",
                            name="get",
                            input=_struct(
                                {"city": "Oslo", "n": 3, "x": 1.5, "ok": True, "l": [1, None]}
                            ),
                        )
                    ),
                ],
            ),
            _user(
                pb.ContentBlock(
                    tool_result=pb.ToolResultBlock(
                        tool_use_id="toolu_1",
                        is_error=False,
                        content=[
                            pb.ToolResultContent(text=pb.TextBlock(text="sunny")),
                            pb.ToolResultContent(
                                image=pb.ImageBlock(source=pb.ImageSource(base64=PNG))
                            ),
                            pb.ToolResultContent(
                                document=pb.DocumentBlock(
                                    source=pb.DocumentSource(
                                        url=pb.UrlSource(url="https://x/d.pdf")
                                    )
                                )
                            ),
                        ],
                        cache_control=EPHEMERAL,
                    )
                ),
                pb.ContentBlock(tool_result=pb.ToolResultBlock(tool_use_id="toolu_2")),
            ),
        ]
    ),
    "sampling_and_metadata": _request(
        temperature=0.0,
        top_p=0.9,
        top_k=40,
        stop_sequences=["END", "STOP"],
        metadata=pb.RequestMetadata(user_id="u-1"),
    ),
    "system_string": _request(system="be brief"),
    "system_blocks": _request(
        system_blocks=[pb.TextBlock(text="a"), pb.TextBlock(text="b", cache_control=EPHEMERAL)]
    ),
    "tools_auto": _request(
        tools=[
            pb.Tool(
                name="get",
                description="Get it",
                input_schema=_struct(
                    {"type": "object", "properties": {"city": {"type": "string"}}}
                ),
                cache_control=EPHEMERAL,
            ),
            pb.Tool(name="web_search", type="web_search_20250305"),
        ],
        tool_choice=pb.ToolChoice(type=pb.TOOL_CHOICE_TYPE_AUTO, disable_parallel_tool_use=True),
    ),
    "tool_choice_tool": _request(
        tool_choice=pb.ToolChoice(type=pb.TOOL_CHOICE_TYPE_TOOL, name="get")
    ),
    "tool_choice_any": _request(tool_choice=pb.ToolChoice(type=pb.TOOL_CHOICE_TYPE_ANY)),
    "tool_choice_none": _request(tool_choice=pb.ToolChoice(type=pb.TOOL_CHOICE_TYPE_NONE)),
    "thinking_enabled": _request(
        thinking=pb.ThinkingConfig(enabled=pb.ThinkingEnabled(budget_tokens=2048))
    ),
    "thinking_disabled": _request(thinking=pb.ThinkingConfig(disabled=pb.ThinkingDisabled())),
}


@pytest.mark.parametrize("proto", REQUESTS.values(), ids=REQUESTS.keys())
def test_request_round_trip(proto: spb.CreateMessageRequest) -> None:
    request = messages_request_from_proto(proto)
    assert messages_request_to_proto(request) == proto
    # ... and the model value encodes as valid Anthropic JSON that decodes to the same value.
    assert m.request_decoder.decode(m.json_encoder.encode(request)) == request


@pytest.mark.parametrize("proto", REQUESTS.values(), ids=REQUESTS.keys())
def test_count_tokens_round_trip(proto: spb.CreateMessageRequest) -> None:
    # Same field numbers: an encoded CreateMessageRequest decodes as a CountTokensRequest.
    count_proto = spb.CountTokensRequest.FromString(proto.SerializeToString())
    count_proto.DiscardUnknownFields()  # max_tokens, temperature...
    request = count_tokens_request_from_proto(count_proto)
    assert count_tokens_request_to_proto(request) == count_proto
    assert request.model == proto.model


# The gRPC request and the Anthropic JSON body it stands for decode to the same model value.
SAME_AS_JSON = {
    "text": (
        _request(system="s", stop_sequences=["x"]),
        {
            "model": "m",
            "max_tokens": 16,
            "system": "s",
            "stop_sequences": ["x"],
            "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
        },
    ),
    "tool_use": (
        _request(
            messages=[
                pb.InputMessage(
                    role=pb.ROLE_ASSISTANT,
                    content=[
                        pb.ContentBlock(
                            tool_use=pb.ToolUseBlock(
                                id="t1", name="f", input=_struct({"a": [1, 2]})
                            )
                        )
                    ],
                )
            ],
            tool_choice=pb.ToolChoice(type=pb.TOOL_CHOICE_TYPE_TOOL, name="f"),
        ),
        {
            "model": "m",
            "max_tokens": 16,
            "tool_choice": {"type": "tool", "name": "f"},
            "messages": [
                {
                    "role": "assistant",
                    "content": [
                        {"type": "tool_use", "id": "t1", "name": "f", "input": {"a": [1, 2]}}
                    ],
                }
            ],
        },
    ),
    "document_text_default_media_type": (
        _request(
            messages=[
                _user(
                    pb.ContentBlock(
                        document=pb.DocumentBlock(
                            source=pb.DocumentSource(text=pb.PlainTextSource(data="d"))
                        )
                    )
                )
            ]
        ),
        {
            "model": "m",
            "max_tokens": 16,
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "document", "source": {"type": "text", "data": "d"}}],
                }
            ],
        },
    ),
}


@pytest.mark.parametrize(("proto", "body"), SAME_AS_JSON.values(), ids=SAME_AS_JSON.keys())
def test_request_matches_json(proto: spb.CreateMessageRequest, body: dict[str, Any]) -> None:
    expected = m.request_decoder.decode(msgspec.json.encode(body))
    assert messages_request_from_proto(proto) == expected


def test_stream_flag() -> None:
    assert messages_request_from_proto(_request(), stream=True).stream is True
    assert messages_request_from_proto(_request()).stream is None


# ----------------------------------------------------------------------------- validation

EMPTY_BLOCK = pb.ContentBlock()
INVALID = {
    "no_model": (_request(model=""), "model"),
    "no_max_tokens": (_request(max_tokens=0), "max_tokens"),
    "no_messages": (_request(messages=[]), "messages"),
    "role_unspecified": (
        _request(messages=[pb.InputMessage(content=[_text("x")])]),
        "messages[0].role",
    ),
    "role_unknown": (
        _request(messages=[pb.InputMessage(role=7, content=[_text("x")])]),  # type: ignore[arg-type]
        "messages[0].role",
    ),
    "block_no_oneof": (
        _request(messages=[_user(_text("a"), EMPTY_BLOCK)]),
        "messages[0].content[1]",
    ),
    "tool_use_no_id": (
        _request(messages=[_user(pb.ContentBlock(tool_use=pb.ToolUseBlock(name="f")))]),
        "messages[0].content[0].tool_use.id",
    ),
    "tool_use_no_name": (
        _request(messages=[_user(pb.ContentBlock(tool_use=pb.ToolUseBlock(id="t")))]),
        "messages[0].content[0].tool_use.name",
    ),
    "tool_result_no_id": (
        _request(messages=[_user(pb.ContentBlock(tool_result=pb.ToolResultBlock()))]),
        "messages[0].content[0].tool_result.tool_use_id",
    ),
    "tool_result_item_no_oneof": (
        _request(
            messages=[
                _user(
                    pb.ContentBlock(
                        tool_result=pb.ToolResultBlock(
                            tool_use_id="t", content=[pb.ToolResultContent()]
                        )
                    )
                )
            ]
        ),
        "messages[0].content[0].tool_result.content[0]",
    ),
    "image_no_source": (
        _request(messages=[_user(pb.ContentBlock(image=pb.ImageBlock()))]),
        "messages[0].content[0].image.source",
    ),
    "image_base64_no_media_type": (
        _request(
            messages=[
                _user(
                    pb.ContentBlock(
                        image=pb.ImageBlock(source=pb.ImageSource(base64=pb.Base64Source(data="x")))
                    )
                )
            ]
        ),
        "messages[0].content[0].image.source.base64.media_type",
    ),
    "document_no_source": (
        _request(messages=[_user(pb.ContentBlock(document=pb.DocumentBlock()))]),
        "messages[0].content[0].document.source",
    ),
    "document_url_empty": (
        _request(
            messages=[
                _user(
                    pb.ContentBlock(
                        document=pb.DocumentBlock(source=pb.DocumentSource(url=pb.UrlSource()))
                    )
                )
            ]
        ),
        "messages[0].content[0].document.source.url.url",
    ),
    "content_source_item_no_oneof": (
        _request(
            messages=[
                _user(
                    pb.ContentBlock(
                        document=pb.DocumentBlock(
                            source=pb.DocumentSource(
                                content=pb.ContentSource(content=[pb.ContentSourceBlock()])
                            )
                        )
                    )
                )
            ]
        ),
        "messages[0].content[0].document.source.content.content[0]",
    ),
    "system_both": (_request(system="a", system_blocks=[pb.TextBlock(text="b")]), "system"),
    "tool_no_name": (_request(tools=[pb.Tool(type="web_search_20250305")]), "tools[0].name"),
    "tool_choice_unspecified": (_request(tool_choice=pb.ToolChoice()), "tool_choice.type"),
    "tool_choice_tool_no_name": (
        _request(tool_choice=pb.ToolChoice(type=pb.TOOL_CHOICE_TYPE_TOOL)),
        "tool_choice.name",
    ),
    "thinking_no_oneof": (_request(thinking=pb.ThinkingConfig()), "thinking"),
}


@pytest.mark.parametrize(("proto", "field"), INVALID.values(), ids=INVALID.keys())
def test_invalid_request_names_field(proto: spb.CreateMessageRequest, field: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        messages_request_from_proto(proto)
    assert caught.value.field == field
    assert caught.value.message.startswith(f"{field}: ")


def test_count_tokens_invalid() -> None:
    with pytest.raises(InvalidRequestError) as caught:
        count_tokens_request_from_proto(spb.CountTokensRequest(model="m"))
    assert caught.value.field == "messages"


# ----------------------------------------------------------------------------- responses

MESSAGE = m.Message(
    id="msg_1",
    model="m",
    content=[
        m.TextBlock(text="hello", citations=[{"type": "char_location", "start_char_index": 0}]),
        m.ThinkingBlock(thinking="t", signature="s"),
        m.RedactedThinkingBlock(data="r"),
        m.ToolUseBlock(id="toolu_1", name="f", input={"q": "x", "n": 2, "nested": {"a": [True]}}),
    ],
    stop_reason="tool_use",
    usage=m.Usage(input_tokens=10, output_tokens=5, cache_read_input_tokens=0),
)
MESSAGES = {
    "full": MESSAGE,
    "stop_sequence": m.Message(
        id="msg_2",
        model="m",
        content=[m.TextBlock(text="a")],
        stop_reason="stop_sequence",
        stop_sequence="END",
        usage=m.Usage(input_tokens=1, output_tokens=1, cache_creation_input_tokens=7),
    ),
    "started": m.Message(id="msg_3", model="m", content=[]),
    "empty_tool_input": m.Message(
        id="msg_4", model="m", content=[m.ToolUseBlock(id="t", name="f", input={})]
    ),
}


@pytest.mark.parametrize("message", MESSAGES.values(), ids=MESSAGES.keys())
def test_message_round_trip(message: m.Message) -> None:
    proto = message_to_proto(message)
    assert proto.role == pb.ROLE_ASSISTANT
    assert message_from_proto(proto) == message
    assert message_to_proto(message_from_proto(proto)) == proto


def test_message_fields() -> None:
    proto = message_to_proto(MESSAGE)
    assert proto.stop_reason == pb.STOP_REASON_TOOL_USE
    assert proto.content[3].tool_use.input["n"] == 2
    assert proto.usage.HasField("cache_read_input_tokens")
    assert not proto.usage.HasField("cache_creation_input_tokens")


EVENTS: dict[str, m.StreamEvent] = {
    "message_start": m.MessageStart(message=m.Message(id="msg", model="m", content=[])),
    "text_start": m.ContentBlockStart(index=0, content_block=m.TextBlock(text="")),
    "tool_start": m.ContentBlockStart(
        index=1, content_block=m.ToolUseBlock(id="t", name="f", input={})
    ),
    "text_delta": m.ContentBlockDelta(index=0, delta=m.TextDelta(text="Hel")),
    "empty_text_delta": m.ContentBlockDelta(index=0, delta=m.TextDelta(text="")),
    "input_json_delta": m.ContentBlockDelta(index=1, delta=m.InputJsonDelta(partial_json='{"a')),
    "thinking_delta": m.ContentBlockDelta(index=0, delta=m.ThinkingDelta(thinking="hm")),
    "signature_delta": m.ContentBlockDelta(index=0, delta=m.SignatureDelta(signature="sig")),
    "citations_delta": m.ContentBlockDelta(
        index=0, delta=m.CitationsDelta(citation={"type": "char_location", "cited_text": "x"})
    ),
    "block_stop": m.ContentBlockStop(index=1),
    "message_delta": m.MessageDelta(
        delta=m.MessageDeltaBody(stop_reason="end_turn"),
        usage=m.MessageDeltaUsage(output_tokens=12),
    ),
    "message_delta_full": m.MessageDelta(
        delta=m.MessageDeltaBody(stop_reason="stop_sequence", stop_sequence="END"),
        usage=m.MessageDeltaUsage(
            output_tokens=1,
            input_tokens=2,
            cache_creation_input_tokens=3,
            cache_read_input_tokens=0,
        ),
    ),
    "message_stop": m.MessageStop(),
    "ping": m.Ping(),
    "error": m.ErrorEvent(error=m.ErrorBody(type="overloaded_error", message="busy")),
}


@pytest.mark.parametrize("event", EVENTS.values(), ids=EVENTS.keys())
def test_event_round_trip(event: m.StreamEvent) -> None:
    proto = event_to_proto(event)
    assert proto.WhichOneof("event") == type(event).__struct_config__.tag
    assert event_from_proto(proto) == event
    assert event_to_proto(event_from_proto(proto)) == proto


def test_delta_case_is_the_json_delta_type() -> None:
    for event in EVENTS.values():
        if isinstance(event, m.ContentBlockDelta):
            proto = event_to_proto(event).content_block_delta
            assert proto.WhichOneof("delta") == type(event.delta).__struct_config__.tag


def test_token_count() -> None:
    proto = token_count_to_proto(m.TokenCount(input_tokens=42, estimated=True))
    assert (proto.input_tokens, proto.estimated) == (42, True)


# ----------------------------------------------------------------------------- Struct

STRUCTS = {
    "empty": {},
    "scalars": {"s": "x", "i": 3, "f": 2.5, "t": True, "n": None},
    "nested": {"o": {"l": [1, "a", {"b": []}]}},
    "big_int_stays_float": {"x": 2.0**60},
    "negative": {"x": -7},
}


@pytest.mark.parametrize("data", STRUCTS.values(), ids=STRUCTS.keys())
def test_struct_round_trip(data: dict[str, Any]) -> None:
    back = struct_to_dict(dict_to_struct(data))
    assert back == data
    # Integers stay integers (Struct numbers are doubles); key order is not kept by a Struct.
    assert msgspec.json.encode(back, order="sorted") == msgspec.json.encode(data, order="sorted")
