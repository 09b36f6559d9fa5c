"""Server-sent events framing: bytes in, frames out (and the one-line encoder for the way back).

Theory of operation
-------------------
``SSEDecoder.feed`` takes whatever bytes the transport handed over and returns the frames that
became complete. It never looks at single characters: line endings are normalised on the chunk
(CRLF and lone CR become LF, with a CR at the very end of a chunk remembered so that a LF opening
the next chunk is not counted twice), the chunk is split on ``b"\\n"`` and the last piece, which
has no line ending yet, is kept as the pending partial line. Because a LF byte never occurs inside
a multi-byte UTF-8 sequence, a character split across chunks simply stays in the pending piece;
text is decoded only once a frame is complete.

Each complete line is one of (WHATWG "event stream interpretation"):

* empty: dispatch the frame if it has data lines, then reset it;
* ``:...``: a comment (keep-alives), ignored;
* ``field: value`` / ``field:value`` / ``field``: ``data`` lines accumulate (joined with
  ``"\\n"``), ``event`` sets the event name, ``id`` and ``retry`` are ignored.

The bytes held for one frame (its data lines plus the pending partial line) are capped at
``max_frame_size``; going over raises ``UpstreamError(kind=INVALID_RESPONSE)``, so a misbehaving
upstream cannot make us buffer without bound. ``close`` at the end of the body dispatches a last
frame whose data lines are complete but which lacked the blank line; a partial line is dropped.

Pending partial data is kept as a list of pieces and joined only when a line ending arrives, so a
long line that trickles in over many chunks costs linear, not quadratic, time.
"""

from __future__ import annotations

import msgspec

from sidecar.errors import FailureKind, UpstreamError

__all__ = ["SSEDecoder", "SSEFrame", "encode_sse"]

_BOM = b"\xef\xbb\xbf"
_MAX_NAMES = 64  # distinct ``event:`` names one decoder remembers


class SSEFrame(msgspec.Struct, frozen=True):
    """One dispatched event: its ``event:`` name (None when absent) and its joined data.
    (A Struct: one is made per upstream event, at a fifth of a frozen dataclass's cost.)"""

    event: str | None
    data: str


class SSEDecoder:
    """Incremental SSE parser; see the module docstring. One instance per response body."""

    __slots__ = (
        "_data",
        "_data_size",
        "_event",
        "_first_line",
        "_max",
        "_names",
        "_partial",
        "_partial_size",
        "_skip_lf",
    )

    def __init__(self, max_frame_size: int = 1 << 20) -> None:
        self._max = max_frame_size
        self._partial: list[bytes] = []  # pieces of the line that has no ending yet
        self._partial_size = 0
        self._data: list[bytes] = []  # data lines of the current frame
        self._data_size = 0
        self._event: str | None = None
        self._skip_lf = False  # the previous chunk ended in CR: a leading LF belongs to it
        self._first_line = True  # a UTF-8 BOM may open the stream
        self._names: dict[bytes, str] = {}  # ``event:`` lines seen -> their names

    def feed(self, data: bytes) -> list[SSEFrame]:
        """Consume ``data`` and return the frames it completed (possibly none)."""
        if not data:
            return []
        if self._skip_lf:
            self._skip_lf = False
            if data[:1] == b"\n":
                data = data[1:]
        if b"\r" in data:
            self._skip_lf = data[-1:] == b"\r"
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        if b"\n" not in data:
            if data:
                self._partial.append(data)
                self._partial_size += len(data)
                self._check_size()
            return []
        lines = data.split(b"\n")
        if self._partial:
            self._partial.append(lines[0])
            lines[0] = b"".join(self._partial)
        tail = lines.pop()
        self._partial = [tail] if tail else []
        self._partial_size = len(tail)
        if self._first_line:
            self._first_line = False
            if lines[0].startswith(_BOM):
                lines[0] = lines[0][3:]
        frames: list[SSEFrame] = []
        data_lines = self._data
        for line in lines:  # the hot loop: "data: {...}" then "" for each OpenAI chunk
            if not line:
                if data_lines:
                    frames.append(self._frame())
                    data_lines = self._data
                else:
                    self._event = None
            elif line.startswith(b"data:"):
                value = line[6:] if line[5:6] == b" " else line[5:]
                data_lines.append(value)
                self._data_size += len(value) + 1
                if self._data_size > self._max:
                    self._too_large()
            elif line.startswith(b"event:"):  # the other line of every Anthropic event
                self._event = self._event_name(line)
            elif line[0] != 0x3A:  # not a b":" comment / keep-alive
                self._field(line)
        if self._partial_size + self._data_size > self._max:
            self._too_large()
        return frames

    def close(self) -> list[SSEFrame]:
        """End of body: dispatch a frame left without its blank line; drop a partial line."""
        self._partial = []
        self._partial_size = 0
        return [self._frame()] if self._data else []

    # ----------------------------------------------------------------------- internals

    def _field(self, line: bytes) -> None:
        name, colon, value = line.partition(b":")
        if colon and value[:1] == b" ":
            value = value[1:]
        if name == b"data":  # "data" without a colon: an empty data line
            self._data.append(value)
            self._data_size += len(value) + 1
        elif name == b"event":
            self._event = value.decode("utf-8", "replace")
        # "id", "retry" and unknown fields are ignored.

    def _frame(self) -> SSEFrame:
        data = self._data
        raw = data[0] if len(data) == 1 else b"\n".join(data)
        frame = SSEFrame(self._event, raw.decode("utf-8", "replace"))
        self._data = []
        self._data_size = 0
        self._event = None
        return frame

    def _event_name(self, line: bytes) -> str:
        """The name on an ``event:`` line; the few a stream uses are decoded once each."""
        names = self._names
        name = names.get(line)
        if name is None:
            value = line[7:] if line[6:7] == b" " else line[6:]
            name = value.decode("utf-8", "replace")
            if len(names) < _MAX_NAMES:  # names come from the upstream: the cache stays bounded
                names[line] = name
        return name

    def _check_size(self) -> None:
        if self._partial_size + self._data_size > self._max:
            self._too_large()

    def _too_large(self) -> None:
        raise UpstreamError(
            f"upstream sent a server-sent event larger than {self._max} bytes",
            kind=FailureKind.INVALID_RESPONSE,
        )


def encode_sse(event: str, data: bytes) -> bytes:
    """One SSE frame: ``event: NAME\\ndata: DATA\\n\\n`` (DATA lines split if it has any)."""
    if b"\n" in data:
        data = data.replace(b"\n", b"\ndata: ")
    return b"event: " + event.encode() + b"\ndata: " + data + b"\n\n"
