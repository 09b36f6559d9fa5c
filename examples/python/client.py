"""Call the anyllm sidecar over gRPC from Python: a unary message, a stream, metadata, errors.

Generate the stubs once from the repository's ``proto/`` (grpcio-tools bundles protoc)::

    pip install grpcio grpcio-status grpcio-tools
    python -m grpc_tools.protoc -I proto --python_out=gen --grpc_python_out=gen \\
        proto/anyllm/sidecar/v1/messages.proto proto/anyllm/sidecar/v1/messages_service.proto

and run with ``gen/`` on the path::

    PYTHONPATH=gen python examples/python/client.py --addr 127.0.0.1:50051 [--chain default]

``grpcio-status`` decodes the rich error details (``google.rpc.ErrorInfo`` / ``RetryInfo``) that
the sidecar puts in the ``grpc-status-details-bin`` trailer. ``check.py`` next to this file runs
the assertions the interop script uses.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import grpc
from anyllm.sidecar.v1 import messages_pb2 as pb
from anyllm.sidecar.v1 import messages_service_pb2 as spb
from anyllm.sidecar.v1 import messages_service_pb2_grpc as spb_grpc
from google.protobuf import struct_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

ERROR_DOMAIN = "anyllm.dev"


def connect(addr: str) -> tuple[grpc.Channel, spb_grpc.MessagesServiceStub]:
    """A plaintext channel to the sidecar (it listens on localhost inside the pod)."""
    channel = grpc.insecure_channel(addr)
    return channel, spb_grpc.MessagesServiceStub(channel)


def weather_request(prompt: str, model: str = "claude-sonnet-4-5") -> spb.CreateMessageRequest:
    """A request with a system prompt, one user turn and one tool."""
    schema = struct_pb2.Struct()
    schema.update(
        {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name"},
                "days": {"type": "integer", "minimum": 1},
            },
            "required": ["city"],
        }
    )
    return spb.CreateMessageRequest(
        model=model,
        max_tokens=256,
        system="You are a weather bot.",
        messages=[
            pb.InputMessage(
                role=pb.ROLE_USER,
                content=[pb.ContentBlock(text=pb.TextBlock(text=prompt))],
            )
        ],
        tools=[
            pb.Tool(
                name="get_weather",
                description="Get the weather forecast for a city",
                input_schema=schema,
            )
        ],
        tool_choice=pb.ToolChoice(type=pb.TOOL_CHOICE_TYPE_AUTO),
    )


def with_escape_hatch(request: spb.CreateMessageRequest) -> spb.CreateMessageRequest:
    """The escape hatch, for what the proto does not model yet: an extra top-level field
    (``extra_json``, merged into the request's JSON) and a block type the proto does not know
    (a ``raw`` block: its JSON). An Anthropic upstream gets both as they are."""
    request.extra_json = json.dumps({"speed": "fast"})
    block = {"type": "tool_reference", "tool_name": "get_weather"}
    request.messages[0].content.add(raw=pb.RawJson(type=block["type"], json=json.dumps(block)))
    return request


def describe_block(block: pb.ContentBlock) -> str:
    """One answer block: typed cases by their fields, any other by its raw JSON."""
    kind = block.WhichOneof("block")
    if kind == "text":
        return f"text: {block.text.text}"
    if kind == "server_tool_use":
        return f"server tool {block.server_tool_use.name}({dict(block.server_tool_use.input)})"
    if kind == "web_search_tool_result":
        results = block.web_search_tool_result.content.list_value.values
        return f"{len(results)} web search result(s)"
    if kind == "raw":
        return f"{block.raw.type} (not in this proto): {block.raw.json}"
    return str(kind)


def call_metadata(chain: str | None = None, request_id: str | None = None) -> list[tuple[str, str]]:
    """Metadata in: ``x-anyllm-chain`` picks a configured chain; ``x-request-id`` tags logs."""
    metadata = []
    if chain:
        metadata.append(("x-anyllm-chain", chain))
    if request_id:
        metadata.append(("x-request-id", request_id))
    return metadata


def create(
    stub: spb_grpc.MessagesServiceStub,
    request: spb.CreateMessageRequest,
    *,
    timeout: float,
    metadata: Sequence[tuple[str, str]] = (),
) -> tuple[pb.Message, dict[str, str]]:
    """CreateMessage with a deadline; returns the message and its trailing metadata.

    The deadline is the request's whole time budget inside the sidecar (every fallback attempt).
    """
    message, call = stub.CreateMessage.with_call(request, timeout=timeout, metadata=metadata)
    return message, dict(call.trailing_metadata() or ())


def stream(
    stub: spb_grpc.MessagesServiceStub,
    request: spb.CreateMessageRequest,
    *,
    timeout: float,
    metadata: Sequence[tuple[str, str]] = (),
    on_event: Callable[[pb.StreamEvent], bool] | None = None,
) -> tuple[list[pb.StreamEvent], dict[str, str]]:
    """StreamMessage: print text as it arrives; returns the events and the initial metadata.

    ``on_event`` may return False to stop early: the call is then cancelled, and the sidecar
    cancels its upstream request at once.
    """
    call = stub.StreamMessage(request, timeout=timeout, metadata=metadata)
    events: list[pb.StreamEvent] = []
    headers: dict[str, str] = {}
    for event in call:
        if not headers:  # sent with the first event, once the answer has started
            headers = dict(call.initial_metadata() or ())
        events.append(event)
        if event.WhichOneof("event") == "content_block_delta":
            delta = event.content_block_delta
            if delta.WhichOneof("delta") == "text_delta":
                print(delta.text_delta, end="", flush=True)
        if on_event is not None and not on_event(event):
            call.cancel()
            break
    return events, headers


@dataclass
class SidecarError:
    """What a failed call tells: the status, the sidecar's ErrorInfo and RetryInfo, the trailers."""

    code: grpc.StatusCode
    message: str
    reason: str = ""  # e.g. "FALLBACK_EXHAUSTED", "UPSTREAM_HTTP_400"
    domain: str = ""  # "anyllm.dev"
    info: dict[str, str] = field(default_factory=dict)  # error_type, backend, attempts, ...
    retry_delay: float | None = None  # seconds, when the sidecar knows how long to wait
    trailers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_rpc_error(cls, error: grpc.RpcError) -> SidecarError:
        call: grpc.Call = error  # type: ignore[assignment]  # a failed call is both
        trailers = {
            k: v for k, v in (call.trailing_metadata() or ()) if isinstance(v, str)
        }  # grpc-status-details-bin (bytes) is decoded below
        result = cls(code=call.code(), message=call.details() or "", trailers=trailers)
        status = rpc_status.from_call(call)  # None when there are no details
        for detail in status.details if status is not None else ():
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                result.reason, result.domain = info.reason, info.domain
                result.info = dict(info.metadata)
            elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                retry = error_details_pb2.RetryInfo()
                detail.Unpack(retry)
                result.retry_delay = retry.retry_delay.ToTimedelta().total_seconds()
        return result

    def __str__(self) -> str:
        text = f"{self.code.name}: {self.message} reason={self.reason} info={self.info}"
        if self.retry_delay is not None:
            text += f" retry_after={self.retry_delay}s"
        return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--addr", default="127.0.0.1:50051")
    parser.add_argument("--chain", default=None, help="x-anyllm-chain (default: routed by model)")
    parser.add_argument("--prompt", default="What's the weather in Paris?")
    args = parser.parse_args(argv)

    channel, stub = connect(args.addr)
    request = weather_request(args.prompt)
    metadata = call_metadata(args.chain, request_id="example-python-1")
    try:
        message, trailers = create(stub, request, timeout=30, metadata=metadata)
        print(f"unary: backend={trailers.get('x-anyllm-backend')} stop={message.stop_reason}")
        for block in message.content:
            kind = block.WhichOneof("block")
            if kind == "text":
                print("  text:", block.text.text)
            elif kind == "tool_use":
                # Struct → dict; numbers come back as floats (JSON has only one number type).
                args_ = dict(block.tool_use.input)
                print(f"  tool_use: {block.tool_use.name}({args_}) id={block.tool_use.id}")

        print("stream: ", end="")
        _, headers = stream(stub, request, timeout=30, metadata=metadata)
        print(f"\n  (answered by {headers.get('x-anyllm-backend')})")
    except grpc.RpcError as exc:
        error = SidecarError.from_rpc_error(exc)
        print("error:", error, file=sys.stderr)
        if error.retry_delay is not None:
            print(f"  the sidecar suggests retrying after {error.retry_delay}s", file=sys.stderr)
        if error.trailers.get("x-anyllm-fallback-exhausted") == "true":
            print("  every backend of the chain failed", file=sys.stderr)
        return 1
    finally:
        channel.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
