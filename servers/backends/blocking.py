"""One client on a blocking socket: the loop that iterative, threaded and forking share.

Those three differ only in who runs this loop (the main thread, a thread, a child
process), as socketserver's mixins differ only in process_request(). gevent runs it in
a greenlet, on sockets that wait in gevent's hub: only how a wait is bounded differs there
(`timeouts_class`).
"""

from __future__ import annotations

import itertools
import socket
import struct
import time
from collections.abc import Iterable

from servers.backends.connection import Connection
from servers.backends.listener import reset_on_close
from servers.backends.responder import Responder
from servers.backends.signals import StopSignals
from servers.config import ServerConfig
from servers.http import ProtocolError, Streamed, error_response

RECV_SIZE = 64 * 1024  # one recv takes a whole pipelined burst or a large chunk of body
# Timeouts are the kernel's (SO_RCVTIMEO/SO_SNDTIMEO) on a blocking socket, not Python's
# settimeout(): that one polls before every recv, one extra syscall per request.
# They are set only when the value changes, which in keep-alive steady state is never.
_MIN_TIMEOUT = 0.001  # a zero timeval means "wait forever" to the kernel


def timeval(seconds: float) -> bytes:
    """SO_RCVTIMEO/SO_SNDTIMEO's struct timeval (at least 1 ms: zero would mean forever)."""
    seconds = max(seconds, _MIN_TIMEOUT)
    return struct.pack("ll", int(seconds), int((seconds % 1) * 1_000_000))


class Timeouts:
    """How a connection's waits are bounded: `receive_within` before each recv, and `send`
    for each answer, which must make progress at least once a send timeout and be taken at
    the minimum send rate: once a send has not taken all it was given, the rest within the
    send timeout plus a second for each `min_rate` bytes taken (by the client or the kernel's
    buffers for it). A client that reads slower is
    dropped with a reset, however steadily it trickles (a 64 MiB answer read at 6 KiB every 8 s
    would otherwise hold a thread or a process for a day). `expired` is what a recv raises
    when its wait ran out."""

    __slots__ = ("sock", "send_timeout", "min_rate")
    expired: type[OSError]

    def __init__(self, sock: socket.socket, send_timeout: float, min_rate: int) -> None:
        self.sock = sock
        self.send_timeout = send_timeout
        self.min_rate = min_rate

    def receive_within(self, seconds: float) -> None:
        raise NotImplementedError

    def send_within(self, seconds: float) -> None:
        """Bound the next send call to `seconds` in all (it returns what it sent by then)."""
        raise NotImplementedError

    def send(self, data: bytes | Streamed) -> None:
        try:
            if isinstance(data, bytes):
                self.send_within(self.send_timeout)
                sent = self.sock.send(data)
                if sent < len(data):
                    self.send_rest((memoryview(data)[sent:],), time.monotonic())
            else:
                self.send_rest(itertools.chain((data.head,), data.pieces), None)
        except (TimeoutError, BlockingIOError):
            reset_on_close(self.sock)  # too slow: its close discards the rest
            raise

    def send_rest(self, chunks: Iterable[bytes | memoryview], start: float | None) -> None:
        """Send `chunks`, the rest of an answer, each send bounded by the send timeout and, from
        `start` (else from the first send not taken whole), by what the minimum rate leaves;
        TimeoutError when nothing is left."""
        send, timeout, rate, monotonic = self.sock.send, self.send_timeout, self.min_rate, time.monotonic
        sent = 0  # since start
        try:
            for chunk in chunks:
                view = memoryview(chunk)
                while view:
                    if start is not None:
                        remaining = start + timeout + sent / rate - monotonic()
                        if remaining <= 0:
                            raise TimeoutError(f"the client took {sent} bytes in {monotonic() - start:.1f} s, "
                                               f"under the minimum send rate of {rate} bytes/s")
                        self.send_within(min(remaining, timeout))  # and progress at least once a timeout
                    taken = send(view)
                    view = view[taken:]
                    if start is not None:
                        sent += taken
                    elif view:
                        start = monotonic()  # the client is behind: the minimum rate counts from here
        finally:
            self.send_within(timeout)


