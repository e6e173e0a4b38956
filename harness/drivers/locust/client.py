"""A raw HTTP/1.1 client on gevent: pre-built requests, minimal response framing.

Imported only by the driver process (harness.drivers.locust.driver), after locust has
monkey-patched it with gevent; never by the orchestrator or the servers.
"""

from __future__ import annotations

import bisect
import errno
import itertools
import os
import random
import socket
from collections.abc import Callable

import gevent
import gevent.event
import gevent.hub
from gevent import getcurrent
from gevent.monkey import get_original

from harness.drivers.wire import build_request, destination_host, host_header
from harness.drivers.spec import (
    DriverSpec,
)

RECV_SIZE = 65536  # one recv takes a whole small response; big bodies are counted, not kept
MAX_RESPONSE_HEAD = 65536  # a head bigger than this means the framing is lost
CONNECT_BACKOFF_S = 0.01  # a refused connect returns at once: pause so a dead port can't spin a CPU
RECONNECT_PAUSE_S = 0.1  # background sockets reopen this long after the server closes them
WATCHDOG_PERIOD_S = 0.1  # timeouts are enforced to within this
_NS = 1_000_000_000
RealSocket = get_original("socket", "socket")  # the stdlib class, not gevent's


class ClosedEarly(ConnectionError):
    """The server closed the connection before the response was complete."""


# --- the target and the requests -------------------------------------------------------


def resolve_target(host: str, port: int) -> tuple[socket.AddressFamily, tuple]:
    """Address to connect to. As a destination, 0.0.0.0 (or ::) means this host."""
    family, _, _, _, sockaddr = socket.getaddrinfo(destination_host(host), port, type=socket.SOCK_STREAM)[0]
    return family, sockaddr


class RequestMix:
    """Weighted choice of pre-built requests; `pick()` returns (request bytes, is HEAD)."""

    def __init__(self, spec: DriverSpec) -> None:
        host = host_header(spec.host, spec.port)
        entries = [e for e in spec.requests if e.weight > 0]
        self.entries = [
            (build_request(e, host=host, keep_alive=spec.keep_alive), e.method == "HEAD") for e in entries
        ]
        self.cumulative = list(itertools.accumulate(e.weight for e in entries))
        self.pick: Callable[[], tuple[bytes, bool]] = (
            itertools.repeat(self.entries[0]).__next__ if len(self.entries) == 1 else self._weighted)

    def _weighted(self) -> tuple[bytes, bool]:
        return self.entries[bisect.bisect_right(self.cumulative, random.random() * self.cumulative[-1])]


def read_response(first: bytes, recv: Callable[[int], bytes], head_only: bool) -> tuple[int, bool]:
    """Frame one response from its first chunk plus `recv(n)`; return (status, server will
    close). Content-Length or chunked (external servers use it); the body is never kept.

    Raises ClosedEarly (or another OSError) when the connection fails, ValueError when the
    response cannot be framed.
    """
    buf = first
    end = buf.find(b"\r\n\r\n")
    while end < 0:
        if len(buf) > MAX_RESPONSE_HEAD:
            raise ValueError("response head too long")
        more = recv(RECV_SIZE)
        if not more:
            raise ClosedEarly("connection closed before the response head")
        buf += more
        end = buf.find(b"\r\n\r\n")
    if head_only:
        status, close, length = _frame(buf, end, True)
    else:
        # A server repeats its heads byte for byte (Date changes once a second): each distinct
        # head is framed once, then looked up (0.4 us a response instead of 1.1).
        head = buf[:end]
        framed = _FRAMED.get(head)
        if framed is None:
            framed = _frame(buf, end, False)
            if len(_FRAMED) >= FRAMED_HEADS:
                _FRAMED.clear()
            _FRAMED[head] = framed
        status, close, length = framed
    if length is None:
        return status, close
    if length is _CHUNKED:
        return status, _skip_chunked(buf[end + 4 :], recv) or close
    if length is _UNTIL_CLOSE:
        while recv(RECV_SIZE):  # no length: the body runs until the server closes
            pass
        return status, True
    assert isinstance(length, int)
    have = len(buf) - end - 4
    while have < length:
        more = recv(min(length - have, RECV_SIZE))
        if not more:
            raise ClosedEarly("connection closed in the response body")
        have += len(more)
    return status, close or have > length  # extra bytes: framing lost, start afresh


FRAMED_HEADS = 64  # distinct heads remembered; a server that varies every head only misses
_FRAMED: dict[bytes, tuple[int, bool, object]] = {}
_CHUNKED, _UNTIL_CLOSE = object(), object()  # the body's framing when it has no length


