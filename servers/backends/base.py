"""What every backend shares besides the parser and the app: the listening socket, the
startup line, the access log, the stop signals and the 503 for too many connections.
"""

from __future__ import annotations

import errno
import resource
import select
import signal
import socket
import struct
import sys
import threading
import time
from pathlib import Path
from collections.abc import Callable

from servers.app import App, Reply
from servers.config import ServerConfig
from servers.http import ProtocolError, Request, RequestParser, Response, build_response

# Sent, then the connection closed, when --max-connections is reached.
OVERLOADED = build_response(Response(503, b"Service Unavailable: too many connections\n"), keep_alive=False)
# The answer when the app raises: the request's framing is intact, so the connection lives.
INTERNAL_ERROR = Reply(500, b"Internal Server Error\n")
# accept() failing with EMFILE/ENFILE/ENOBUFS/ENOMEM: the listener stays readable, so
# retrying at once spins the CPU. Back off this long; existing connections keep going.
ACCEPT_BACKOFF = 0.1
ACCEPT_RESOURCE_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
# A full listen queue is invisible to accept(): the kernel drops the SYNs (the clients
# retry after 1 s, 3 s, ...). Look at the queue at most this often, and say so at most once
# per BACKLOG_LOG_INTERVAL.
BACKLOG_CHECK_INTERVAL = 0.5
BACKLOG_LOG_INTERVAL = 5.0
SOMAXCONN = Path("/proc/sys/net/core/somaxconn")


def raise_fd_limit() -> tuple[int, int]:
    """Soft RLIMIT_NOFILE up to the hard limit (as Go and nginx do): a connection is a
    descriptor, and the usual soft 1,024 would be hit long before the model's real limits.
    Returns (soft, hard) after the change; a soft limit that cannot move is left alone."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft, hard


class BacklogWatch:
    """Logs when the listening socket's accept queue is full, from TCP_INFO (Linux):
    tcpi_unacked is the queue's length and tcpi_sacked its limit on a listener."""

    def __init__(self) -> None:
        self.listener: socket.socket | None = None
        self.next_check = self.next_log = 0.0
        self.full_seen = 0

    def watch(self, listener: socket.socket, backlog: int) -> None:
        self.listener = listener
        try:
            cap = int(SOMAXCONN.read_text())
        except (OSError, ValueError):
            return
        if backlog > cap:
            log(f"listen backlog {backlog} is capped by the kernel at net.core.somaxconn={cap}")

    def queue(self) -> tuple[int, int] | None:
        """(connections waiting to be accepted, the queue's limit), or None if unknown."""
        if self.listener is None or not hasattr(socket, "TCP_INFO"):
            return None
        try:
            info = self.listener.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 32)
        except OSError:
            return None
        return struct.unpack_from("6I", info, 8)[4:6] if len(info) >= 32 else None

    def check(self) -> None:
        now = time.monotonic()
        if now < self.next_check:
            return
        self.next_check = now + BACKLOG_CHECK_INTERVAL
        queue = self.queue()
        if queue is None or queue[0] < queue[1]:  # at the limit, the next SYN is dropped
            return
        self.full_seen += 1
        if now >= self.next_log:
            self.next_log = now + BACKLOG_LOG_INTERVAL
            log(f"listen backlog full ({queue[0]} of {queue[1]} waiting to be accepted): the kernel drops new "
                f"connections and their clients will retry (seen {self.full_seen} times; "
                f"raise --backlog and net.core.somaxconn, or serve faster)")


BACKLOG = BacklogWatch()  # one listener per server process


