"""The response builder: one Response in, one bytes buffer out.

Headers and body leave in a single buffer so the backend can send them with one send():
written separately, with Nagle on, the body waits for the client's delayed ACK (about
40 ms on Linux), which is how the stdlib's HTTP/1.1 server drops to a few hundred req/s.
"""

from __future__ import annotations

import time
from email.utils import formatdate
from http import HTTPStatus
from typing import TYPE_CHECKING

from servers._messages import Response

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


def build_response(response: Response, *, keep_alive: bool = True, head: bool = False, http10: bool = False) -> bytes:
    """Serialize `response` to one buffer; for HEAD, the headers only."""
    status_line = _STATUS_LINES.get(response.status) or f"HTTP/1.1 {response.status} Unknown\r\n".encode()
    content_type = _CONTENT_TYPES.get(response.content_type) or _content_type_line(response.content_type)
    body = response.body
    end = _END[keep_alive, http10]
    if response.headers:
        end = b"".join(f"{name}: {value}\r\n".encode("latin-1") for name, value in response.headers) + end
    return b"".join((status_line, _date_line(), content_type, b"Content-Length: %d\r\n" % len(body), end,
                     b"" if head else body))


def error_response(error: ProtocolError) -> bytes:
    """The self-delimiting text answer to a ProtocolError (headers only to a HEAD)."""
    body = f"{error.status} {error.reason}\n".encode("latin-1", "replace")
    return build_response(Response(error.status, body), keep_alive=not error.close, head=error.head)
