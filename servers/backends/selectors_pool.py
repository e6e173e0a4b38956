"""selectors-pool: one selector thread waits on every connection; a pool of N threads answers.

The split of gunicorn's gthread worker and Tomcat's NIO connector. The main thread owns the
selector: it accepts, reads and parses. A connection with complete requests leaves the
selector for a queue; one of N pool threads answers them with blocking calls (a Reply's
delay is time.sleep, the answer a blocking send at the minimum rate) and hands the connection
back. Part of a request stays on the selector. gthread's workers read and parse, but then a
client sending a byte at a time costs a round trip through the queue per byte: with the parse
in the pool, 200 such clients left 32 others 0.41 of the requests a second they get with
the parse here.

Against threaded: an idle keep-alive connection costs a selector entry, not a thread.
Against selectors: /cpu or a delay stalls one pool thread, not the accept loop.
Still: CPU work takes turns on the GIL, and N threads answer at most N requests at once,
so blocking work is bounded by Little's law at N / (seconds per request).
"""

from __future__ import annotations

import queue
import selectors
import socket
import threading
import time
from collections import deque
from collections.abc import Sequence

from servers.backends.blocking import KernelTimeouts
from servers.backends.connection import Connection, Item
from servers.backends.events import SWEEP_INTERVAL
from servers.backends.listener import BACKLOG
from servers.backends.selectors_loop import RECV_SIZE
from servers.backends.server import SelectorServer
from servers.backends.signals import drain
from servers.config import POOL_THREADS, ServerConfig
from servers.http import ProtocolError, error_response

TIMED_OUT = error_response(ProtocolError(408, "Request Timeout"))


class PooledConnection(Connection):
    """One client. The selector thread reads and parses it; a pool thread answers it. It
    belongs to one of them at a time, handed over through a queue, so it needs no lock."""

    def __init__(self, sock: socket.socket, server: SelectorsPoolServer) -> None:
        super().__init__(responder=server.responder, config=server.config, signals=server.signals, now=server.now)
        self.sock = sock
        self.items: Sequence[Item] = ()  # complete, for the pool to answer in order
        self.open = True  # False once a pool thread has closed it
        self.on_readable = lambda: server.read(self)  # the selector key's data
        # The pool's blocking sends, each answer at the minimum rate (SO_SNDTIMEO, no poll()
        # before each send as settimeout() would make).
        self.send_answer = self.emit = KernelTimeouts(sock, self.config.request_timeout, self.config.min_send_rate).send

    # The selector thread reads and parses; a pool thread answers: what a read completes
    # always waits for the pool.
    held = True

    def behind(self, items: Sequence[Item]) -> bool:
        self.items = items
        return True


