"""Fresh ids for requests, messages and completions, cheaply.

Each id is ``uuid.uuid4().hex``'s shape (32 hex digits, version 4, RFC 4122 variant) drawn from
the process's seeded generator (``random``): a fifth of uuid4's cost (0.39 vs 2.1 µs), which reads
the OS's random source each time. An id names a request or an answer; it guards nothing, so it
need not be unpredictable, only unique.
"""

from __future__ import annotations

import random
from collections.abc import Callable

_VERSION_MASK = ~(0xF000 << 64) & ~(0xC000 << 48)
_VERSION_BITS = (0x4000 << 64) | (0x8000 << 48)


def new_request_id(bits: Callable[[int], int] = random.getrandbits) -> str:
    """32 hex digits in uuid4's shape."""
    return f"{bits(128) & _VERSION_MASK | _VERSION_BITS:032x}"
