"""The built-in ``demo`` backend: local, deterministic answers, so the sidecar works with no keys.

It answers with a fixed sentence that quotes the last user text, streamed a few words per
event. When the request offers tools and the last user turn is not a tool result, it calls
the first tool instead, with an input built from that tool's schema (required string fields
get "demo", numbers 1, booleans true), which is enough to walk a client through a tool round
trip. Nothing leaves the process.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator
from typing import Any

from sidecar.model import (
    Call,
    ContentBlockDelta,
    ContentBlockStart,
    ContentBlockStop,
    CountCall,
    InputJsonDelta,
    Message,
    MessageDelta,
    MessageDeltaBody,
    MessageDeltaUsage,
    MessagesRequest,
    MessageStart,
    MessageStop,
    StreamEvent,
    StreamItem,
    TextBlock,
    TextDelta,
    TokenCount,
    ToolResultBlock,
    ToolUseBlock,
    Usage,
)
from sidecar.translate.tokens import estimate_input_tokens

from .openai import new_message_id
from .settings import DemoSettings

_SAMPLE = {"string": "demo", "integer": 1, "number": 1, "boolean": True, "array": [], "object": {}}


def _last_user_text(request: MessagesRequest) -> str:
    for message in reversed(request.messages):
        if message.role != "user":
            continue
        if isinstance(message.content, str):
            return message.content
        texts = [b.text for b in message.content if isinstance(b, TextBlock)]
        if texts:
            return " ".join(texts)
    return ""


def _wants_tool(request: MessagesRequest) -> bool:
    if not request.tools or request.tools[0].input_schema is None:
        return False
    if request.tool_choice is not None and request.tool_choice.__struct_config__.tag == "none":
        return False
    last = request.messages[-1]
    return not (
        isinstance(last.content, list)
        and any(isinstance(block, ToolResultBlock) for block in last.content)
    )


def _sample_input(schema: dict[str, Any]) -> dict[str, Any]:
    properties = schema.get("properties") or {}
    return {
        name: _SAMPLE.get(str((properties.get(name) or {}).get("type")), "demo")
        for name in schema.get("required") or []
    }


def _answer(request: MessagesRequest) -> tuple[TextBlock | ToolUseBlock, str]:
    if _wants_tool(request):
        assert request.tools is not None
        tool = request.tools[0]
        block_id = "toolu_demo" + str(len(request.messages))
        sample = _sample_input(tool.input_schema or {})
        return ToolUseBlock(id=block_id, name=tool.name, input=sample), "tool_use"
    said = _last_user_text(request).strip() or "nothing"
    text = (
        f"This is the anyllm-sidecar demo backend: no real upstream is configured. You said: {said}"
    )
    return TextBlock(text=text), "end_turn"


class DemoBackend:
    kind = "demo"

    def __init__(self, name: str, config: DemoSettings) -> None:
        self.name = name

    async def create(
        self, call: Call, model: str, notes: list[str], *, connect_timeout: float = 0.0
    ) -> Message:
        block, stop = _answer(call.request)
        output = len(block.text.split()) if isinstance(block, TextBlock) else 8
        return Message(
            id=new_message_id(),
            model=call.request.model,
            content=[block],
            stop_reason="tool_use" if stop == "tool_use" else "end_turn",
            usage=Usage(input_tokens=estimate_input_tokens(call.request), output_tokens=output),
        )

    async def stream(
        self, call: Call, model: str, notes: list[str], *, connect_timeout: float = 0.0
    ) -> AsyncGenerator[list[StreamItem], None]:
        message = await self.create(call, model, notes)
        block = message.content[0]
        start = MessageStart(
            message=Message(
                id=message.id,
                model=message.model,
                content=[],
                usage=Usage(input_tokens=message.usage.input_tokens, output_tokens=1),
            )
        )
        opened: TextBlock | ToolUseBlock
        if isinstance(block, ToolUseBlock):
            opened = ToolUseBlock(id=block.id, name=block.name, input={})
            arguments = json.dumps(block.input)
            deltas: list[StreamEvent] = [
                ContentBlockDelta(index=0, delta=InputJsonDelta(partial_json=arguments[i : i + 12]))
                for i in range(0, len(arguments), 12)
            ]
        else:
            assert isinstance(block, TextBlock)
            opened, words = TextBlock(text=""), block.text.split(" ")
            deltas = [
                ContentBlockDelta(
                    index=0,
                    delta=TextDelta(
                        text=" ".join(words[i : i + 3]) + (" " if i + 3 < len(words) else "")
                    ),
                )
                for i in range(0, len(words), 3)
            ]
        yield [start, ContentBlockStart(index=0, content_block=opened)]
        for delta in deltas:  # one event per batch, as a real upstream's tokens arrive
            await asyncio.sleep(0)
            yield [delta]
        yield [
            ContentBlockStop(index=0),
            MessageDelta(
                delta=MessageDeltaBody(stop_reason=message.stop_reason),
                usage=MessageDeltaUsage(output_tokens=message.usage.output_tokens),
            ),
            MessageStop(),
        ]

    async def count_tokens(self, call: CountCall, model: str) -> TokenCount:
        return TokenCount(input_tokens=estimate_input_tokens(call.request), estimated=True)

    async def aclose(self) -> None:
        return None
