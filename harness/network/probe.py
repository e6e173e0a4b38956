"""What a link measures as, seen from the client's namespace: the round trip of a one-user
probe, the rate of bulk transfers, and the TCP retransmissions loss caused. A shaped step
records these next to what was configured, so an emulation that misses its setting shows.

The round trip is the median time of `GET /` on one keep-alive connection across the link,
minus the median of the same probe from inside the server's namespace to its own address
(the server's own time on `/`, which the link does not add). The probes run on a thread that
enters the namespace, so their sockets are made there; they speak just enough HTTP/1.1 for
the project's own app.
"""

from __future__ import annotations

import socket
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from harness.network import netns
from harness.network.link import Link

PROBE_BUDGET_S = 1.0  # a probe stops after this once it has MIN_SAMPLES: at 100 ms, 20 take 2 s
MIN_SAMPLES = 5
CONNECT_TIMEOUT_S = 5.0  # a SYN lost on a lossy link is resent after 1 s, then 2 s
BULK_SECONDS = 0.6  # a bandwidth probe moves about this long's worth at the configured rate
BULK_TRANSFERS = 3  # timed transfers in a bandwidth probe; the fastest counts
BULK_MIN_BYTES, BULK_MAX_BYTES = 128 * 1024, 16 * 2**20
BULK_UNSHAPED_BYTES = 4 * 2**20  # no rate set: enough to see what the relay carries
RECV_SIZE = 256 * 1024

T = TypeVar("T")


class ProbeError(Exception):
    """The probe got no proper answer: the message says from where and what happened."""


def measure_rtt(link: Link, port: int, *, samples: int = 20, budget_s: float = PROBE_BUDGET_S) -> float:
    """The round trip the link adds, in ms: the median `GET /` time across it less the median
    inside the server's namespace. Up to `samples` requests each, fewer (never under
    MIN_SAMPLES) when `budget_s` runs out."""
    across = netns.run_in(link.client_ns, lambda: _guarded(_get_times, link.server_addr, port, samples, budget_s))
    local = netns.run_in(link.server_ns, lambda: _guarded(_get_times, link.server_addr, port, samples, budget_s))
    return max(0.0, statistics.median(across) - statistics.median(local)) * 1000


def measure_bandwidth(link: Link, port: int, *, bytes_: int | None = None,
                      transfers: int = BULK_TRANSFERS) -> float:
    """The rate of `GET /bytes?size=N` across the link, in bits/s, from its first body byte
    to its last, on one connection warmed by a first transfer (so slow start is mostly behind
    it): the fastest of `transfers`. A busy machine can only slow a transfer down (a server
    or relay not scheduled for a while), so the fastest is the nearest to what the link
    carries. N defaults to a share of about BULK_SECONDS at the configured rate."""
    size = bytes_ if bytes_ is not None else _bulk_size(link.shape.bandwidth_bps, transfers)
    return netns.run_in(link.client_ns, lambda: _guarded(_bulk_rate, link.server_addr, port, size, transfers))


def _bulk_size(bandwidth_bps: int | None, transfers: int) -> int:
    if bandwidth_bps is None:
        return BULK_UNSHAPED_BYTES
    return int(min(BULK_MAX_BYTES, max(BULK_MIN_BYTES, bandwidth_bps / 8 * BULK_SECONDS / transfers)))


def _guarded(probe: Callable[..., T], host: str, port: int, *args: Any) -> T:
    """`probe(host, port, *args)`, with a socket's failure made a ProbeError that names where."""
    try:
        return probe(host, port, *args)
    except TimeoutError:
        raise ProbeError(f"{host}:{port} did not answer within {CONNECT_TIMEOUT_S:g} s") from None
    except OSError as error:
        raise ProbeError(f"{host}:{port}: {error.strerror or error}") from None


def _connect(host: str, port: int) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _get_times(host: str, port: int, samples: int, budget_s: float) -> list[float]:
    """Seconds per `GET /` on one keep-alive connection, after one unmeasured request (the
    connection's first pays for the handshake)."""
    request = f"GET / HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    times: list[float] = []
    with _connect(host, port) as sock:
        _exchange(sock, request, host)
        deadline = time.perf_counter() + budget_s
        while len(times) < samples and (len(times) < MIN_SAMPLES or time.perf_counter() < deadline):
            start = time.perf_counter()
            _exchange(sock, request, host)
            times.append(time.perf_counter() - start)
    return times


def _bulk_rate(host: str, port: int, size: int, transfers: int) -> float:
    with _connect(host, port) as sock:
        _exchange(sock, f"GET /bytes?size={min(size, BULK_MIN_BYTES)} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode(),
                  host)
        return max(_timed_transfer(sock, host, size) for _ in range(max(1, transfers)))


def _timed_transfer(sock: socket.socket, host: str, size: int) -> float:
    """Bits/s of one `GET /bytes?size=N`, timed from the first body byte to the last."""
    sock.sendall(f"GET /bytes?size={size} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    head, body = _read_head(sock, host)
    first = time.perf_counter()
    first_bytes = len(body)  # came with the head, before the clock started
    received = first_bytes
    length = _content_length(head, host)
    buffer = bytearray(RECV_SIZE)
    try:
        while received < length:
            count = sock.recv_into(buffer)
            if not count:
                raise ProbeError(f"{host} closed the connection after {received} of {length} bytes")
            received += count
    except TimeoutError:
        raise ProbeError(f"{host} sent nothing for {CONNECT_TIMEOUT_S:g} s, {received} of {length} bytes in") from None
    elapsed = time.perf_counter() - first
    if elapsed <= 0 or length - first_bytes <= 0:
        raise ProbeError(f"a /bytes of {size} bytes from {host} came too fast to time: ask for more")
    return (length - first_bytes) * 8 / elapsed


def _exchange(sock: socket.socket, request: bytes, host: str) -> bytes:
    """Send one request and read its whole answer (a 200 with Content-Length); the body."""
    sock.sendall(request)
    head, body = _read_head(sock, host)
    length = _content_length(head, host)
    while len(body) < length:
        more = sock.recv(max(RECV_SIZE, length - len(body)))
        if not more:
            raise ProbeError(f"{host} closed the connection in the middle of an answer")
        body += more
    return body


def _read_head(sock: socket.socket, host: str) -> tuple[bytes, bytes]:
    """The status line and headers, and whatever of the body came with them."""
    data = b""
    while b"\r\n\r\n" not in data:
        more = sock.recv(RECV_SIZE)
        if not more:
            raise ProbeError(f"{host} closed the connection without an answer")
        data += more
    head, _, body = data.partition(b"\r\n\r\n")
    if not head.startswith((b"HTTP/1.1 200", b"HTTP/1.0 200")):
        raise ProbeError(f"{host} answered {head.splitlines()[0].decode(errors='replace')!r}")
    return head, body


def _content_length(head: bytes, host: str) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    raise ProbeError(f"{host} answered without a Content-Length")


def retransmitted_segments(namespace: str) -> int:
    """TCP segments the kernel has retransmitted in the namespace so far (the `RetransSegs`
    of its /proc/net/snmp): how loss on the link shows in the endpoints' TCP. A difference of
    two readings belongs to what ran between them."""
    text = netns.run_in(namespace, lambda: Path("/proc/thread-self/net/snmp").read_text())
    names, values = [line.split() for line in text.splitlines() if line.startswith("Tcp:")][:2]
    return int(values[names.index("RetransSegs")])
