"""The listening socket: bind, announce, accept (backing off when out of descriptors), and
watch the accept queue. With forking --reuseport, a listener per worker and the parent's
port holder.
"""

from __future__ import annotations

import errno
import selectors
import socket
import struct
import sys
import time
from dataclasses import replace
from pathlib import Path

from servers.backends.log import log
from servers.backends.signals import StopSignals
from servers.config import ServerConfig

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


class BacklogWatch:
    """Logs when the listening socket's accept queue is full, from TCP_INFO (Linux):
    tcpi_unacked is the queue's length and tcpi_sacked its limit on a listener."""

    def __init__(self) -> None:
        self.listener: socket.socket | None = None
        self.next_check = self.next_log = 0.0
        self.full_seen = 0

    def watch(self, listener: socket.socket, backlog: int | None) -> None:
        """Watch `listener` from now on; the first time, say if the kernel caps `backlog`
        (a pre-fork parent opens a listener per worker: one warning, not one each; None:
        whoever opened the listener said it already)."""
        first, self.listener = self.listener is None, listener
        if not first or backlog is None:
            return
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


BACKLOG = BacklogWatch()  # one listener per serving process (forking --reuseport: per worker)


def make_listener(config: ServerConfig, kind: type[socket.socket] = socket.socket) -> socket.socket:
    """A bound, listening, non-blocking TCP socket with SO_REUSEADDR, so a quick restart
    can bind; `kind` is the socket class (asyncio's backend needs its own accept()).
    Non-blocking, because no model may block in accept(): see StopSignals.

    With config.reuseport, SO_REUSEPORT too: each call opens one more listener on the same
    address (forking --reuseport: one per worker), and the kernel hashes each new
    connection to one of them."""
    sock = _bind(config, kind)
    sock.listen(config.backlog)
    sock.setblocking(False)
    BACKLOG.watch(sock, config.backlog)
    return sock


def hold_port(config: ServerConfig) -> socket.socket:
    """forking --reuseport: a socket bound with SO_REUSEPORT that never listens. It makes
    port 0 a real port before any listener opens, and keeps the port while workers and
    their listeners come and go: a bind() without SO_REUSEADDR is refused. (One with it is
    not, while no worker listens: Linux lets SO_REUSEADDR sockets share a port until one
    listens. The holder keeps SO_REUSEADDR to bind over a previous run's TIME_WAIT.)

    Not listening, it takes no share of the connections: Linux hashes a connection only
    among the group's listening sockets. Tried on Linux 6.18: with the holder alone a
    connect() is refused; beside two listeners the holder gets none of 200 connections
    (accept() on it: EINVAL). A holder that listened, with nobody accepting on it, took 91
    of the 200, to wait there until their clients gave up."""
    if config.port:
        # SO_REUSEPORT lets a socket join any group of the same user on the port: another
        # server started on it would share its traffic in silence. Without the option the
        # port must be free, as for every other backend (EADDRINUSE, a clear error).
        _bind(replace(config, reuseport=False), socket.socket).close()
    return _bind(config, socket.socket)


def _bind(config: ServerConfig, kind: type[socket.socket]) -> socket.socket:
    family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
    sock = kind(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if config.reuseport:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((config.host, config.port))
    except BaseException:
        sock.close()
        raise
    return sock


def announce(sock: socket.socket) -> None:
    """The one stdout line, flushed: the launcher reads the real port from it."""
    host, port = sock.getsockname()[:2]
    if ":" in host:
        host = f"[{host}]"
    sys.stdout.write(f"listening on http://{host}:{port}\n")
    sys.stdout.flush()


def tune(conn: socket.socket) -> None:
    """TCP_NODELAY: a response is one buffer, so waiting to coalesce only adds latency."""
    try:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:
        pass  # the peer may already be gone; the first recv or send will say so


_LINGER_NOT = struct.pack("ii", 1, 0)


def reset_on_close(conn: socket.socket) -> None:
    """Make close() send RST and discard what is unsent (SO_LINGER of 0). For a client dropped
    for reading too slowly: a plain close leaves the kernel sending it the rest of its answer,
    megabytes held for as long as it goes on trickling."""
    try:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_NOT)
    except OSError:
        pass  # already gone


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
        log(f"accept failed ({errno.errorcode.get(error.errno or 0, error.errno)}){times}; {doing}")


class AcceptsPaused(Exception):
    """accept_ready took the listener off its selector: the process is out of descriptors.
    The event loop watches it again after ACCEPT_BACKOFF."""


def accept_ready(listener: socket.socket, selector: selectors.BaseSelector) -> socket.socket | None:
    """accept() for an event loop whose `selector` reports `listener` readable: the new
    socket (blocking, as Linux's accept() gives it), or None once the queue is empty or the
    client gave up. Out of descriptors, the listener stays readable and would spin the loop:
    it comes off `selector` and AcceptsPaused is raised; established clients carry on."""
    try:
        return listener.accept()[0]
    except (BlockingIOError, InterruptedError):
        return None
    except OSError as error:
        if error.errno not in ACCEPT_RESOURCE_ERRNOS:
            return None  # ECONNABORTED and the like: that client is gone
        log_accept_failure(error, f"pausing accepts {ACCEPT_BACKOFF}s each time")
        selector.unregister(listener)
        raise AcceptsPaused from None


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
