"""forking: a process per connection (capped and reaped), or (--workers N) pre-fork.

Per connection, the parent accepts and forks; the child serves that one connection and
leaves with os._exit, so it never runs the parent's cleanup. At --max-children the
parent waits for a child to exit, and new connections queue in the backlog. With
--workers N, N processes each accept on the shared listening socket, one connection at
a time (gunicorn's sync worker model).

With --workers N --reuseport, each worker accepts on a listener of its own, all bound to
the same address with SO_REUSEPORT (nginx's `listen ... reuseport`), and the kernel hashes
each new connection to one of them. What the two show:
- One shared accept queue: an idle worker takes the next connection, so none waits while
  a worker idles. But each connection wakes every waiting worker (they wait in poll(),
  which has no exclusive wake-up: tried, 4 of 4 woke) and all but one find nothing to
  accept: the thundering herd. The scheduler picks the winner, and a worker that is
  already running accepts before the woken ones get a CPU, so it can take a burst alone.
- A queue per worker: one wake-up per connection and an even spread, but the hash is
  blind to load: a connection can wait behind a busy worker while another one idles.
  A listener dies with its worker, and the connections in its accept queue are reset
  (SO_REUSEPORT's known cost; net.ipv4.tcp_migrate_req=1, Linux 5.14+, moves them instead).
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
from collections.abc import Callable
import sys
import time
from dataclasses import replace

from servers.backends.listener import BACKLOG, hold_port, make_listener
from servers.backends.log import log
from servers.backends.responder import refuse
from servers.backends.server import BlockingServer
from servers.backends.signals import Stop
from servers.config import ServerConfig

# Blocked around fork() and the bookkeeping after it, so a child that exits at once is
# never reaped before it is recorded, and a stop never leaves a child unrecorded.
_FORK_MASK = {signal.SIGCHLD, signal.SIGTERM, signal.SIGINT}


class ForkingServer(BlockingServer):
    fork_retry = 0.1  # fork() failing with EAGAIN (process limit): wait this long, then retry
    slot_poll = 0.01  # the wait for a free child slot; a short sleep cannot miss a SIGCHLD
    worker_check = 0.5  # how often the pre-fork parent looks for a dead worker to replace

    def __init__(self, config: ServerConfig) -> None:
        super().__init__(config)
        self.children: set[int] = set()
        self._parent = os.getpid()
        self.port_holder: socket.socket | None = None  # --reuseport: the parent's, bound but never listening

    def serve(self) -> None:
        if self.config.reuseport:  # hold the port (port 0 made real) first: every listener opens on it
            self.port_holder = hold_port(self.config)
            self.config = replace(self.config, port=self.port_holder.getsockname()[1])
        super().serve()

    def server_activate(self) -> None:
        self._parent = os.getpid()
        signal.signal(signal.SIGCHLD, self._reap)

    def serve_forever(self, listener: socket.socket) -> None:
        if self.config.workers:
            self._prefork(listener)
        else:
            self.accept_loop(listener, lambda conn: self.process_request(conn, listener))

    def service_actions(self) -> None:
        # --max-connections refuses past its limit; without it, connections past
        # --max-children wait in the backlog until a child exits.
        while self.config.max_connections is None and len(self.children) >= self.config.max_children:
            self.signals.sleep(self.slot_poll)  # SIGCHLD reaps; SIGTERM raises Stop out of the sleep

    def active_connections(self) -> int:
        return len(self.children)

    def _reap(self, signum: int = 0, frame: object = None) -> None:
        """SIGCHLD: collect every exited child, so none lingers as a zombie."""
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self.children.clear()
                return
            if pid == 0:
                return
            self.children.discard(pid)

    def process_request(self, conn: socket.socket, listener: socket.socket | None = None) -> None:
        """The concurrency model in one place: fork, and let the child serve (closing its copy
        of the `listener`)."""
        pid = self._fork()
        if pid == 0:
            if listener is not None:
                listener.close()
            self._child_main(lambda: self.serve_here(conn))
        if pid < 0:
            refuse(conn)  # no process to serve it: a 503 the client can read beats a reset
        else:
            conn.close()

    def _prefork(self, listener: socket.socket) -> None:
        """--workers N: N children, each an iterative server on the shared listener, or
        (--reuseport) on its own: opened here before the fork, so it queues connections
        from the start (the first is `listener`, open before the startup line), and closed
        here after it, so that it dies with its worker."""
        workers = self.config.workers or 1
        own: socket.socket | None = listener
        try:
            while not self.signals.stopping:
                while len(self.children) < workers and not self.signals.stopping:
                    if own is None:
                        own = make_listener(self.config)
                    theirs = own
                    if (pid := self._fork()) == 0:
                        self._child_main(lambda: self._work(theirs))
                    if pid > 0 and self.config.reuseport:
                        own.close()  # the worker's alone now; a failed fork keeps it for the next try
                        own = None
                self.signals.sleep(self.worker_check)  # SIGCHLD reaps a dead worker; the next pass re-forks it
        finally:
            if own is not None and own is not listener:
                own.close()  # a stop came between opening a worker's listener and forking the worker

    def _work(self, listener: socket.socket) -> None:
        """A pre-forked worker's life: accept on `listener` and serve, one connection at a time."""
        if self.port_holder is not None:
            self.port_holder.close()
        BACKLOG.watch(listener, self.config.backlog)
        self.accept_loop(listener, self.serve_here)

    def _fork(self) -> int:
        """fork() and record the child; -1 after logging and backing off if refused (EAGAIN).

        Returns 0 in the child, with the signal mask still blocked: _become_child lifts it.
        """
        signal.pthread_sigmask(signal.SIG_BLOCK, _FORK_MASK)
        try:
            pid = os.fork()
        except OSError as error:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _FORK_MASK)
            log(f"fork failed ({error.strerror}); a connection waiting for it gets a 503; "
                f"next fork in {self.fork_retry}s")
            time.sleep(self.fork_retry)
            return -1
        if pid:
            self.children.add(pid)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _FORK_MASK)
        return pid

    def _child_main(self, work: Callable[[], object]) -> None:
        """Become a child, do its work and leave with os._exit: never the parent's cleanup.
        _become_child runs inside the try: a stop that lands as it unblocks the signals
        raises Stop, which must end here, not unwind into the parent's loop."""
        try:
            self._become_child()
            work()
        except Stop:
            pass
        except BaseException as error:  # noqa: BLE001 - a child must never unwind into the parent's code
            log(f"child {os.getpid()} failed: {error!r}")
            os._exit(1)
        os._exit(0)

    def _become_child(self) -> None:
        _die_with_parent(self._parent)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        self.children = set()
        self.signals.on_stop = self.stop_unless_busy  # a child serves: a busy request finishes
        self.signals.install()  # its own wake-up pair: the parent's is not this child's to drain
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _FORK_MASK)

    def server_close(self) -> None:
        """SIGTERM every child, wait for them within the grace, SIGKILL stragglers, reap."""
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        if self.port_holder is not None:
            self.port_holder.close()
        for pid in list(self.children):
            _kill(pid, signal.SIGTERM)
        deadline = (self.signals.since or time.monotonic()) + self.config.shutdown_grace
        while self.children and time.monotonic() < deadline:
            self._reap()
            time.sleep(0.01)
        for pid in list(self.children):
            _kill(pid, signal.SIGKILL)
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
        self.children.clear()


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


PR_SET_PDEATHSIG = 1  # linux/prctl.h
_PRCTL = None
if sys.platform.startswith("linux"):
    try:
        _PRCTL = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        pass


def _die_with_parent(parent: int) -> None:
    """SIGTERM this child when the server process dies, even by SIGKILL: a pre-forked
    worker blocked in accept() would otherwise outlive it (Linux only)."""
    if _PRCTL is not None:
        _PRCTL(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # it died before prctl took effect
            os.kill(os.getpid(), signal.SIGTERM)
