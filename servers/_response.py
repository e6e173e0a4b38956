"""The response builder: one Response in, one bytes buffer out (or, for a body made in
pieces, the head and the pieces to send after it).

Headers and body leave in a single buffer so the backend can send them with one send():
written separately, with Nagle on, the body waits for the client's delayed ACK (about
40 ms on Linux), which is how the stdlib's HTTP/1.1 server drops to a few hundred req/s.
A body of Pieces is the exception: it is big, so its head's one extra packet is nothing.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from email.utils import formatdate
from http import HTTPStatus
from typing import TYPE_CHECKING

from servers._messages import Pieces, Response

if TYPE_CHECKING:
    from servers._errors import ProtocolError

SERVER_NAME = b"concurbench"


# The interim answer to "Expect: 100-continue": send the body now (RFC 9110 10.1.1).
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_STATUS_LINES = {s.value: f"HTTP/1.1 {s.value} {s.phrase}\r\n".encode() for s in HTTPStatus}
_CONTENT_TYPES: dict[str, bytes] = {}
# /echo answers with the client's own Content-Type: an unbounded cache would let a client
# grow the server's memory one distinct value (up to 64 KiB each) at a time.
MAX_CACHED_CONTENT_TYPES = 64


# (second, its Date and Server lines), replaced whole: a reader never pairs one second with
# another's line. Two fields written one after the other could be paired wrong by threads
# crossing a second together, which without the GIL happens: a Date a second off.
_date: tuple[int, bytes] = (-1, b"")


def _date_line() -> bytes:
    """The Date and Server lines. Date changes once a second; formatting it per response is
    waste. Threads that see the second change at once each format it: the same line."""
    global _date
    now = int(time.time())
    second, line = _date
    if second != now:
        line = b"Date: " + formatdate(now, usegmt=True).encode() + b"\r\nServer: " + SERVER_NAME + b"\r\n"
        _date = (now, line)
    return line


def _content_type_line(content_type: str) -> bytes:
    line = f"Content-Type: {content_type}\r\n".encode("latin-1")
    if len(_CONTENT_TYPES) < MAX_CACHED_CONTENT_TYPES:
        _CONTENT_TYPES[content_type] = line
    return line


# The line(s) that end a head, by (keep_alive, http10): HTTP/1.1 keeps the connection by
# default; an HTTP/1.0 client assumes the server closes unless told otherwise (RFC 9112
# 9.3, RFC 7230 A.1.2).
_END = {
    (True, False): b"\r\n",
    (True, True): b"Connection: keep-alive\r\n\r\n",
    (False, False): b"Connection: close\r\n\r\n",
    (False, True): b"Connection: close\r\n\r\n",
}


# The last small answer built and what it was built from: (response, Date line, keep_alive,
# head, http10, bytes). A keep-alive client mostly gets what it got last (the app's replies
# are constants), and the Date line changes once a second, so most answers are this lookup.
# Replaced whole, as _date is. Small answers only: keeping a 64 MiB /bytes answer and its
# copy alive until the next answer costs more than the build it saves.
_last_built: tuple[Response | None, bytes, bool, bool, bool, bytes] = (None, b"", False, False, False, b"")
MAX_REMEMBERED_BODY = 4096


@dataclass(slots=True)
class Streamed:
    """An answer whose body is made as it is sent: the head, then each piece in turn. A
    backend sends the pieces as the client takes them, never holding more than a few."""

    head: bytes
    pieces: Iterator[bytes]


def build_response(response: Response, *, keep_alive: bool = True, head: bool = False,
                   http10: bool = False) -> bytes | Streamed:
    """Serialize `response` to one buffer; for HEAD, the headers only; for a body of Pieces
    (not to a HEAD), a Streamed answer."""
    global _last_built
    date = _date_line()
    last = _last_built
    if last[0] is response and last[1] is date and last[2] is keep_alive and last[3] is head and last[4] is http10:
        return last[5]  # a Response is frozen: the same object, flags and second give the same bytes
    status_line = _STATUS_LINES.get(response.status) or f"HTTP/1.1 {response.status} Unknown\r\n".encode()
    content_type = _CONTENT_TYPES.get(response.content_type) or _content_type_line(response.content_type)
    body = response.body
    end = _END[keep_alive, http10]
    if response.headers:
        end = b"".join(f"{name}: {value}\r\n".encode("latin-1") for name, value in response.headers) + end
    if isinstance(body, Pieces):
        head_bytes = b"".join((status_line, date, content_type, b"Content-Length: %d\r\n" % len(body), end))
        return head_bytes if head else Streamed(head_bytes, iter(body))
    data = b"".join((status_line, date, content_type, b"Content-Length: %d\r\n" % len(body), end,
                     b"" if head else body))
    if len(body) <= MAX_REMEMBERED_BODY:
        _last_built = (response, date, keep_alive, head, http10, data)
    return data


def error_response(error: ProtocolError) -> bytes:
    """The self-delimiting text answer to a ProtocolError (headers only to a HEAD)."""
    body = f"{error.status} {error.reason}\n".encode("latin-1", "replace")
    return build_whole(Response(error.status, body), keep_alive=not error.close, head=error.head)


def build_whole(response: Response, *, keep_alive: bool = True, head: bool = False) -> bytes:
    """build_response for a body of bytes, which is always built whole."""
    data = build_response(response, keep_alive=keep_alive, head=head)
    if not isinstance(data, bytes):
        raise TypeError("build_whole takes a body of bytes, not Pieces")
    return data