def make_listener(config: ServerConfig, kind: type[socket.socket] = socket.socket) -> socket.socket:
    """A bound, listening, non-blocking TCP socket with SO_REUSEADDR, so a quick restart
    can bind; `kind` is the socket class (asyncio's backend needs its own accept()).
    Non-blocking, because no model may block in accept(): see StopSignals."""
    family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
    sock = kind(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((config.host, config.port))
    sock.listen(config.backlog)
    sock.setblocking(False)
    BACKLOG.watch(sock, config.backlog)
    return sock


def announce(sock: socket.socket) -> None:
    """The one stdout line, flushed: the launcher reads the real port from it."""
    host, port = sock.getsockname()[:2]
    if ":" in host:
        host = f"[{host}]"
    sys.stdout.write(f"listening on http://{host}:{port}\n")
    sys.stdout.flush()


def log(message: str) -> None:
    sys.stderr.write(f"concurbench-server: {message}\n")
    sys.stderr.flush()


def tune(conn: socket.socket) -> None:
    """TCP_NODELAY: a response is one buffer, so waiting to coalesce only adds latency."""
    try:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:
        pass  # the peer may already be gone; the first recv or send will say so


class Responder:
    """Request -> (bytes to send, delay before sending, keep the connection open)."""

    def __init__(self, config: ServerConfig) -> None:
        self.app = App(docroot=config.docroot)
        self.access_log = config.access_log

    def respond(self, request: Request, *, closing: bool = False) -> tuple[bytes, float, bool]:
        try:
            reply: Reply = self.app.handle(request)
        except Exception as error:  # noqa: BLE001 - one request's bug must not take the server down
            log(f'500 for "{request.method} {request.target[:200]}": {type(error).__name__}: {error}')
            reply = INTERNAL_ERROR
        keep_alive = request.keep_alive and not closing
        data = build_response(reply, keep_alive=keep_alive, head=request.method == "HEAD",
                              http10=request.version == "1.0")
        if self.access_log:
            log(f'"{request.method} {request.target} HTTP/{request.version}" {reply.status} {len(reply.body)}')
        return data, reply.delay, keep_alive


class StopSignals:
    """SIGTERM and SIGINT set `stopping`; `on_stop` (if any) runs in the handler.

    Handlers run in the main thread between bytecodes. A blocking call interrupted by
    the signal is retried (PEP 475) unless the handler raises, so `on_stop` may raise to
    wake a main thread that is idle in accept() or recv().

    That alone has a race: a signal that lands just before the main thread enters a
    blocking call (more likely the busier the CPU) interrupts nothing, and the handler
    waits for a wake-up that never comes. So the C-level handler also writes a byte to a
    socketpair (`signal.set_wakeup_fd`), and the main thread waits with `wait_readable`,
    which watches that byte beside its own socket, instead of blocking in the call itself.
    """

    def __init__(self) -> None:
        self.stopping = False
        self.since = 0.0
        self.on_stop: Callable[[], None] | None = None
        self.wakeup: socket.socket | None = None  # readable once a signal has arrived
        self._waker: socket.socket | None = None
        self._pollers: dict[int, select.poll] = {}

    def install(self) -> None:
        """Handlers and a fresh wake-up pair (a forked child calls this again: a pair
        shared with its parent would let one drain the other's wake-up)."""
        self.close()
        self.wakeup, self._waker = socket.socketpair()
        self.wakeup.setblocking(False)
        self._waker.setblocking(False)
        signal.set_wakeup_fd(self._waker.fileno(), warn_on_full_buffer=False)
        signal.signal(signal.SIGTERM, self._handle)
        signal.signal(signal.SIGINT, self._handle)

    def close(self) -> None:
        if self.wakeup is not None:
            signal.set_wakeup_fd(-1)
            self.wakeup.close()
            self._waker.close()  # type: ignore[union-attr]
            self.wakeup = self._waker = None
            self._pollers.clear()

    def wait_readable(self, sock: socket.socket, timeout: float | None = None) -> None:
        """Return once `sock` is readable, a signal has arrived, or `timeout` passes.

        A signal's handler runs as soon as this returns (or raises out of it)."""
        poller = self._pollers.get(sock.fileno())
        if poller is None:
            poller = self._pollers[sock.fileno()] = select.poll()
            poller.register(sock, select.POLLIN)
            if self.wakeup is not None:
                poller.register(self.wakeup, select.POLLIN)
        ready = poller.poll(None if timeout is None else timeout * 1000)
        if self.wakeup is not None and any(fd == self.wakeup.fileno() for fd, _ in ready):
            drain(self.wakeup)

    def sleep(self, seconds: float) -> None:
        """time.sleep that a stop signal always cuts short."""
        if self.wakeup is None:
            time.sleep(seconds)
        else:
            self.wait_readable(self.wakeup, seconds)

    def _handle(self, signum: int, frame: object) -> None:
        if not self.stopping:
            self.stopping = True
            self.since = time.monotonic()
        if self.on_stop is not None:
            self.on_stop()


def drain(sock: socket.socket) -> None:
    """Read a non-blocking socket empty."""
    try:
        while sock.recv(512):
            pass
    except (BlockingIOError, InterruptedError):
        pass


class Stop(Exception):
    """Raised from a signal handler to unwind a main thread that is idle."""


STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}


