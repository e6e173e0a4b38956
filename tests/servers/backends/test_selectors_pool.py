"""selectors-pool: what only this model shows, against real server processes.

One selector thread waits on every connection and a pool of N threads answers complete
requests. So idle connections pin no thread (unlike threaded), a request that holds its
thread does not hold the accept loop (unlike selectors), but N threads answer at most N
requests at once, and CPU work still takes turns on the GIL.
"""

from __future__ import annotations

import socket
import time

import psutil
import pytest

from support import Client, LiveServer, StallMeter, request

pytestmark = pytest.mark.timeout(60)

POOL = ("--backend", "selectors-pool")
PROMPT_S = 0.100  # the conformance suite's bar for normal traffic beside slow or idle clients


def cpu_seconds(process: psutil.Process) -> float:
    """User and system CPU seconds of a process and its children."""
    return sum(sum(member.cpu_times()[:2]) for member in (process, *process.children(recursive=True)))


def timed_get(live: LiveServer, target: str = "/") -> float:
    """Seconds for one request on a fresh connection, accept included."""
    started = time.perf_counter()
    client = Client(live.connect())
    client.send(request("GET", target, close=True))
    assert client.read_response().status == 200
    client.close()
    return time.perf_counter() - started


def test_idle_keepalive_connections_pin_no_pool_thread(start_server) -> None:  # type: ignore[no-untyped-def]
    """50 keep-alive connections, each answered once and left idle, beside a pool of 2: all
    stay open and a new client is still answered at once, by a process of 1 + 2 threads.
    (threaded --threads 2 would not answer the third: two idle connections hold its pool.)"""
    live: LiveServer = start_server(*POOL, "--threads", "2", "--keepalive-timeout", "30")
    idle = [Client(live.connect()) for _ in range(50)]
    try:
        for client in idle:
            client.send(request())
            assert client.read_response().status == 200
        with StallMeter() as stalls:
            latencies = [timed_get(live) for _ in range(10)]
        assert psutil.Process(live.pid).num_threads() == 1 + 2  # the selector thread and the pool
        assert max(latencies) < PROMPT_S + stalls.worst_s, (
            f"slowest GET {max(latencies) * 1000:.1f} ms beside 50 idle connections "
            f"(the machine stalled up to {stalls.worst_s * 1000:.1f} ms)")
        for client in idle:  # and none of them was dropped to make room
            client.send(request())
            assert client.read_response().status == 200
    finally:
        for client in idle:
            client.close()


# (pool threads, concurrent /sleep?ms=300 requests, waves): N threads answer N at a time,
# so by Little's law the pool serves at most N / 0.3 s of these per second.
WAVES = [
    pytest.param(2, 4, 2, id="threads2-4-sleeps-2-waves"),
    pytest.param(2, 5, 3, id="threads2-5-sleeps-3-waves"),
    pytest.param(1, 2, 2, id="threads1-2-sleeps-2-waves"),
    pytest.param(4, 4, 1, id="threads4-4-sleeps-1-wave"),
]


@pytest.mark.parametrize(("threads", "requests", "waves"), WAVES)
def test_a_delay_holds_one_pool_thread_so_n_threads_answer_in_waves(
        start_server, threads: int, requests: int, waves: int) -> None:  # type: ignore[no-untyped-def]
    live: LiveServer = start_server(*POOL, "--threads", str(threads))
    clients = [Client(live.connect()) for _ in range(requests)]
    finished = []
    with StallMeter() as stalls:
        started = time.monotonic()
        for client in clients:
            client.send(request("GET", "/sleep?ms=300", close=True))
        for client in clients:
            assert client.read_response().status == 200
            finished.append(time.monotonic() - started)
            client.close()
    slack = 0.2 + stalls.worst_s
    elapsed = max(finished)
    assert 0.3 * waves - 0.05 <= elapsed < 0.3 * waves + slack, f"{elapsed:.2f} s for {waves} wave(s)"
    # The first wave's answers come together, not one at a time.
    first_wave = sorted(finished)[:threads]
    assert max(first_wave) < 0.3 + slack, f"first {threads} answers at {[round(t, 2) for t in first_wave]} s"


def test_cpu_work_holds_a_pool_thread_not_the_accept_loop(start_server) -> None:  # type: ignore[no-untyped-def]
    """While a pool thread burns 1 s of CPU, a new connection is accepted and answered by
    another pool thread (on selectors it would wait the whole second): the GIL is shared,
    but it is switched every 5 ms, so the answer takes a few turns, not the whole burn."""
    live: LiveServer = start_server(*POOL, "--threads", "2")
    burner = Client(live.connect())
    burner.send(request("GET", "/cpu?ms=1000"))
    time.sleep(0.1)  # the burn has begun
    latency = timed_get(live)
    burner.sock.setblocking(False)
    with pytest.raises(BlockingIOError):
        burner.sock.recv(1, socket.MSG_PEEK)  # the burn is still going: / did not wait for it
    burner.sock.setblocking(True)
    assert latency < 0.5, f"GET / took {latency * 1000:.0f} ms beside a 1 s /cpu"
    assert burner.read_response().status == 200
    burner.close()


def test_cpu_work_in_the_pool_takes_turns_on_the_gil(start_server) -> None:  # type: ignore[no-untyped-def]
    """Two /cpu requests in two pool threads run at once (both answers come at the end,
    not one after the other), yet the process uses one CPU at most: Python runs one thread
    at a time, which is where this model stops scaling. (Two processes would use two CPUs
    where two are free; on a host whose CPUs are all busy, they could pass this too.)"""
    live: LiveServer = start_server(*POOL, "--threads", "2")
    process = psutil.Process(live.pid)
    clients = [Client(live.connect()) for _ in range(2)]
    cpu_before = cpu_seconds(process)
    started = time.monotonic()
    for client in clients:
        client.send(request("GET", "/cpu?ms=400", close=True))
    finished = []
    for client in clients:
        assert client.read_response().status == 200
        finished.append(time.monotonic() - started)
        client.close()
    wall = max(finished)
    cpu = cpu_seconds(process) - cpu_before
    assert abs(finished[0] - finished[1]) < 0.3 * wall, f"answers at {finished}: one after the other, not at once"
    assert cpu < 1.3 * wall, f"{cpu:.2f} CPU seconds in {wall:.2f} s: more than one CPU at a time"


def test_a_client_that_does_not_read_holds_a_pool_thread_until_the_request_timeout(
        start_server) -> None:  # type: ignore[no-untyped-def]
    """The pool's send blocks while the client's window is full (there is no write buffer
    to park the answer in, as the selectors loop has), bounded by SO_SNDTIMEO: the send that
    fills the window returns when its wait ends, the next fails, so about twice the request
    timeout. With one thread, the next client waits that long, not forever."""
    live: LiveServer = start_server(*POOL, "--threads", "1", "--request-timeout", "1")
    stalled = live.connect()
    stalled.sendall(request("GET", "/bytes?size=16000000"))  # more than the socket buffers hold; never read
    time.sleep(0.2)  # its thread is blocked in sendall
    waited = timed_get(live)
    try:
        assert 0.8 < waited < 4, f"the next client waited {waited:.2f} s behind a client reading nothing"
        port = stalled.getsockname()[1]
        held = [c for c in psutil.Process(live.pid).net_connections("tcp") if c.raddr and c.raddr.port == port]
        assert held == [], "the server still holds the connection of the client that reads nothing"
    finally:
        stalled.close()
