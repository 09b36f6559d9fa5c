"""Structured logs: one JSON object per line on stdout.

``log(event, **fields)`` writes ``{"ts": ..., "level": ..., "event": ..., **fields}``. Formatting
happens only when the level is enabled, so a disabled level costs one comparison. Callers pass
values that are safe to log: never keys, never request or response bodies.

An exception (``log(..., exc=error)``, or any library's ``logger.exception``) is recorded as its
type and its traceback: the frames (file, line, function) of it and of its causes, never its
message or local values, which may hold a caller's content or a key.
"""

from __future__ import annotations

import logging
import sys
import time
import traceback
from types import TracebackType
from typing import Any

import orjson

_logger = logging.getLogger("anyllm")


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "event": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if fields:
            doc.update(fields)
        if record.exc_info and record.exc_info[0] is not None:
            doc["exception"] = record.exc_info[0].__name__
            doc["traceback"] = _frames(record.exc_info[1], record.exc_info[2])
        return orjson.dumps(doc, default=str).decode()


MAX_FRAMES = 40


def _frames(exc: BaseException | None, tb: TracebackType | None) -> list[str]:
    """``file:line in function`` for each frame, innermost last, then each cause's (marked by
    its type); no messages, no locals."""
    out: list[str] = []
    seen: set[int] = set()
    while True:
        out += [f"{f.filename}:{f.lineno} in {f.name}" for f in traceback.extract_tb(tb)]
        if exc is None or id(exc) in seen:
            break
        seen.add(id(exc))
        exc = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
        if exc is None:
            break
        out.append(f"caused by {type(exc).__name__}")
        tb = exc.__traceback__
    return out[-MAX_FRAMES:]


def configure(level: str) -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(_JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    _logger.setLevel(level.upper())


def log(
    event: str, *, level: int = logging.INFO, exc: BaseException | None = None, **fields: Any
) -> None:
    if _logger.isEnabledFor(level):
        _logger.log(level, event, exc_info=exc, extra={"fields": fields})
