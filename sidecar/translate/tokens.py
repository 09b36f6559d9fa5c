"""A token estimate for upstreams that cannot count input tokens.

The heuristic, documented so callers know what they get (``TokenCount.estimated = True``):

* text (system, text blocks, thinking, tool results, plain-text documents, tool-use inputs as
  JSON, tool definitions as JSON): one token per 4 bytes of UTF-8, rounded up per piece. Four
  bytes is four characters of English; a CJK character (3 bytes) counts as 3/4 of a token,
  closer to the truth than four characters per token would be;
* each image: ``IMAGE_TOKENS`` (Anthropic's cost for an image scaled to ~1.15 megapixels);
* each PDF: ``PDF_PAGE_TOKENS`` per ``PDF_BYTES_PER_PAGE`` bytes of decoded file, at least one page;
* each message: ``MESSAGE_OVERHEAD`` tokens for its role and separators; tools present:
  ``TOOLS_OVERHEAD`` for the tool-use system prompt the model gets.

Expect it to be within about 20% on English prose and code; it is an upper bound for images
smaller than the cap. Redacted thinking counts by its data length.
"""

from __future__ import annotations

import msgspec

from sidecar.model import (
    Base64Source,
    ContentSource,
    CountTokensRequest,
    DocumentBlock,
    ImageBlock,
    MessagesRequest,
    PlainTextSource,
    RedactedThinkingBlock,
    TextBlock,
    ThinkingBlock,
    ToolResultBlock,
    ToolUseBlock,
)

__all__ = ["estimate_input_tokens"]

BYTES_PER_TOKEN = 4
IMAGE_TOKENS = 1600
PDF_PAGE_TOKENS = 1500
PDF_BYTES_PER_PAGE = 60_000
MESSAGE_OVERHEAD = 4
TOOLS_OVERHEAD = 300


def _text(text: str) -> int:
    size = len(text) if text.isascii() else len(text.encode())
    return -(-size // BYTES_PER_TOKEN)


def _json_text(value: object) -> int:
    # msgspec, not orjson: any JSON the caller sent can be measured (orjson stops at 64-bit
    # integers); the size of its UTF-8 encoding is what counts.
    return -(-len(msgspec.json.encode(value)) // BYTES_PER_TOKEN)


def _document(block: DocumentBlock) -> int:
    source = block.source
    tokens = _text(block.title or "") + _text(block.context or "")
    if isinstance(source, PlainTextSource):
        return tokens + _text(source.data)
    if isinstance(source, Base64Source):
        if source.media_type.startswith("text/"):
            return tokens + _text(source.data) * 3 // 4
        pages = max(1, (len(source.data) * 3 // 4) // PDF_BYTES_PER_PAGE)
        return tokens + pages * PDF_PAGE_TOKENS
    if isinstance(source, ContentSource):
        if isinstance(source.content, str):
            return tokens + _text(source.content)
        return tokens + sum(
            _text(b.text) if isinstance(b, TextBlock) else IMAGE_TOKENS for b in source.content
        )
    return tokens + PDF_PAGE_TOKENS  # a URL or file id: one page, unseen


def _block(block: object) -> int:
    if isinstance(block, TextBlock):
        return _text(block.text)
    if isinstance(block, ImageBlock):
        return IMAGE_TOKENS
    if isinstance(block, DocumentBlock):
        return _document(block)
    if isinstance(block, ToolUseBlock):
        return _text(block.name) + _json_text(block.input)
    if isinstance(block, ToolResultBlock):
        if block.content is None:
            return 1
        if isinstance(block.content, str):
            return _text(block.content)
        return sum(_block(inner) for inner in block.content)
    if isinstance(block, ThinkingBlock):
        return _text(block.thinking)
    if isinstance(block, RedactedThinkingBlock):
        return _text(block.data)
    return 0


def estimate_input_tokens(req: MessagesRequest | CountTokensRequest) -> int:
    """Estimated input tokens of ``req``; see the module docstring for the heuristic."""
    total = 0
    if isinstance(req.system, str):
        total += _text(req.system)
    elif req.system:
        total += sum(_text(block.text) for block in req.system)
    for message in req.messages:
        total += MESSAGE_OVERHEAD
        if isinstance(message.content, str):
            total += _text(message.content)
        else:
            total += sum(_block(block) for block in message.content)
    if req.tools:
        total += TOOLS_OVERHEAD
        for tool in req.tools:
            total += _text(tool.name) + _text(tool.description or "")
            if tool.input_schema is not None:
                total += _json_text(tool.input_schema)
    return total