class SelectorsPoolServer(SelectorServer):
    daemon_threads = True  # a pool thread stuck past the shutdown grace must not keep the process alive

    def __init__(self, config: ServerConfig) -> None:
        super().__init__(config)
        self.waiting: set[PooledConnection] = set()  # on the selector: idle or partly received
        self.answering: set[PooledConnection] = set()  # queued for or held by the pool
        self._work: queue.SimpleQueue[PooledConnection | None] = queue.SimpleQueue()
        self._answered: deque[PooledConnection] = deque()  # back from the pool (append is thread-safe)
        # The pool's wake-up for the selector: a byte per connection handed back.
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._threads = [threading.Thread(target=self._pool_thread, name=f"pool-{i}", daemon=self.daemon_threads)
                         for i in range(config.threads or POOL_THREADS)]
        self.now = time.monotonic()  # read once per pass of the loop, after select()

    def server_activate(self) -> None:
        for thread in self._threads:
            thread.start()

    # -- the selector thread -------------------------------------------------------------
    def serve_forever(self, listener: socket.socket) -> None:
        # A signal handler cannot interrupt select() (PEP 475 retries it): the byte the
        # signal writes to the stop signals' wake-up socket wakes the loop instead.
        self.start_accepting(listener)
        wake_r, signal_r = self._wake_r, self.signals.wakeup
        assert signal_r is not None
        self.selector.register(signal_r, selectors.EVENT_READ, lambda: drain(signal_r))
        self.selector.register(wake_r, selectors.EVENT_READ, self._take_back)
        select, monotonic = self.selector.select, time.monotonic
        next_sweep = self.now + SWEEP_INTERVAL
        while True:
            wake_at = min(next_sweep, self.resume_accepting_at or next_sweep)
            ready = select(max(0.0, wake_at - self.now))
            self.now = now = monotonic()  # the one clock read of this pass
            for key, _ in ready:
                key.data()  # a connection's on_readable, accept, a signal's or the pool's wake-up
            if self.resume_accepting_at is not None and now >= self.resume_accepting_at:
                self.resume_accepting()  # the EMFILE back-off is over
            if now >= next_sweep:
                next_sweep = now + SWEEP_INTERVAL
                self._sweep()
            if self.signals.stopping:
                self.stop_accepting()
                for conn in list(self.waiting):
                    self._close(conn)  # idle or partly received: nothing is owed
                if not self.answering or now - self.signals.since > self.config.shutdown_grace:
                    return

    def read(self, conn: PooledConnection) -> None:
        # The socket stays blocking, for the pool's sends (below); this thread reads it
        # with MSG_DONTWAIT, so it never waits on one client, and no fcntl() flips the mode
        # at each hand-over.
        try:
            data = conn.sock.recv(RECV_SIZE, socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""  # reset
        if not data:
            # EOF: every request it sent before is answered (a connection is on the selector
            # only then), and a partial one never will be. A half-close ends here too.
            self._close(conn)
            return
        conn.received(data, self.now)  # parses: what it completes waits for the pool (held)
        if conn.items or conn.parser.client_awaits_continue:  # the pool sends a CONTINUE after the answers owed
            self.selector.unregister(conn.sock)
            self.waiting.discard(conn)
            self.answering.add(conn)
            self._work.put(conn)

    def _take_back(self) -> None:
        drain(self._wake_r)  # before taking: a byte written after this wakes the next select()
        while self._answered:
            conn = self._answered.popleft()
            self.answering.discard(conn)
            if not conn.open:
                continue  # its pool thread closed it
            if self.signals.stopping:
                conn.sock.close()
                continue
            if conn.idle:  # the keep-alive timeout from when it is back on the selector
                conn.deadline = self.now + self.config.keepalive_timeout
            self.waiting.add(conn)
            self.selector.register(conn.sock, selectors.EVENT_READ, conn.on_readable)

    def _sweep(self) -> None:
        """Close connections idle or slow past their deadline; those in the pool are bounded
        by the minimum send rate instead."""
        now = self.now
        for conn in list(self.waiting):
            if now >= conn.deadline:
                if not conn.idle or conn.parser.buffered:
                    try:
                        conn.sock.send(TIMED_OUT, socket.MSG_DONTWAIT)  # never blocks this thread
                    except OSError:
                        pass  # a client that reads nothing gets no 408
                self._close(conn)
        BACKLOG.check()

    def _close(self, conn: PooledConnection) -> None:
        self.waiting.discard(conn)
        self.selector.unregister(conn.sock)
        conn.sock.close()

    def active_connections(self) -> int:
        return len(self.waiting) + len(self.answering)

    def adopt(self, sock: socket.socket) -> None:
        conn = PooledConnection(sock, self)  # a blocking socket: see read
        self.waiting.add(conn)
        self.selector.register(sock, selectors.EVENT_READ, conn.on_readable)

    # -- the pool -----------------------------------------------------------------------------
    def _pool_thread(self) -> None:
        while (conn := self._work.get()) is not None:
            try:
                conn.open = self._answer(conn)
            except OSError:
                conn.open = False  # reset, broken pipe, or a client not reading past the timeout
            if not conn.open:
                conn.sock.close()
            self._answered.append(conn)
            try:
                self._wake_w.send(b"\0")
            except OSError:
                pass  # the socket is full: the selector thread has a wake-up pending already

    def _answer(self, conn: PooledConnection) -> bool:
        """Answer the requests in order, then a CONTINUE that is due; False: close."""
        items, conn.items = conn.items, ()
        return conn.answer_in_order(iter(items), False)

    def server_close(self) -> None:
        """Close what waits, shut down what the pool still holds past the grace (a blocked
        send returns), and join the pool."""
        for conn in list(self.waiting):
            self._close(conn)
        for conn in self.answering:
            try:
                conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # closed by its pool thread meanwhile
        for _ in self._threads:
            self._work.put(None)
        deadline = max(self.signals.since + self.config.shutdown_grace, time.monotonic() + 0.1)
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        self.selector.close()
        if not any(thread.is_alive() for thread in self._threads):
            self._wake_r.close()
            self._wake_w.close()
