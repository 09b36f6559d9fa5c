"""Structured logs: one JSON object per line on stdout.

``log(event, **fields)`` writes ``{"ts": ..., "level": ..., "event": ..., **fields}``. Formatting
happens only when the level is enabled, so a disabled level costs one comparison. Callers pass
values that are safe to log: never keys, never request or response bodies.
"""

from __future__ import annotations

import logging
import sys
import time
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
        return orjson.dumps(doc, default=str).decode()


def configure(level: str) -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(_JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    _logger.setLevel(level.upper())


def log(event: str, *, level: int = logging.INFO, **fields: Any) -> None:
    if _logger.isEnabledFor(level):
        _logger.log(level, event, extra={"fields": fields})