def start_thread(thread: threading.Thread) -> None:
    """Start `thread` with SIGTERM and SIGINT blocked in it, so they reach the main thread.

    Linux hands a process-directed signal to any thread that does not block it. If a
    worker takes it, CPython only sets a flag, and a main thread blocked in accept() never
    runs the handler: the server ignores SIGTERM. A new thread inherits the mask of the
    thread that starts it, so the mask is set around start() and restored after.
    """
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        thread.start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def refuse(conn: socket.socket) -> None:
    """Over --max-connections: a 503 the client can read, then close."""
    try:
        conn.sendall(OVERLOADED)
    except OSError:
        pass
    finally:
        conn.close()


_accept_failures = {"count": 0, "next_log": 0.0}
ACCEPT_LOG_INTERVAL = 5.0  # a server out of descriptors fails every back-off: say so once in a while


def log_accept_failure(error: OSError, doing: str) -> None:
    """One line for the first accept() failure, then at most one per ACCEPT_LOG_INTERVAL
    with the count since: the condition can last, the log must not flood."""
    _accept_failures["count"] += 1
    now = time.monotonic()
    if now >= _accept_failures["next_log"]:
        count, _accept_failures["count"] = _accept_failures["count"], 0
        _accept_failures["next_log"] = now + ACCEPT_LOG_INTERVAL
        times = f" ({count} times since the last report)" if count > 1 else ""
        log(f"accept failed ({errno.errorcode.get(error.errno, error.errno)}){times}; {doing}")


def accept_or_backoff(listener: socket.socket, signals: StopSignals) -> socket.socket | None:
    """accept() on a non-blocking listener, or None after waiting for one (or a signal),
    or after backing off when the process is out of descriptors.

    Accepting first costs nothing extra when clients are queued; only an empty queue
    waits, in `signals.wait_readable`, where a stop signal cannot be missed.
    """
    try:
        conn, _ = listener.accept()
    except BlockingIOError:
        signals.wait_readable(listener)
        return None
    except OSError as error:
        if error.errno in ACCEPT_RESOURCE_ERRNOS:
            log_accept_failure(error, f"backing off {ACCEPT_BACKOFF}s each time")
            time.sleep(ACCEPT_BACKOFF)
            return None
        if error.errno in (errno.ECONNABORTED, errno.EPROTO, errno.EINTR):
            return None  # the client gave up before we accepted
        raise
    # conn is blocking: Linux's accept() does not pass O_NONBLOCK on, nor does Python.
    tune(conn)
    BACKLOG.check()
    return conn


def parse_all(parser: RequestParser, data: bytes) -> list[Request | ProtocolError]:
    """Requests in order, with a ProtocolError where one occurred (last if it closes).

    The common case is one call to feed(); a recoverable error (a missing Host on a
    request with no body) is followed by whatever else was pipelined behind it.
    """
    try:
        return parser.feed(data)  # type: ignore[return-value]
    except ProtocolError as error:
        items: list[Request | ProtocolError] = [*error.requests, error]
        while not error.close:
            try:
                items.extend(parser.feed(b""))
                break
            except ProtocolError as next_error:
                items.extend(next_error.requests)
                items.append(next_error)
                error = next_error
        return items
