"""Bounded work per connection: what one client can make a server do and hold.

A client can pack about 1,600 small requests into one 64 KiB read. Every backend answers at
most Limits.max_pipelined of them (then a 503 and close), makes no more of their answers while
the client has not read what it was sent (the event loops; the blocking models send each
answer before making the next), and starts none of them past the request timeout. A client
that reads a big answer slower than --min-send-rate is dropped, and the answer was never built
whole. Run on every backend variant, side by side (support.side_by_side), each on the
harness's own interpreter and on the free-threaded build.
"""

from __future__ import annotations

import socket
import time

import psutil
import pytest

from support import ServerSpec, ServerStart, server_specs
from servers.http import MAX_PIPELINED

pytestmark = pytest.mark.timeout(90)

MIB = 1024 * 1024
# What 100 pipelined 1 MiB answers may add to a server's private memory (its process tree's
# USS) while the client reads none of them: one answer being made and sent, the output held
# back (1 MiB on the event loops) and the allocator's slack. Before these bounds: 97 to 202 MiB.
GROWTH_BOUND = 24 * MIB
BIG = b"".join(b"GET /bytes?size=%d HTTP/1.1\r\nHost: a\r\n\r\n" % MIB for _ in range(MAX_PIPELINED))


def private_memory(pid: int) -> int:
    """The USS of a process and its children: what they alone hold (a forked child's shared
    pages are its parent's)."""
    total = 0
    root = psutil.Process(pid)
    for process in (root, *root.children(recursive=True)):
        try:
            total += process.memory_full_info().uss
        except psutil.NoSuchProcess:
            pass
    return total


def flood_without_reading(start: ServerStart, spec: ServerSpec) -> tuple[int, int]:
    """(private memory growth, status of a GET / on a new connection) after one packet of 100
    pipelined 1 MiB /bytes requests from a client that reads none of the answers."""
    live = start(spec)
    before = private_memory(live.process.pid)
    hostile = socket.create_connection(("127.0.0.1", live.port))
    hostile.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # the kernel holds little for it
    with hostile:
        hostile.sendall(BIG)
        time.sleep(1.0)  # every answer the server would make unread is made in milliseconds
        growth = private_memory(live.process.pid) - before
    # afterwards (iterative serves no one else while it is connected)
    with socket.create_connection(("127.0.0.1", live.port), timeout=10) as probe:
        probe.sendall(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        status = int(probe.recv(64).split(b" ", 2)[1])
    return growth, status


@pytest.mark.parametrize("spec", server_specs())
def test_pipelined_answers_a_client_never_reads_leave_memory_bounded(at_once, spec: ServerSpec) -> None:  # type: ignore[no-untyped-def]
    growth, status = at_once(flood_without_reading)
    assert growth < GROWTH_BOUND, f"{spec.label}: {growth / MIB:.1f} MiB more"
    assert status == 200


SLEEP_MS, TIMEOUT_S, PIPELINED = 400, 1, 8


def pipelined_sleeps(start: ServerStart, spec: ServerSpec) -> tuple[float, int]:
    """(seconds until the server closed, answers it sent) for 8 pipelined /sleep?ms=400 in one
    packet, on a server whose request timeout is 1 s: 3.2 s of answers owed."""
    live = start(spec, "--request-timeout", str(TIMEOUT_S))
    sock = socket.create_connection(("127.0.0.1", live.port), timeout=15)
    with sock:
        began = time.monotonic()
        sock.sendall(b"GET /sleep?ms=%d HTTP/1.1\r\nHost: a\r\n\r\n" % SLEEP_MS * PIPELINED)
        data = bytearray()
        while chunk := sock.recv(65536):
            data += chunk
        return time.monotonic() - began, data.count(b"HTTP/1.1 200 ")


@pytest.mark.parametrize("spec", server_specs())
def test_pipelined_slow_work_stops_at_the_request_timeout_plus_one_answer(at_once, spec: ServerSpec) -> None:  # type: ignore[no-untyped-def]
    held, answers = at_once(pipelined_sleeps)
    # At 0.4 s an answer, the timeout falls during the third: it is sent, the rest are not.
    assert 1 <= answers < PIPELINED, answers
    assert held < TIMEOUT_S + SLEEP_MS / 1000 + 1.0, f"held {held:.2f} s"


# A client that reads 4 KiB every 0.1 s (40 KiB/s) from a 64 MiB /bytes, on a server that asks
# for 1 MiB/s after a 1 s request timeout: it is dropped once the time the kernel's buffers
# (a few MiB on loopback) buy it runs out. Before the minimum rate, it was held as long as it
# went on reading, and /bytes was built whole: 64 MiB (and a copy) of the server's memory.
TRICKLE, TRICKLE_EVERY, RATE, TRICKLE_FOR = 4096, 0.1, MIB, 20.0


def slow_reader(start: ServerStart, spec: ServerSpec) -> tuple[float, int, int, int]:
    """(seconds until the server dropped the connection, or TRICKLE_FOR if it did not; bytes
    read; the largest private memory growth seen; the status of a GET / afterwards)."""
    live = start(spec, "--request-timeout", "1", "--min-send-rate", str(RATE))
    before = private_memory(live.process.pid)
    growth = 0
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connecting: the window stays small
    sock.settimeout(5)
    sock.connect(("127.0.0.1", live.port))
    got = 0
    with sock:
        sock.sendall(b"GET /bytes?size=%d HTTP/1.1\r\nHost: a\r\n\r\n" % (64 * MIB))
        began = time.monotonic()
        while (held := time.monotonic() - began) < TRICKLE_FOR:
            try:
                chunk = sock.recv(TRICKLE)
            except ConnectionResetError:
                break
            if not chunk:
                break
            got += len(chunk)
            growth = max(growth, private_memory(live.process.pid) - before)
            time.sleep(TRICKLE_EVERY)
    with socket.create_connection(("127.0.0.1", live.port), timeout=10) as probe:
        probe.sendall(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        status = int(probe.recv(64).split(b" ", 2)[1])
    return held, got, growth, status


@pytest.mark.parametrize("spec", server_specs())
def test_a_client_reading_under_the_minimum_send_rate_is_dropped_and_holds_little(at_once, spec: ServerSpec) -> None:  # type: ignore[no-untyped-def]
    held, got, growth, status = at_once(slow_reader)
    assert got > 0, "the slow reader got nothing: the test measured no trickle"
    assert held < TRICKLE_FOR / 2, f"{spec.label}: held {held:.1f} s, reading {got / held / 1024:.0f} KiB/s"
    assert growth < GROWTH_BOUND, f"{spec.label}: {growth / MIB:.1f} MiB more"
    assert status == 200
