"""Checks shared by the OpenAI door's tests: the official openai SDK's view of what we emit."""

from __future__ import annotations

from typing import Any

from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletion, ChatCompletionChunk


def sdk_completion(body: dict[str, Any]) -> ChatCompletion:
    """``body`` validated by the SDK's type; every field we sent survives the round trip."""
    parsed = ChatCompletion.model_validate(body)
    assert parsed.model_dump(mode="json", exclude_unset=True) == body
    return parsed


def sdk_chunk(chunk: dict[str, Any]) -> ChatCompletionChunk:
    parsed = ChatCompletionChunk.model_validate(chunk)
    assert parsed.model_dump(mode="json", exclude_unset=True) == chunk
    return parsed


def sdk_accumulate(chunks: list[dict[str, Any]]) -> dict[str, Any]:
    """The chunks folded by the SDK's own stream accumulator into its final completion."""
    state: ChatCompletionStreamState[Any] = ChatCompletionStreamState()
    for chunk in chunks:
        list(state.handle_chunk(sdk_chunk(chunk)))
    # The snapshot, not get_final_completion(): that one raises on finish_reason "length".
    return state.current_completion_snapshot.model_dump(mode="json", exclude_none=True)
