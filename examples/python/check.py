"""Interop checks for the Python example (run by ``scripts/interop.sh``; see examples/README.md).

    PYTHONPATH=GEN:examples/python python examples/python/check.py --addr HOST:PORT NAME...

Each NAME is one check; the script scripts the fake upstream before each one (the expected
upstream behaviour is in the docstring of each function). Prints ``PASS``/``FAIL`` lines and a
closing ``N passed, N failed`` line; exits 1 when anything failed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable

import grpc
from anyllm.sidecar.v1 import messages_pb2 as pb
from anyllm.sidecar.v1 import messages_service_pb2 as spb
from anyllm.sidecar.v1 import messages_service_pb2_grpc as spb_grpc
from client import (
    ERROR_DOMAIN,
    SidecarError,
    call_metadata,
    connect,
    create,
    describe_block,
    weather_request,
    with_escape_hatch,
)

LANG = "python"
PROMPT = f"hello from {LANG}"
ECHO = f"echo: {PROMPT}"

_counts = {"passed": 0, "failed": 0}


def check(name: str, ok: bool, detail: object = "") -> None:
    _counts["passed" if ok else "failed"] += 1
    print(f"{'PASS' if ok else 'FAIL'} {LANG} {name} -- {detail}", flush=True)


def _error_of(fn: Callable[[], object]) -> SidecarError | None:
    try:
        fn()
    except grpc.RpcError as exc:
        return SidecarError.from_rpc_error(exc)
    return None


def check_unary(stub: spb_grpc.MessagesServiceStub) -> None:
    """Upstream: default answer. System prompt + tool, chain and request id in, backend out."""
    md = call_metadata("default", request_id=f"interop-{LANG}-unary")
    message, trailers = create(stub, weather_request(PROMPT), timeout=10, metadata=md)
    text = message.content[0].text.text if message.content else ""
    check("unary text", text == ECHO, repr(text))
    check(
        "unary fields",
        message.role == pb.ROLE_ASSISTANT
        and message.stop_reason == pb.STOP_REASON_END_TURN
        and message.usage.output_tokens > 0
        and message.id != "",
        f"role={message.role} stop={message.stop_reason} usage={message.usage.output_tokens}",
    )
    check(
        "unary metadata",
        trailers.get("x-anyllm-backend") == "primary"
        and trailers.get("x-request-id") == f"interop-{LANG}-unary",
        trailers,
    )


def check_tools(stub: spb_grpc.MessagesServiceStub) -> None:
    """Upstream: a get_weather tool call with {"city": "Paris", "days": 3}."""
    message, _ = create(stub, weather_request(PROMPT), timeout=10)
    uses = [b.tool_use for b in message.content if b.WhichOneof("block") == "tool_use"]
    ok = (
        message.stop_reason == pb.STOP_REASON_TOOL_USE
        and len(uses) == 1
        and uses[0].name == "get_weather"
        and uses[0].id != ""
        and uses[0].input["city"] == "Paris"
        and uses[0].input["days"] == 3
    )
    check("tool_use block", ok, f"stop={message.stop_reason} uses={[dict(u.input) for u in uses]}")


def check_fallback(stub: spb_grpc.MessagesServiceStub) -> None:
    """Upstream: one 503. The primary fails, the secondary answers."""
    message, trailers = create(stub, weather_request(PROMPT), timeout=10)
    check(
        "fallback",
        trailers.get("x-anyllm-backend") == "secondary"
        and trailers.get("x-anyllm-attempts") == "2"
        and message.content[0].text.text == ECHO,
        trailers,
    )


def check_stream(stub: spb_grpc.MessagesServiceStub) -> None:
    """Upstream: default answer, streamed word by word."""
    md = call_metadata("default")
    call = stub.StreamMessage(weather_request(PROMPT), timeout=10, metadata=md)
    kinds, text = [], ""
    for event in call:
        kind = event.WhichOneof("event")
        kinds.append(kind)
        if kind == "content_block_delta" and event.content_block_delta.HasField("text_delta"):
            text += event.content_block_delta.text_delta
    headers = dict(call.initial_metadata() or ())
    check("stream text", text == ECHO, repr(text))
    check(
        "stream order",
        len(kinds) >= 4
        and kinds[0] == "message_start"
        and kinds[-1] == "message_stop"
        and kinds.index("content_block_start") < kinds.index("content_block_delta")
        and "message_delta" in kinds,
        kinds,
    )
    check(
        "stream metadata",
        call.code() == grpc.StatusCode.OK and headers.get("x-anyllm-backend") == "primary",
        headers,
    )


def check_deadline(stub: spb_grpc.MessagesServiceStub) -> None:
    """Upstream: waits 5 s before answering. The 1 s deadline passes first."""
    started = time.monotonic()
    error = _error_of(lambda: create(stub, weather_request(PROMPT), timeout=1.0))
    elapsed = time.monotonic() - started
    check(
        "deadline",
        error is not None and error.code == grpc.StatusCode.DEADLINE_EXCEEDED and elapsed < 3.0,
        f"after {elapsed:.2f}s: {error}",
    )


def check_invalid(stub: spb_grpc.MessagesServiceStub) -> None:
    """Upstream: 400 {"error": {"message": "bad", "type": "invalid_request_error"}}."""
    error = _error_of(lambda: create(stub, weather_request(PROMPT), timeout=10))
    check(
        "invalid code", error is not None and error.code == grpc.StatusCode.INVALID_ARGUMENT, error
    )
    check(
        "invalid details",
        error is not None
        and error.domain == ERROR_DOMAIN
        and error.reason == "UPSTREAM_HTTP_400"
        and error.info.get("error_type") == "invalid_request_error"
        and error.trailers.get("x-anyllm-attempts") == "1"
        and "x-anyllm-fallback-exhausted" not in error.trailers,
        error and (error.info, error.trailers),
    )


def check_exhausted(stub: spb_grpc.MessagesServiceStub) -> None:
    """Upstream: 503 with retry-after: 2, twice. Both targets of the default chain fail."""
    error = _error_of(lambda: create(stub, weather_request(PROMPT), timeout=10))
    check("exhausted code", error is not None and error.code == grpc.StatusCode.UNAVAILABLE, error)
    check(
        "exhausted details",
        error is not None
        and error.reason == "FALLBACK_EXHAUSTED"
        and error.domain == ERROR_DOMAIN
        and error.trailers.get("x-anyllm-fallback-exhausted") == "true"
        and error.trailers.get("x-anyllm-attempts") == "2"
        and error.retry_delay == 2.0,
        error and (error.info, error.retry_delay, error.trailers),
    )


def check_chain(stub: spb_grpc.MessagesServiceStub) -> None:
    """Upstream: one 503. x-anyllm-chain only-primary has no second target to fall back to."""
    md = call_metadata("only-primary")
    error = _error_of(lambda: create(stub, weather_request(PROMPT), timeout=10, metadata=md))
    check(
        "chain metadata",
        error is not None
        and error.code == grpc.StatusCode.UNAVAILABLE
        and error.trailers.get("x-anyllm-chain") == "only-primary"
        and error.trailers.get("x-anyllm-attempts") == "1"
        and error.trailers.get("x-anyllm-fallback-exhausted") == "true",
        error and error.trailers,
    )


def check_cancel(stub: spb_grpc.MessagesServiceStub) -> None:
    """Upstream: sends 3 stream events, then stalls. The client cancels after the first text."""
    call = stub.StreamMessage(weather_request(PROMPT), timeout=10)
    got_text = False
    for event in call:
        if event.WhichOneof("event") == "content_block_delta":
            got_text = True
            call.cancel()
            break
    check("cancel", got_text and call.code() == grpc.StatusCode.CANCELLED, call.code())


def check_count(stub: spb_grpc.MessagesServiceStub) -> None:
    """Upstream: not called for an OpenAI-kind backend (the sidecar estimates)."""
    r = weather_request(PROMPT)
    request = spb.CountTokensRequest(
        model=r.model,
        messages=r.messages,
        system=r.system,
        tools=r.tools,
        tool_choice=r.tool_choice,
    )
    md = call_metadata("default")
    count, call = stub.CountTokens.with_call(request, timeout=10, metadata=md)
    trailers = dict(call.trailing_metadata() or ())
    check(
        "count tokens",
        count.input_tokens > 0 and trailers.get("x-anyllm-backend") == "primary",
        f"input_tokens={count.input_tokens} estimated={count.estimated} {trailers}",
    )


def check_servertools(stub: spb_grpc.MessagesServiceStub) -> None:
    """Upstream (Anthropic protocol): server_tool_use, web_search_tool_result, a `future_block`,
    text; stop reason model_context_window_exceeded. Sent: the escape hatch (extra + raw block)."""
    request = with_escape_hatch(weather_request(PROMPT))
    message, trailers = create(stub, request, timeout=10, metadata=call_metadata("native"))
    kinds = [b.WhichOneof("block") for b in message.content]
    check(
        "server tool blocks typed",
        kinds == ["server_tool_use", "web_search_tool_result", "raw", "text"]
        and message.content[0].server_tool_use.name == "web_search"
        and message.content[1].web_search_tool_result.tool_use_id == "srvtoolu_1"
        and message.usage.server_tool_use.web_search_requests == 1,
        [describe_block(b) for b in message.content],
    )
    raw = json.loads(message.content[2].raw.json) if kinds[2:3] == ["raw"] else {}
    check("unknown block as raw JSON", raw == {"type": "future_block", "answer": 42}, raw)
    check(
        "new stop reason",
        message.stop_reason == pb.STOP_REASON_MODEL_CONTEXT_WINDOW_EXCEEDED
        and message.raw_stop_reason == "model_context_window_exceeded"
        and trailers.get("x-anyllm-backend") == "native",
        f"{message.stop_reason} {message.raw_stop_reason!r} {trailers.get('x-anyllm-backend')}",
    )


CHECKS = {
    "unary": check_unary,
    "tools": check_tools,
    "fallback": check_fallback,
    "stream": check_stream,
    "deadline": check_deadline,
    "invalid": check_invalid,
    "exhausted": check_exhausted,
    "chain": check_chain,
    "cancel": check_cancel,
    "count": check_count,
    "servertools": check_servertools,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--addr", required=True)
    parser.add_argument("names", nargs="+", choices=sorted(CHECKS))
    args = parser.parse_args()
    channel, stub = connect(args.addr)
    with channel:
        # Connected before the first check, so that a deadline measures the sidecar, not the dial.
        try:
            grpc.channel_ready_future(channel).result(timeout=10)
        except grpc.FutureTimeoutError:
            check("connect", False, args.addr)
        for name in args.names:
            try:
                CHECKS[name](stub)
            except Exception as exc:  # an unexpected error is a failed check, not a crash
                check(name, False, f"{type(exc).__name__}: {exc}")
    print(f"{_counts['passed']} passed, {_counts['failed']} failed")
    return 1 if _counts["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
