"""Background sockets: idle preconnects that never send, and slow clients that trickle.

Imported only by the driver process (harness.drivers.locust.driver).
"""

from __future__ import annotations

import random
import socket

import gevent
import gevent.event
import gevent.hub

from harness.drivers.spec import (
    BackgroundCounts,
    DriverSpec,
)

from harness.drivers.locust.client import RECONNECT_PAUSE_S, RECV_SIZE, read_response

REFUSED_BACKOFF_MAX_S = 5.0



class Background:
    def __init__(self) -> None:
        self.idle_open = self.idle_reconnects = self.slow_requests = self.slow_reconnects = 0
        self.idle_tried = 0  # idle sockets that have made their first connect attempt

    def counts(self) -> BackgroundCounts:
        return BackgroundCounts(self.idle_open, self.idle_reconnects, self.slow_requests, self.slow_reconnects)


def _open(family: socket.AddressFamily, address: tuple, timeout_s: float) -> socket.socket | None:
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(timeout_s)
    try:
        sock.connect(address)
    except OSError:
        sock.close()
        return None
    return sock


def hold_idle(family: socket.AddressFamily, address: tuple, timeout_s: float, bg: Background) -> None:
    """Connect and send nothing, like a browser's preconnect; reopen when the server closes.

    A server at its --max-connections answers 503 and closes: like a browser, back off
    (doubling up to REFUSED_BACKOFF_MAX_S) instead of reconnecting ten times a second, or
    thousands of refused sockets become a connection flood that is all the run measures."""
    first = True
    backoff = RECONNECT_PAUSE_S
    while True:
        sock = _open(family, address, timeout_s)
        if first:
            bg.idle_tried, first = bg.idle_tried + 1, False
        refused = False
        if sock is not None:
            sock.settimeout(None)
            bg.idle_open += 1
            try:
                while data := sock.recv(RECV_SIZE):  # e.g. a 408 before the server closes
                    refused = refused or data.startswith(b"HTTP/1.1 503")
            except OSError:
                pass
            finally:
                bg.idle_open -= 1
                sock.close()
            bg.idle_reconnects += 1
        backoff = min(backoff * 2, REFUSED_BACKOFF_MAX_S) if refused else RECONNECT_PAUSE_S
        gevent.sleep(backoff * (0.5 + random.random()) if refused else backoff)  # jitter: no herd


def trickle(
    family: socket.AddressFamily, address: tuple, request: bytes, spec: DriverSpec, bg: Background
) -> None:
    """Send a valid GET one byte every slow_interval_s (slowloris); reopen when closed."""
    while True:
        sock = _open(family, address, spec.timeout_s)
        if sock is not None:
            try:
                while True:
                    for i in range(len(request)):
                        if i:
                            gevent.sleep(spec.slow_interval_s)
                        sock.sendall(request[i : i + 1])
                    _, close = read_response(sock.recv(RECV_SIZE), sock.recv, False)
                    bg.slow_requests += 1
                    if close:
                        break
            except (OSError, ValueError, IndexError):
                pass
            finally:
                sock.close()
            bg.slow_reconnects += 1
        gevent.sleep(RECONNECT_PAUSE_S)

