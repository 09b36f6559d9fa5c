"""The JSON log lines: an exception is recorded with its traceback, never its message."""

from __future__ import annotations

import json
import logging

from sidecar.logs import _JsonFormatter


def _fail_inner(secret: str) -> None:
    raise KeyError(f"caller content {secret}")


def _fail_outer(secret: str) -> None:
    try:
        _fail_inner(secret)
    except KeyError as exc:
        raise RuntimeError(f"wrapped {secret}") from exc


def test_an_exception_is_logged_with_its_frames_and_not_its_message() -> None:
    try:
        _fail_outer("sk-SECRET-0009")
    except RuntimeError as exc:
        error = exc
    record = logging.LogRecord("anyllm", logging.ERROR, __file__, 1, "internal_error", (), None)
    record.exc_info = (type(error), error, error.__traceback__)
    record.fields = {"request_id": "r1"}
    line = _JsonFormatter().format(record)
    doc = json.loads(line)
    assert (doc["event"], doc["level"], doc["request_id"]) == ("internal_error", "error", "r1")
    assert doc["exception"] == "RuntimeError"
    frames = doc["traceback"]
    assert any(frame.endswith("in _fail_outer") for frame in frames)
    assert "caused by KeyError" in frames
    assert frames[-1].endswith("in _fail_inner")  # the cause's innermost frame, last
    assert "SECRET" not in line and "caller content" not in line


def test_a_line_without_an_exception_has_no_traceback() -> None:
    record = logging.LogRecord("anyllm", logging.INFO, __file__, 1, "ready", (), None)
    doc = json.loads(_JsonFormatter().format(record))
    assert "traceback" not in doc and "exception" not in doc
