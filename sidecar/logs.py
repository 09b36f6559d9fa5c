"""Structured logs: one JSON object per line on stdout.

``log(event, **fields)`` writes ``{"ts": ..., "level": ..., "event": ..., **fields}``. Formatting
happens only when the level is enabled, so a disabled level costs one comparison. Callers pass
values that are safe to log: never keys, never request or response bodies.

Once ``configure`` has installed the one stdout handler, a ``log`` call without an exception
(the per-request line is one) writes its line straight to that handler's stream, under the
handler's lock, with the same bytes ``_JsonFormatter`` would give: no ``LogRecord``, no caller
lookup (a walk of the stack) and no handler dispatch, which together cost several times the
line itself. Anything else (an exception, a library's record, a handler someone else added)
goes through ``logging`` as before.

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
_root = logging.getLogger()


class _Clock:
    """``YYYY-mm-ddTHH:MM:SS.mmmZ`` of a ``time.time()`` value; the formatted second is kept
    (lines come many per second), as one tuple: a library logging from another thread reads a
    second and its text that belong together."""

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last = (-1, "")

    def stamp(self, created: float, msecs: int) -> str:
        second = int(created)
        last = self._last
        if second != last[0]:
            last = self._last = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)))
        return f"{last[1]}.{msecs:03d}Z"


_clock = _Clock()


def _line(created: float, msecs: int, level: str, event: str, fields: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"ts": _clock.stamp(created, msecs), "level": level, "event": event}
    if fields:
        doc.update(fields)
    return doc


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc = _line(
            record.created,
            int(record.msecs),
            record.levelname.lower(),
            record.getMessage(),
            getattr(record, "fields", None),
        )
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


class _Direct:
    """The handler ``configure`` installed, while it is still the only one a line reaches."""

    __slots__ = ("handler",)

    def __init__(self) -> None:
        self.handler: logging.StreamHandler[Any] | None = None

    def target(self) -> logging.StreamHandler[Any] | None:
        handler = self.handler
        if handler is None or _logger.handlers or not _logger.propagate:
            return None
        handlers = _root.handlers
        if len(handlers) != 1 or handlers[0] is not handler or handler.filters or _root.filters:
            return None
        return handler


_direct = _Direct()
_LEVEL_NAMES = {
    level: logging.getLevelName(level).lower()
    for level in (logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR, logging.CRITICAL)
}


def configure(level: str) -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(_JsonFormatter())
    _root.handlers[:] = [handler]
    _root.setLevel(logging.WARNING)
    _logger.setLevel(level.upper())
    _direct.handler = handler


def log(
    event: str, *, level: int = logging.INFO, exc: BaseException | None = None, **fields: Any
) -> None:
    if not _logger.isEnabledFor(level):
        return
    handler = _direct.target() if exc is None else None
    name = _LEVEL_NAMES.get(level)
    if handler is None or name is None or _logger.filters:
        _logger.log(level, event, exc_info=exc, extra={"fields": fields})
        return
    created = time.time()
    text = orjson.dumps(
        _line(created, int((created - int(created)) * 1000), name, event, fields), default=str
    )
    handler.acquire()
    try:
        stream = handler.stream
        stream.write(text.decode() + handler.terminator)
        stream.flush()
    except Exception:
        handler.handleError(logging.makeLogRecord({"msg": event}))
    finally:
        handler.release()
