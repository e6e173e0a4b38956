"""Stopping: SIGTERM and SIGINT, delivered to the main thread and never missed."""

from __future__ import annotations

import select
import signal
import socket
import time
from collections.abc import Callable


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
    The byte is written whichever thread the kernel hands the signal to, so worker threads
    need no signal mask.
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
        if self._waker is not None:  # install()'s pair
            signal.set_wakeup_fd(-1)
            self._waker.close()
            self._waker = None
        if self.wakeup is not None:
            self.wakeup.close()
            self.wakeup = None
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