def _frame(buf: bytes, end: int, head_only: bool) -> tuple[int, bool, object]:
    """(status, server will close, body) from the head that ends at `end`; body is the
    Content-Length, None for no body, _CHUNKED or _UNTIL_CLOSE. ValueError if unframeable.
    A function of buf[:end] alone (what it reads past `end` is the blank line)."""
    if not buf.startswith(b"HTTP/1."):
        raise ValueError("not an HTTP/1.x response")
    status = int(buf[9:12])
    head = buf[:end].lower()
    close = b"\r\nconnection: close" in head or buf[7] == 48  # 48: b"0", an HTTP/1.0 response
    if head_only or status < 200 or status == 204 or status == 304:
        return status, close, None
    i = head.find(b"\r\ncontent-length:")
    if i < 0:
        return status, close, _CHUNKED if b"\r\ntransfer-encoding:" in head else _UNTIL_CLOSE
    j = head.find(b"\r\n", i + 2)
    return status, close, int(head[i + 17 : j] if j > 0 else head[i + 17 :])


def _skip_chunked(buf: bytes, recv: Callable[[int], bytes]) -> bool:
    """Read past a chunked body (sizes, data, trailers); True if bytes followed it,
    which means the framing is lost and the connection must start afresh."""
    pos = 0
    while True:
        line_end = buf.find(b"\r\n", pos)
        while line_end < 0:
            more = recv(RECV_SIZE)
            if not more:
                raise ClosedEarly("connection closed in a chunked body")
            buf += more
            line_end = buf.find(b"\r\n", pos)
        size = int(buf[pos:line_end].split(b";", 1)[0], 16)  # ValueError: unframeable
        pos = line_end + 2
        if size == 0:
            end = buf.find(b"\r\n\r\n", pos - 2)  # trailers end with an empty line
            while end < 0:
                more = recv(RECV_SIZE)
                if not more:
                    raise ClosedEarly("connection closed in the trailers")
                buf += more
                end = buf.find(b"\r\n\r\n", pos - 2)
            return end + 4 < len(buf)
        while len(buf) < pos + size + 2:
            more = recv(RECV_SIZE)
            if not more:
                raise ClosedEarly("connection closed in a chunk")
            buf += more
        buf, pos = buf[pos + size + 2 :], 0  # drop what was read: bodies can be large


class RequestTimeout(Exception):
    """Thrown into a user's wait by the watchdog when its request is older than timeout_s."""


class Connection:
    """A non-blocking socket waited on through the gevent hub itself.

    gevent's socket costs, per request, a recv that fails with EAGAIN before every wait and
    a getsockopt(SO_SNDBUF) in sendall; here a request is one send, one wait, one recv.
    Another greenlet may `cancel(exc)` a wait in progress (see watch_timeouts).
    """

    __slots__ = ("sock", "hub", "readable", "writable")

    def __init__(self, family: socket.AddressFamily, hub: gevent.hub.Hub) -> None:
        self.sock = sock = RealSocket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.hub = hub
        self.readable, self.writable = hub.loop.io(sock.fileno(), 1), hub.loop.io(sock.fileno(), 2)

    def connect(self, address: tuple) -> None:
        err = self.sock.connect_ex(address)
        if err == errno.EINPROGRESS:
            self.hub.wait(self.writable)
            err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            raise OSError(err, os.strerror(err))

    def send(self, data: bytes) -> None:
        try:
            sent = self.sock.send(data)  # a request fits the send buffer: one call, no view
        except BlockingIOError:
            sent = 0
        if sent < len(data):
            self._send_rest(memoryview(data)[sent:])

    def _send_rest(self, view: memoryview) -> None:
        while view:
            self.hub.wait(self.writable)
            try:
                view = view[self.sock.send(view) :]
            except BlockingIOError:
                pass

    def recv_reply(self) -> bytes:
        """The first chunk after a send: nothing can be there yet, so wait before reading.

        The wait is hub.wait without its Waiter: the watcher switches straight back to this
        greenlet, which cancel() can still throw into (gevent's own contract for a callback
        that is a greenlet's switch)."""
        readable = self.readable
        readable.start(getcurrent().switch)
        try:
            while True:
                self.hub.switch()
                try:
                    return self.sock.recv(RECV_SIZE)
                except BlockingIOError:
                    pass
        finally:
            readable.stop()

    def recv(self, size: int) -> bytes:
        while True:
            try:
                return self.sock.recv(size)
            except BlockingIOError:
                self.hub.wait(self.readable)

    def cancel(self, exc: BaseException) -> None:
        self.hub.cancel_wait(self.readable, exc)
        self.hub.cancel_wait(self.writable, exc)

    def close(self) -> None:
        self.readable.close()
        self.writable.close()
        self.sock.close()


# --- the users --------------------------------------------------------------------------

