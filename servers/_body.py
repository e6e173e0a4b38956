"""Body readers, keyed by framing: they consume body bytes as they arrive.

A reader's `read(data, pos)` takes what it can from `data[pos:]` and returns the new
position; `done` turns true once the body is complete. Bytes are consumed as they come,
so a body trickled one byte per recv costs O(n), never O(n^2). The only thing a reader
leaves unconsumed is an incomplete chunk-size or trailer line.
"""

from __future__ import annotations

import re
from typing import Protocol

from servers._errors import ProtocolError

# A chunk-size line is short: 16 hex digits cover 2**64, and extensions are ignored.
# 4 KiB of extensions is far beyond any real client and bounds what we buffer.
MAX_CHUNK_LINE = 4 * 1024
# Trailers are a header section; give them the same budget as MAX_HEADER_BYTES.
MAX_TRAILER_BYTES = 64 * 1024

# A trailer field line: the same grammar as a header field line (see servers/http.py).
_TRAILER_FIELD = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[\t -~\x80-\xff]*")
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,16})(?:[ \t]*;[\t -~\x80-\xff]*)?")


def is_digits(value: bytes) -> bool:
    """1*DIGIT and nothing else. int() would also take '+5', '1_0' and ' 5'."""
    return value.isdigit()  # bytes.isdigit is ASCII-only and False for b""


class BodyReader(Protocol):
    done: bool
    received: int

    def read(self, data: bytes, pos: int) -> int: ...

    def body(self) -> bytes: ...


class ContentLengthReader:
    __slots__ = ("remaining", "parts", "received", "done")

    def __init__(self, length: int, max_body: int) -> None:
        self.remaining = length  # already checked against max_body from the header
        self.parts: list[bytes] = []
        self.received = 0
        self.done = False

    def read(self, data: bytes, pos: int) -> int:
        take = min(self.remaining, len(data) - pos)
        self.parts.append(data[pos : pos + take])
        self.remaining -= take
        self.received += take
        self.done = self.remaining == 0
        return pos + take

    def body(self) -> bytes:
        return b"".join(self.parts)


_SIZE, _DATA, _DATA_END, _TRAILER = range(4)


class ChunkedReader:
    __slots__ = ("max_body", "parts", "received", "done", "_state", "_remaining", "_trailer")

    def __init__(self, length: int, max_body: int) -> None:
        self.max_body = max_body
        self.parts: list[bytes] = []
        self.received = 0
        self.done = False
        self._state = _SIZE
        self._remaining = 0
        self._trailer = 0

    def read(self, data: bytes, pos: int) -> int:
        end = len(data)
        while pos < end and not self.done:
            state = self._state
            if state == _DATA:
                take = min(self._remaining, end - pos)
                self.parts.append(data[pos : pos + take])
                pos += take
                self._remaining -= take
                if self._remaining == 0:
                    self._state = _DATA_END
            elif state == _DATA_END:
                if end - pos < 2:
                    if data[pos:end] != b"\r":
                        raise ProtocolError(400, "Missing CRLF after chunk data")
                    return pos
                if data[pos : pos + 2] != b"\r\n":
                    raise ProtocolError(400, "Missing CRLF after chunk data")
                pos += 2
                self._state = _SIZE
            else:
                line_end = data.find(b"\r\n", pos)
                if line_end < 0:
                    # A final CR may be half of the CRLF: only a line certain to be too
                    # long is refused before it ends, as _size_line refuses a whole one.
                    if state == _SIZE and end - pos - (data[end - 1] == 13) > MAX_CHUNK_LINE:
                        raise ProtocolError(400, "Chunk-size line too long")
                    if state == _TRAILER and self._trailer + end - pos > MAX_TRAILER_BYTES:
                        raise ProtocolError(431, "Trailer section too large")
                    return pos
                if state == _SIZE:
                    pos = self._size_line(data, pos, line_end)
                elif line_end == pos:
                    self.done = True  # the empty line that ends the trailer section
                    pos += 2
                else:
                    self._trailer += line_end - pos + 2
                    if self._trailer > MAX_TRAILER_BYTES:
                        raise ProtocolError(431, "Trailer section too large")
                    if _TRAILER_FIELD.fullmatch(data, pos, line_end) is None:
                        raise ProtocolError(400, "Malformed trailer field")  # a bare CR/LF would smuggle
                    pos = line_end + 2
        return pos

    def _size_line(self, data: bytes, pos: int, line_end: int) -> int:
        if line_end - pos > MAX_CHUNK_LINE:  # the same limit whether the line came whole or not
            raise ProtocolError(400, "Chunk-size line too long")
        match = _CHUNK_SIZE.fullmatch(data, pos, line_end)
        if match is None:
            raise ProtocolError(400, "Malformed chunk size")
        size = int(match.group(1), 16)  # hex digits only, so int() is safe here
        if size == 0:
            self._state = _TRAILER
        else:
            self.received += size
            if self.received > self.max_body:
                raise ProtocolError(413, "Request body too large")
            self._remaining = size
            self._state = _DATA
        return line_end + 2

    def body(self) -> bytes:
        return b"".join(self.parts)


BODY_READERS: dict[str, type[ContentLengthReader] | type[ChunkedReader]] = {
    "content-length": ContentLengthReader,
    "chunked": ChunkedReader,
}
