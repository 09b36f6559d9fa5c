"""The JSON log lines: an exception is recorded with its traceback, never its message."""

from __future__ import annotations

import datetime
import io
import json
import logging
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from sidecar import logs
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


class Stdout:
    """``configure`` on a fake stdout; ``log`` runs with the root logger's handlers as
    ``configure`` left them (pytest adds its own during a test), plus ``extra``."""

    def __init__(self) -> None:
        self.out = io.StringIO()
        self.extra: list[logging.Handler] = []

    def log(self, event: str, **kwargs: Any) -> None:
        root = logging.getLogger()
        saved = root.handlers[:]
        root.handlers[:] = [self.handler, *self.extra]
        try:
            logs.log(event, **kwargs)
        finally:
            root.handlers[:] = saved

    def lines(self) -> list[str]:
        return self.out.getvalue().splitlines()

    handler: logging.Handler


@pytest.fixture
def stdout(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stdout]:
    root, ours = logging.getLogger(), logging.getLogger("anyllm")
    saved = root.handlers[:], root.level, ours.level
    fake = Stdout()
    monkeypatch.setattr(sys, "stdout", fake.out)
    logs.configure("info")
    fake.handler = root.handlers[0]
    yield fake
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    ours.setLevel(saved[2])


FIELDS = [
    pytest.param({}, id="no-fields"),
    pytest.param({"request_id": "r1", "duration_ms": 1.25, "attempts": [{"a": 1}]}, id="fields"),
    pytest.param({"z": 1, "a": [2, "b"], "m": {"k": 0.5}}, id="order-kept"),
    pytest.param({"when": datetime.date(2025, 1, 2)}, id="non-json-value-as-str"),
    pytest.param({"skipped": None, "exhausted": False}, id="none-and-false"),
]


@pytest.mark.parametrize("fields", FIELDS)
@pytest.mark.parametrize("level", [logging.INFO, logging.WARNING, logging.ERROR], ids=str)
def test_a_direct_line_is_the_formatters_line(
    stdout: Stdout, fields: dict[str, Any], level: int
) -> None:
    stdout.log("request", level=level, **fields)
    (direct,) = stdout.lines()
    record = logging.LogRecord("anyllm", level, __file__, 1, "request", (), None)
    record.fields = fields
    doc, expected = json.loads(direct), json.loads(_JsonFormatter().format(record))
    assert abs(_ts(doc.pop("ts")) - _ts(expected.pop("ts"))) < 60
    assert doc == expected
    assert list(doc) == list(expected)  # the same keys in the same order


def test_a_disabled_level_writes_nothing(stdout: Stdout) -> None:
    stdout.log("noise", level=logging.DEBUG, x=1)
    assert stdout.lines() == []


def test_a_line_with_an_exception_goes_through_logging(stdout: Stdout) -> None:
    try:
        _fail_outer("sk-SECRET-0010")
    except RuntimeError as exc:
        stdout.log("internal_error", level=logging.ERROR, exc=exc, request_id="r2")
    (line,) = stdout.lines()
    doc = json.loads(line)
    assert (doc["event"], doc["exception"], doc["request_id"]) == (
        "internal_error",
        "RuntimeError",
        "r2",
    )
    assert "SECRET" not in line


def test_another_handler_gets_the_line_too(stdout: Stdout) -> None:
    """A handler added after ``configure`` (a test's, a library's) is not bypassed."""
    seen: list[logging.LogRecord] = []
    extra = logging.Handler()
    extra.emit = seen.append  # type: ignore[method-assign]
    stdout.extra.append(extra)
    stdout.log("request", request_id="r3")
    assert [r.getMessage() for r in seen] == ["request"]
    (line,) = stdout.lines()
    assert json.loads(line)["request_id"] == "r3"


@pytest.mark.parametrize(
    ("created", "expected"),
    [
        pytest.param(0.0, "1970-01-01T00:00:00.000Z", id="epoch"),
        pytest.param(1764606896.5, "2025-12-01T16:34:56.500Z", id="half-second"),
        pytest.param(1764606896.75, "2025-12-01T16:34:56.750Z", id="same-second-cached"),
        pytest.param(1764606897.125, "2025-12-01T16:34:57.125Z", id="next-second"),
    ],
)
def test_the_timestamp(created: float, expected: str) -> None:
    record = logging.LogRecord("anyllm", logging.INFO, __file__, 1, "ready", (), None)
    record.created, record.msecs = created, int((created - int(created)) * 1000)
    assert json.loads(_JsonFormatter().format(record))["ts"] == expected


def _ts(text: str) -> float:
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").timestamp()
