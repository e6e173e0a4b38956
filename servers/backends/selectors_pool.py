"""selectors-pool: one selector thread waits on every connection; a pool of N threads answers.

The split of gunicorn's gthread worker and Tomcat's NIO connector. The main thread owns the
selector: it accepts, reads and parses. A connection with complete requests leaves the
selector for a queue; one of N pool threads answers them with blocking calls (a Reply's
delay is time.sleep, the answer a blocking send at the minimum rate) and hands the connection
back.

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
from collections.abc import Callable

from servers.backends.blocking import KernelTimeouts
from servers.backends.events import MAX_PENDING_OUTPUT, SWEEP_INTERVAL
from servers.backends.listener import ACCEPT_BACKOFF, BACKLOG, AcceptsPaused, accept_ready, tune
from servers.backends.responder import refuse
from servers.backends.selectors_loop import RECV_SIZE
from servers.backends.server import BaseServer
from servers.backends.signals import drain
from servers.config import POOL_THREADS, ServerConfig
from servers.http import CONTINUE, ProtocolError, Request, RequestParser, error_response

TIMED_OUT = error_response(ProtocolError(408, "Request Timeout"))


class PooledConnection:
    """One client. The selector thread reads and parses it; a pool thread answers it. It
    belongs to one of them at a time, handed over through a queue, so it needs no lock."""

    __slots__ = ("sock", "parser", "items", "idle", "fresh", "deadline", "open", "on_readable", "timeouts")

    def __init__(self, sock: socket.socket, config: ServerConfig, now: float,
                 on_readable: Callable[[PooledConnection], None]) -> None:
        self.sock = sock
        self.parser = RequestParser(config.limits)
        self.items: list[Request | ProtocolError] = []  # complete, for the pool to answer in order
        self.idle = True  # no part of a request received since the last answer
        self.fresh = True  # nothing received yet: the request timeout counts from accept
        self.deadline = now + config.request_timeout
        self.open = True  # False once a pool thread has closed it
        self.on_readable = lambda: on_readable(self)  # the selector key's data
        # The pool's blocking sends, each answer at the minimum rate (SO_SNDTIMEO, no poll()
        # before each send as settimeout() would make).
        self.timeouts = KernelTimeouts(sock, config.request_timeout, config.min_send_rate)


class SelectorsPoolServer(BaseServer):
    accepts_per_wakeup = 64  # as selectors: drain a burst of connects, then serve the others
    daemon_threads = True  # a pool thread stuck past the shutdown grace must not keep the process alive

    def __init__(self, config: ServerConfig) -> None:
        super().__init__(config)
        self.selector = selectors.DefaultSelector()
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
        self._listener: socket.socket | None = None
        self._resume_accepting_at: float | None = None
        self.now = time.monotonic()  # read once per pass of the loop, after select()

    def server_activate(self) -> None:
        for thread in self._threads:
            thread.start()

    # -- the selector thread -------------------------------------------------------------
    def serve_forever(self, listener: socket.socket) -> None:
        # A signal handler cannot interrupt select() (PEP 475 retries it): the byte the
        # signal writes to the stop signals' wake-up socket wakes the loop instead.
        self._listener = listener
        wake_r, signal_r = self._wake_r, self.signals.wakeup
        assert signal_r is not None
        self.selector.register(listener, selectors.EVENT_READ, self._accept)
        self.selector.register(signal_r, selectors.EVENT_READ, lambda: drain(signal_r))
        self.selector.register(wake_r, selectors.EVENT_READ, self._take_back)
        select, monotonic = self.selector.select, time.monotonic
        next_sweep = self.now + SWEEP_INTERVAL
        while True:
            wake_at = min(next_sweep, self._resume_accepting_at or next_sweep)
            ready = select(max(0.0, wake_at - self.now))
            self.now = now = monotonic()  # the one clock read of this pass
            for key, _ in ready:
                key.data()  # a connection's on_readable, accept, a signal's or the pool's wake-up
            if self._resume_accepting_at is not None and now >= self._resume_accepting_at:
                self._resume_accepting_at = None  # the EMFILE back-off is over
                if self._listener is not None:
                    self.selector.register(self._listener, selectors.EVENT_READ, self._accept)
            if now >= next_sweep:
                next_sweep = now + SWEEP_INTERVAL
                self._sweep()
            if self.signals.stopping:
                self._stop_accepting()
                for conn in list(self.waiting):
                    self._close(conn)  # idle or partly received: nothing is owed
                if not self.answering or now - self.signals.since > self.config.shutdown_grace:
                    return

    def _read(self, conn: PooledConnection) -> None:
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
        if conn.idle:
            conn.idle = False
            if not conn.fresh:
                conn.deadline = self.now + self.config.request_timeout
            conn.fresh = False
        parser = conn.parser
        try:
            items = parser.feed(data)  # parser.parse(data), less a call per request
        except ProtocolError as error:
            items = parser.after_error(error)  # type: ignore[assignment]
        if items or parser.client_awaits_continue:  # the pool sends a CONTINUE after the answers owed
            conn.items = items  # type: ignore[assignment]
            self.selector.unregister(conn.sock)
            self.waiting.discard(conn)
            self.answering.add(conn)
            self._work.put(conn)

    def _take_back(self) -> None:
        drain(self._wake_r)  # before taking: a byte written after this wakes the next select()
        now, config = self.now, self.config
        while self._answered:
            conn = self._answered.popleft()
            self.answering.discard(conn)
            if not conn.open:
                continue  # its pool thread closed it
            if self.signals.stopping:
                conn.sock.close()
                continue
            conn.idle = conn.parser.buffered == 0  # else part of a pipelined request came with them
            conn.deadline = now + (config.keepalive_timeout if conn.idle else config.request_timeout)
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

    def _accept(self) -> None:
        listener = self._listener
        assert listener is not None
        for _ in range(self.accepts_per_wakeup):
            try:
                sock = accept_ready(listener, self.selector)  # a blocking socket: see _read
            except AcceptsPaused:
                self._resume_accepting_at = self.now + ACCEPT_BACKOFF
                return
            if sock is None:
                return
            if self.over_capacity(len(self.waiting) + len(self.answering)):
                refuse(sock)
                continue
            tune(sock)
            conn = PooledConnection(sock, self.config, self.now, self._read)
            self.waiting.add(conn)
            self.selector.register(sock, selectors.EVENT_READ, conn.on_readable)

    def _stop_accepting(self) -> None:
        if self._listener is not None:
            if self._resume_accepting_at is None:
                self.selector.unregister(self._listener)
            self._listener.close()
            self._listener = None

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
        send, respond, out = conn.timeouts.send, self.responder.respond, []
        items, conn.items = conn.items, []
        for i, item in enumerate(items):
            if i and time.monotonic() > conn.deadline:  # pipelined work past the request timeout: close
                if out:
                    send(b"".join(out))
                return False
            if i and sum(map(len, out)) > MAX_PENDING_OUTPUT:  # sent before more are made
                send(b"".join(out))
                out.clear()
            if type(item) is ProtocolError:
                out.append(error_response(item))
                if item.close:
                    send(b"".join(out))
                    return False
                continue
            data, delay, keep_alive = respond(item, self.signals.stopping)  # type: ignore[arg-type]
            if delay or type(data) is not bytes:
                if out:  # the answers before it do not wait for it, nor go out after its pieces
                    send(b"".join(out))
                    out.clear()
                if delay:
                    time.sleep(delay)  # this pool thread waits: one of N
                if type(data) is not bytes:
                    send(data)  # a body made in pieces, sent as the client takes them
                    if not keep_alive:
                        return False
                    continue
            out.append(data)
            if not keep_alive:
                send(b"".join(out))
                return False
        if conn.parser.client_awaits_continue:
            conn.parser.client_awaits_continue = False
            out.append(CONTINUE)
        if out:
            send(out[0] if len(out) == 1 else b"".join(out))
        return True

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
