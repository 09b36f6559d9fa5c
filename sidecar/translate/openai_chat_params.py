"""OpenAI Chat Completions top-level parameters -> their Anthropic equivalents.

Part of ``openai_chat_to_anthropic`` (split out to keep each module small): limits, stop,
sampling, ``reasoning_effort``, ``response_format`` and the fields Anthropic has no equivalent
for. Each function appends to ``notes`` what it drops or approximates.

``reasoning_effort`` becomes ``thinking`` with a token budget (``BUDGET_FOR_EFFORT``; every
thinking model takes it), or with ``AnthropicOptions.adaptive_thinking`` adaptive thinking and
``output_config.effort`` (Claude 4.6 and later). Thinking counts against ``max_tokens``: when the
caller set none, the default is raised by the budget; when they did, the budget is at most half
of it, and below Anthropic's minimum (1024) there is no thinking. Anthropic refuses thinking
beside a forced tool, and in a tool loop whose last assistant turn has no thinking block to send
back (an OpenAI client never has one); it takes no ``temperature`` other than 1, no ``top_k``,
and ``top_p`` only from 0.95: those are dropped and named.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sidecar.model import TextBlock, ThinkingAdaptive, ThinkingConfig, ThinkingEnabled
from sidecar.translate.openai_chat_wire import ChatRequestWire, ResponseFormatJsonSchema

__all__ = [
    "BUDGET_FOR_EFFORT",
    "JSON_OBJECT_INSTRUCTION",
    "AnthropicOptions",
    "dropped",
    "json_schema_format",
    "reasoning",
    "sampling",
    "stop_sequences",
    "system_value",
]

Json = dict[str, Any]

# reasoning_effort -> thinking.budget_tokens (the inverse of openai_request.reasoning_effort_for:
# each budget maps back to its own effort). Anthropic's minimum budget is 1024.
BUDGET_FOR_EFFORT: Mapping[str, int] = {
    "minimal": 1024,
    "low": 2048,
    "medium": 8192,
    "high": 16384,
    "xhigh": 32000,
    "max": 32000,
}
# reasoning_effort -> output_config.effort, for adaptive thinking.
_ADAPTIVE_EFFORT: Mapping[str, str] = {
    "minimal": "low",
    "low": "low",
    "medium": "medium",
    "high": "high",
    "xhigh": "xhigh",
    "max": "max",
}
_MIN_BUDGET = 1024
JSON_OBJECT_INSTRUCTION = "Respond with a single valid JSON object and nothing else."


@dataclass(frozen=True, slots=True)
class AnthropicOptions:
    """What the Anthropic target accepts; the defaults suit every current Claude model."""

    # OpenAI's max_tokens is optional, Anthropic's is not. 4096 is the largest output every
    # Claude model still served accepts (Claude 3 Haiku's limit); set it higher per target.
    default_max_tokens: int = 4096
    # reasoning_effort as adaptive thinking + output_config.effort (Claude 4.6 and later)
    # instead of thinking.budget_tokens (every thinking model).
    adaptive_thinking: bool = False


def _note(notes: list[str], name: str) -> None:
    if name not in notes:
        notes.append(name)


def system_value(blocks: list[TextBlock]) -> str | list[TextBlock] | None:
    if not blocks:
        return None
    if len(blocks) == 1:
        return blocks[0].text
    return blocks


def json_schema_format(fmt: ResponseFormatJsonSchema, notes: list[str]) -> Json:
    spec = fmt.json_schema
    if spec.description:
        _note(notes, "response_format.json_schema.description")
    # Anthropic's structured outputs are always strict; the schema name is only a label.
    schema = spec.schema if spec.schema is not None else {"type": "object"}
    return {"type": "json_schema", "schema": schema}


def stop_sequences(stop: str | list[str] | None, notes: list[str]) -> list[str] | None:
    values = [stop] if isinstance(stop, str) else list(stop or ())
    # Anthropic rejects a stop sequence made only of whitespace.
    kept = [s for s in values if s and not s.isspace()]
    if len(kept) < len(values):
        _note(notes, "stop")
    return kept or None


def reasoning(
    wire: ChatRequestWire,
    options: AnthropicOptions,
    notes: list[str],
    *,
    forced_tool: bool,
    tool_loop: bool,
) -> tuple[int, ThinkingConfig | None, str | None]:
    """max_tokens, the thinking config and output_config.effort for ``reasoning_effort``."""
    asked = wire.max_completion_tokens or wire.max_tokens
    effort = wire.reasoning_effort
    if effort is None or effort == "none":
        if asked is None:
            _note(notes, "max_tokens.default")
        return asked or options.default_max_tokens, None, None
    if effort not in BUDGET_FOR_EFFORT:  # a level newer than this table
        _note(notes, "reasoning_effort")
        effort = "medium"
    budget = BUDGET_FOR_EFFORT[effort]
    if asked is None:
        _note(notes, "max_tokens.default")
    max_tokens = asked or options.default_max_tokens + budget
    # See the module doc: Anthropic refuses thinking there.
    if forced_tool or tool_loop:
        _note(notes, "reasoning_effort")
        return max_tokens, None, None
    if options.adaptive_thinking:
        return max_tokens, ThinkingAdaptive(), _ADAPTIVE_EFFORT[effort]
    _note(notes, "reasoning_effort")  # a level becomes a token budget: approximate
    if asked is not None:
        # Thinking counts against max_tokens: keep at least half of the caller's for the answer.
        budget = min(budget, asked // 2)
    if budget < _MIN_BUDGET:  # no room to think within the caller's max_tokens
        return max_tokens, None, None
    return max_tokens, ThinkingEnabled(budget_tokens=budget), None


def sampling(
    wire: ChatRequestWire, notes: list[str], *, thinking: bool
) -> tuple[float | None, float | None, int | None]:
    temperature, top_p, top_k = wire.temperature, wire.top_p, wire.top_k
    if temperature is not None and temperature > 1:  # OpenAI's range is 0-2, Anthropic's 0-1
        _note(notes, "temperature")
        temperature = 1.0
    if thinking:  # Anthropic: thinking takes no temperature or top_k, and top_p >= 0.95
        if temperature is not None and temperature != 1:
            _note(notes, "temperature")
            temperature = None
        if top_p is not None and top_p < 0.95:
            _note(notes, "top_p")
            top_p = None
        if top_k is not None:
            _note(notes, "top_k")
            top_k = None
    return temperature, top_p, top_k


def dropped(wire: ChatRequestWire, notes: list[str]) -> None:
    """Name the fields Anthropic has no equivalent for, when they ask for something."""
    checks: tuple[tuple[str, bool], ...] = (
        ("n", (wire.n or 1) > 1),
        ("logprobs", bool(wire.logprobs)),
        ("top_logprobs", wire.top_logprobs is not None),
        ("seed", wire.seed is not None),
        ("presence_penalty", bool(wire.presence_penalty)),
        ("frequency_penalty", bool(wire.frequency_penalty)),
        ("logit_bias", bool(wire.logit_bias)),
        ("audio", wire.audio is not None),
        ("modalities", any(m != "text" for m in wire.modalities or ())),
        ("metadata", bool(wire.metadata)),
        ("store", bool(wire.store)),
        ("service_tier", wire.service_tier is not None),
        ("prediction", wire.prediction is not None),
        ("web_search_options", wire.web_search_options is not None),
        ("verbosity", wire.verbosity is not None),
        ("prompt_cache_key", wire.prompt_cache_key is not None),
        ("prompt_cache_retention", wire.prompt_cache_retention is not None),
    )
    for name, asked in checks:
        if asked:
            _note(notes, name)
