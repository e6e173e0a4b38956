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


class _DateCache:
    """The Date header changes once a second; formatting it per response is waste."""

    second = -1
    line = b""

    @classmethod
    def get(cls) -> bytes:
        now = int(time.time())
        if now != cls.second:  # a benign race between threads: both write the same value
            cls.line = b"Date: " + formatdate(now, usegmt=True).encode() + b"\r\nServer: " + SERVER_NAME + b"\r\n"
            cls.second = now
        return cls.line


def build_response(response: Response, *, keep_alive: bool = True, head: bool = False, http10: bool = False) -> bytes:
    """Serialize `response` to one buffer; for HEAD, the headers only.

    An HTTP/1.0 client assumes the server closes unless told otherwise, so keeping its
    connection open must be said (RFC 9112 9.3, RFC 7230 A.1.2); HTTP/1.1's default is to keep it.
    """
    status_line = _STATUS_LINES.get(response.status) or f"HTTP/1.1 {response.status} Unknown\r\n".encode()
    content_type = _CONTENT_TYPES.get(response.content_type)
    if content_type is None:
        content_type = f"Content-Type: {response.content_type}\r\n".encode("latin-1")
        if len(_CONTENT_TYPES) < MAX_CACHED_CONTENT_TYPES:
            _CONTENT_TYPES[response.content_type] = content_type
    body = response.body
    parts = [status_line, _DateCache.get(), content_type, b"Content-Length: %d\r\n" % len(body)]
    for name, value in response.headers:
        parts.append(f"{name}: {value}\r\n".encode("latin-1"))
    if not keep_alive:
        parts.append(b"Connection: close\r\n")
    elif http10:
        parts.append(b"Connection: keep-alive\r\n")
    parts.append(b"\r\n")
    if not head and body:
        parts.append(body)
    return b"".join(parts)


def error_response(error: ProtocolError) -> bytes:
    """The self-delimiting text answer to a ProtocolError (headers only to a HEAD)."""
    body = f"{error.status} {error.reason}\n".encode("latin-1", "replace")
    return build_response(Response(error.status, body), keep_alive=not error.close, head=error.head)
