"""selectors: one thread, non-blocking sockets, and a hand-written event loop.

selectors.DefaultSelector picks epoll here (kqueue on BSD). Each connection has a read
side (the parser's buffer) and a write buffer for partial sends: when send() takes only
part of an answer (EAGAIN), the rest waits for EVENT_WRITE. A timer heap holds Reply
delays and the timeout sweep. Nothing in the loop blocks except select() itself.
"""

from __future__ import annotations

import heapq
import itertools
import selectors
import socket
import time
from collections.abc import Callable

from servers.backends.events import SWEEP_INTERVAL, EventConnection
from servers.backends.listener import ACCEPT_BACKOFF, BACKLOG, reset_on_close
from servers.backends.server import SelectorServer
from servers.backends.signals import drain
from servers.config import MAX_PENDING_OUTPUT, ServerConfig

RECV_SIZE = 64 * 1024


class SelectorConnection(EventConnection):
    def __init__(self, sock: socket.socket, loop: SelectorsServer) -> None:
        super().__init__(responder=loop.responder, config=loop.config, signals=loop.signals, clock=loop)
        self.sock = sock
        self.loop = loop
        self.out = bytearray()  # what send() has not taken yet
        self.mask = selectors.EVENT_READ

    def on_readable(self) -> None:
        try:
            data = self.sock.recv(RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.abort()
            return
        if not data:
            self._want(selectors.EVENT_WRITE if self.out else 0)  # EOF stays readable: stop asking
            self.peer_closed()  # a half-close: answers owed are still sent
            return
        self.arrived(data)

    def write(self, data: bytes) -> None:
        self.written += len(data)
        if self.out:
            self.out += data
        else:
            try:
                sent = self.sock.send(data)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                self.abort()
                return
            if sent == len(data):
                return
            self.out += data[sent:]
        self._want(selectors.EVENT_WRITE | (selectors.EVENT_READ if len(self.out) < MAX_PENDING_OUTPUT and
                                            not self.eof else 0))

    def on_writable(self) -> None:
        try:
            sent = self.sock.send(self.out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.abort()
            return
        del self.out[:sent]  # the sweep holds the client to the minimum send rate, not to each send
        if self.out:
            return
        if self.stream is not None or (self.queue and not self.waiting and not self.closing):
            self.resume()  # it wrote (and chose the events it waits for) or closed
            return
        if self.closing and not self.waiting:
            self.abort()
        else:
            self._want(0 if self.eof else selectors.EVENT_READ)

    def on_event(self, mask: int) -> None:
        """The selector key's data: the loop calls this, with no lookup, for each event."""
        if mask & selectors.EVENT_WRITE:
            self.on_writable()
        if mask & selectors.EVENT_READ and not self.closed:
            self.on_readable()

    def _want(self, mask: int) -> None:
        """Watch for these events; 0 (a half-closed client waiting on a timer): none."""
        if mask != self.mask and not self.closed:
            selector = self.loop.selector
            if not mask:
                selector.unregister(self.sock)
            elif not self.mask:
                selector.register(self.sock, mask, self.on_event)
            else:
                selector.modify(self.sock, mask, self.on_event)
            self.mask = mask

    def call_later(self, delay: float, callback: Callable[..., object], *args: object) -> None:
        self.loop.call_later(delay, callback, *args)

    def pending_output(self) -> int:
        return len(self.out)

    def close(self) -> None:
        if not self.out:
            self.abort()
        # else on_writable closes once the buffer drains

    def abort(self, reset: bool = False) -> None:
        if self.closed:
            return
        if reset:
            reset_on_close(self.sock)
        self.closed = True
        self.loop.forget(self)
        self.sock.close()


class SelectorsServer(SelectorServer):
    def __init__(self, config: ServerConfig) -> None:
        super().__init__(config)
        self.connections: set[SelectorConnection] = set()
        self._timers: list[tuple[float, int, Callable[..., object], tuple[object, ...]]] = []
        self._seq = itertools.count()
        self.now = time.monotonic()  # read once per pass of the loop, after select()

    def call_later(self, delay: float, callback: Callable[..., object], *args: object) -> None:
        heapq.heappush(self._timers, (self.now + delay, next(self._seq), callback, args))

    def forget(self, conn: SelectorConnection) -> None:
        self.connections.discard(conn)
        try:
            self.selector.unregister(conn.sock)
        except (KeyError, ValueError):
            pass

    def serve_forever(self, listener: socket.socket) -> None:
        # A signal handler cannot interrupt select() (PEP 475 retries it), so the handler's
        # byte on the signals' wake-up socket wakes the loop instead.
        self.start_accepting(listener)
        wake_r = self.signals.wakeup
        assert wake_r is not None
        self.selector.register(wake_r, selectors.EVENT_READ, lambda mask: drain(wake_r))
        self.call_later(SWEEP_INTERVAL, self._sweep)
        self._run()

    def server_close(self) -> None:
        for conn in list(self.connections):
            conn.abort()
        self.selector.close()

    def _run(self) -> None:
        select = self.selector.select
        timers = self._timers  # never empty: the sweep re-arms itself
        monotonic = time.monotonic
        stopping_since = None
        while True:
            ready = select(max(0.0, timers[0][0] - self.now))
            self.now = now = monotonic()  # the one clock read of this pass
            for key, mask in ready:
                key.data(mask)  # a connection's on_event, the listener's accept, the wake-up's drain
            while timers and timers[0][0] <= now:
                _, _, callback, args = heapq.heappop(timers)
                callback(*args)
            if self.signals.stopping:
                if stopping_since is None:
                    stopping_since = now
                    self.stop_accepting()
                for conn in list(self.connections):
                    conn.stop()
                if not self.connections or now - stopping_since > self.config.shutdown_grace:
                    return

    def active_connections(self) -> int:
        return len(self.connections)

    def adopt(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        conn = SelectorConnection(sock, self)
        self.connections.add(conn)
        self.selector.register(sock, selectors.EVENT_READ, conn.on_event)

    def pause_accepts(self) -> None:
        self.call_later(ACCEPT_BACKOFF, self.resume_accepting)  # the timer heap wakes the loop for it

    def _sweep(self) -> None:
        now = self.now
        for conn in list(self.connections):
            conn.check_deadline(now)
        BACKLOG.check()
        self.call_later(SWEEP_INTERVAL, self._sweep)