class KernelTimeouts(Timeouts):
    """The kernel's timeouts on a blocking socket: SO_RCVTIMEO for the next recv, and
    SO_SNDTIMEO for the next send (a send that took nothing when it expires fails with
    EAGAIN), each set only when it changes: between answers SO_SNDTIMEO is the whole send
    timeout, so an answer's first send needs no syscall of its own."""

    __slots__ = ("receiving", "sending")
    expired = BlockingIOError

    def __init__(self, sock: socket.socket, send_timeout: float, min_rate: int) -> None:
        super().__init__(sock, send_timeout, min_rate)
        self.receiving = -1.0
        self.sending = -1.0
        self.send_within(send_timeout)

    def receive_within(self, seconds: float) -> None:
        if seconds != self.receiving:
            self.receiving = seconds
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval(seconds))

    def send_within(self, seconds: float) -> None:
        if seconds != self.sending:
            self.sending = seconds
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval(seconds))


class BlockingConnection(Connection):
    """Read, parse, answer, until the client closes, a timeout fires, or we stop.

    `busy` is true only while requests are being answered: a stop signal then waits for
    the answers to go out, while an idle or half-received connection is simply closed.
    """

    __slots__ = ("sock", "busy")
    timeouts_class: type[Timeouts] = KernelTimeouts  # gevent's sockets wait in its hub: their own

    def __init__(self, sock: socket.socket, *, responder: Responder, config: ServerConfig,
                 signals: StopSignals) -> None:
        super().__init__(responder=responder, config=config, signals=signals, now=0.0)  # the clock starts in serve()
        self.sock = sock
        self.busy = False

    def serve(self) -> None:
        try:
            self._serve()
        except OSError:
            pass  # reset, broken pipe, or shut down by a stopping server: nothing to answer
        finally:
            self.busy = False
            self.sock.close()

    def _serve(self) -> None:
        sock, config, signals = self.sock, self.config, self.signals
        # A new connection gets the request timeout from when a thread takes it up; between
        # keep-alive requests the idle timeout applies until the first byte of the next one.
        self.deadline = time.monotonic() + config.request_timeout
        # A client that reads our answers slower than the minimum send rate is dropped.
        timeouts = self.timeouts_class(sock, config.request_timeout, config.min_send_rate)
        self.send_answer = self.emit = timeouts.send
        # Looked up once: a request's loop costs a blocking model's throughput in every lookup.
        recv, receive_within, monotonic = sock.recv, timeouts.receive_within, time.monotonic
        received, keepalive_timeout, expired = self.received, config.keepalive_timeout, timeouts.expired
        # `while True`, not `while not signals.stopping`: 3.11 specializes a function's bytecode
        # only once it is called or loops back (JUMP_BACKWARD) often enough, and a loop on a
        # condition jumps back with POP_JUMP_BACKWARD_IF_FALSE, which does not count, so a
        # connection's loop, entered once, would run unspecialized for all its requests.
        while True:
            if signals.stopping:
                return
            if self.idle and not self.fresh:
                receive_within(keepalive_timeout)  # the same value every time
            else:
                remaining = self.deadline - monotonic()
                if remaining <= 0:
                    self._timed_out()
                    return
                receive_within(remaining)
            try:
                data = recv(RECV_SIZE)
            except expired:
                self._timed_out()
                return
            if not data:
                return
            self.busy = True
            if not received(data, monotonic()):
                return  # an answer closed it, or pipelined work came past the request timeout
            self.busy = False

    def _timed_out(self) -> None:
        """408 if part of a request arrived; a connection that sent nothing just closes."""
        if not self.idle or self.parser.buffered:
            self.emit(error_response(ProtocolError(408, "Request Timeout")))
