"""One client on a blocking socket: the loop that iterative, threaded and forking share.

Those three differ only in who runs this loop (the main thread, a thread, a child
process), as socketserver's mixins differ only in process_request(). gevent runs it in
a greenlet, on sockets that wait in gevent's hub: only how a wait is bounded differs there
(`timeouts_class`).
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Callable
from typing import Protocol

from servers.backends.responder import Responder
from servers.backends.signals import StopSignals
from servers.config import ServerConfig
from servers.http import CONTINUE, ProtocolError, RequestParser, error_response

RECV_SIZE = 64 * 1024  # one recv takes a whole pipelined burst or a large chunk of body
# Timeouts are the kernel's (SO_RCVTIMEO/SO_SNDTIMEO) on a blocking socket, not Python's
# settimeout(): that one polls before every recv, one extra syscall per request.
# They are set only when the value changes, which in keep-alive steady state is never.
_MIN_TIMEOUT = 0.001  # a zero timeval means "wait forever" to the kernel


def timeval(seconds: float) -> bytes:
    """SO_RCVTIMEO/SO_SNDTIMEO's struct timeval (at least 1 ms: zero would mean forever)."""
    seconds = max(seconds, _MIN_TIMEOUT)
    return struct.pack("ll", int(seconds), int((seconds % 1) * 1_000_000))


class Timeouts(Protocol):
    """How a connection's waits are bounded: `receive_within` before each recv, `send` for
    each answer, and `expired`, what a recv raises when its wait ran out."""

    expired: type[OSError]

    def __init__(self, sock: socket.socket, send_timeout: float) -> None: ...

    def receive_within(self, seconds: float) -> None: ...

    def send(self, data: bytes) -> None: ...


class KernelTimeouts:
    """The kernel's timeouts on a blocking socket: SO_RCVTIMEO for the next recv, set only
    when it changes, and SO_SNDTIMEO once, so a send that makes no progress for that long
    fails. An expired wait fails with EAGAIN."""

    __slots__ = ("sock", "current", "send")
    expired = BlockingIOError

    def __init__(self, sock: socket.socket, send_timeout: float) -> None:
        self.sock = sock
        self.current = -1.0
        self.send = sock.sendall
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval(send_timeout))

    def receive_within(self, seconds: float) -> None:
        if seconds != self.current:
            self.current = seconds
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval(seconds))


class BlockingConnection:
    """Read, parse, answer, until the client closes, a timeout fires, or we stop.

    `busy` is true only while requests are being answered: a stop signal then waits for
    the answers to go out, while an idle or half-received connection is simply closed.
    """

    timeouts_class: type[Timeouts] = KernelTimeouts  # gevent's sockets wait in its hub: their own

    def __init__(self, sock: socket.socket, *, responder: Responder, config: ServerConfig,
                 signals: StopSignals) -> None:
        self.sock = sock
        self.responder = responder
        self.config = config
        self.signals = signals
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
        parser = RequestParser(config.limits)
        respond = self.responder.respond
        # A new connection gets the request timeout from accept; between keep-alive
        # requests the idle timeout applies until the first byte of the next request.
        deadline = time.monotonic() + config.request_timeout
        idle = fresh = True
        # A client that stops reading our answers is dropped after the request timeout.
        timeouts = self.timeouts_class(sock, config.request_timeout)
        send = timeouts.send
        while not signals.stopping:
            if idle and not fresh:
                timeouts.receive_within(config.keepalive_timeout)  # the same value every time
            else:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self._timed_out(parser, idle, send)
                    return
                timeouts.receive_within(remaining)
            try:
                data = sock.recv(RECV_SIZE)
            except timeouts.expired:
                self._timed_out(parser, idle, send)
                return
            if not data:
                return
            if idle:
                idle = False
                if not fresh:
                    deadline = time.monotonic() + config.request_timeout
                fresh = False
            try:
                items = parser.feed(data)  # parser.parse(data), less a call per request
            except ProtocolError as error:
                items = parser.after_error(error)  # type: ignore[assignment]
            if items:
                self.busy = True
                for i, item in enumerate(items):
                    if i and time.monotonic() > deadline:
                        return  # pipelined work past the request timeout is not started: close
                    if type(item) is ProtocolError:
                        send(error_response(item))
                        if item.close:
                            return
                        continue
                    out, delay, keep_alive = respond(item, signals.stopping)  # type: ignore[arg-type]
                    if delay:
                        time.sleep(delay)
                    send(out)
                    if not keep_alive:
                        return
                self.busy = False
                if parser.buffered == 0:
                    idle = True  # the keep-alive timeout applies until the next request's first byte
            if parser.client_awaits_continue:  # after the answers owed before it
                parser.client_awaits_continue = False
                send(CONTINUE)

    def _timed_out(self, parser: RequestParser, idle: bool, send: Callable[[bytes], object]) -> None:
        """408 if part of a request arrived; a connection that sent nothing just closes."""
        if not idle or parser.buffered:
            send(error_response(ProtocolError(408, "Request Timeout")))
