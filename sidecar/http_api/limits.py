"""The nesting limit of a JSON request body, checked once, before it is decoded.

Why a limit of our own: the decoders and encoders a body meets each stop at a different depth,
and not all of them cleanly (msgspec raises ``RecursionError`` near Python's recursion limit,
~1000 levels; orjson refuses to encode past 255 levels, to parse past 1024). One documented
limit, checked at the door, turns all of them into one clear 400 before anything else runs.
``MAX_DEPTH`` levels of arrays and objects is far more than any real request needs (the envelope
itself is about 7: body, messages, a message, its content, a tool result, its content, a block).

How it is fast: a body with at most ``MAX_DEPTH`` opening brackets cannot be deeper (one
``bytes.count`` each). Otherwise the check works on a copy reduced to its structure, in C-speed
passes: escaped backslashes and quotes are dropped, then everything but quotes and brackets,
then empty strings, then (by a regex) strings that contain brackets; what is left is brackets
only (objects' braces made brackets), and each ``replace`` pass of ``[]`` removes one level.
About 0.3 ms for a 100 KB request with tools, a few ms for a 5 MB image; nothing for small ones.
"""

from __future__ import annotations

import re

from sidecar.errors import InvalidRequestError

MAX_DEPTH = 128

_NOT_STRUCTURE = bytes(range(256)).translate(None, b'"[]{}')
_OBJECTS_AS_ARRAYS = bytes.maketrans(b"{}", b"[]")  # the depth does not depend on the kind
_STRING = re.compile(rb'"[^"]*"')


def exceeds_depth(body: bytes, limit: int = MAX_DEPTH) -> bool:
    """Whether ``body``'s arrays and objects nest more than ``limit`` levels deep.

    A body whose brackets do not balance is not JSON; it counts as too deep only when more than
    ``limit`` unmatched brackets are left (the decoders would recurse into them).
    """
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    if b"\\" in body:
        body = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    shape = body.translate(_OBJECTS_AS_ARRAYS, _NOT_STRUCTURE).replace(b'""', b"")
    if b'"' in shape:
        shape = _STRING.sub(b"", shape)
    for _ in range(limit):
        size = len(shape)
        shape = shape.replace(b"[]", b"")  # one level: pairs it makes are the next pass's
        if not shape:
            return False
        if len(shape) == size:  # unbalanced: not JSON, the decoder says what is wrong
            return size > limit
    return True


def check_depth(body: bytes) -> None:
    """Raise a 400 naming the limit when ``body`` nests deeper than ``MAX_DEPTH``."""
    if exceeds_depth(body):
        raise InvalidRequestError(
            f"The request body nests arrays and objects more than {MAX_DEPTH} levels deep "
            f"(the sidecar's limit)"
        )
