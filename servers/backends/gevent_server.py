"""gevent: threaded's model, a thread per connection running the blocking loop, on green
threads. gevent patches socket, select, time and threading, so each "thread" is a greenlet
and each blocking call a switch to gevent's hub, a libev event loop.

The code reads like threads, yet an idle connection is a parked greenlet: some heap and a
descriptor in the hub's epoll set, as on an event loop, not a kernel thread with its stack.
But the switches are cooperative: one /cpu request stalls everyone until it has answered,
as on asyncio, where threads would take turns on the GIL.
"""

from __future__ import annotations

import sys

try:
    from gevent import monkey
except ImportError as error:
    raise ImportError(f"the gevent backend needs gevent, which is not installed for this interpreter "
                      f"({sys.executable}): pip install gevent") from error

# Before the modules below are imported: most of our code looks up socket.socket, select.poll
# and time.sleep when it calls them, but `BaseServer.listener_class = socket.socket` is bound
# at import, and an unpatched listener hands out blocking sockets that stall the whole hub.
# Only this server process imports this module (the registry loads it by name), so only it is
# patched; what __main__ imported before (socket, select, selectors, time) is patched in place.
monkey.patch_all()

import socket  # noqa: E402

from servers.backends.blocking import BlockingConnection, Timeouts  # noqa: E402
from servers.backends.threaded import ThreadedServer  # noqa: E402


class HubTimeouts(Timeouts):
    """Timeouts for a socket that waits in the hub: gevent's descriptors are non-blocking,
    so the kernel's SO_RCVTIMEO never fires and a silent client would hold its greenlet
    forever. settimeout() bounds each wait with a hub timer instead (no syscall), and an
    expired wait raises TimeoutError. One setting serves receives and sends: an answer's
    sends set it from the minimum send rate (gevent's sendall would bound the whole answer
    by one timeout, cutting off a big one to a slow but steady reader)."""

    __slots__ = ("current",)
    expired = TimeoutError

    def __init__(self, sock: socket.socket, send_timeout: float, min_rate: int) -> None:
        super().__init__(sock, send_timeout, min_rate)
        self.current = -1.0

    def receive_within(self, seconds: float) -> None:
        if seconds != self.current:
            self.current = seconds
            self.sock.settimeout(seconds)

    send_within = receive_within


class GeventConnection(BlockingConnection):
    timeouts_class = HubTimeouts


class GeventServer(ThreadedServer):
    """ThreadedServer, unchanged but for its connections' timeouts and how a stop arrives."""

    connection_class = GeventConnection

    def on_stop(self) -> None:
        """Never raise: the handler may run inside the hub greenlet, which prints and
        swallows an exception. It need not: the signal's wake-up byte ends the main
        greenlet's wait in accept, and the loop sees `signals.stopping`; idle connections
        are shut down in server_close, busy ones finish within --shutdown-grace."""
