"""A caller's JSON body with ``model`` and ``stream`` rewritten, and nothing else touched.

A relaying backend sends the caller's own bytes upstream; when the chain names another upstream
model (or the call kind differs), only those two fields change. Every other value is kept as
the caller's bytes (``msgspec.Raw``): an integer past 64 bits, ``1e400``, a float's exact
digits all reach the upstream as sent, where parsing into Python values and encoding again
would round them or fail.
"""

from __future__ import annotations

import msgspec

_TOP = msgspec.json.Decoder(dict[str, msgspec.Raw])
_encoder = msgspec.json.Encoder()


def with_model(body: bytes, model: str, *, stream: bool) -> bytes:
    """``body`` (a JSON object) with ``model`` and ``stream`` set; other fields byte for byte."""
    top = _TOP.decode(body)
    top["model"] = msgspec.Raw(_encoder.encode(model))
    if stream or "stream" in top:  # a caller that sent no ``stream`` gets none added
        top["stream"] = msgspec.Raw(b"true" if stream else b"false")
    return _encoder.encode(top)
