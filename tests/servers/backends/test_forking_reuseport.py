"""forking --workers N --reuseport: a listener per worker, and the kernel spreads the
connections between them. Real servers, with the sockets read from /proc (Linux)."""

from __future__ import annotations

import errno
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest

from support import ROOT, Client, LiveServer, request

pytestmark = [pytest.mark.timeout(60),
              pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads sockets from /proc")]

SHARED = ("--backend", "forking", "--workers", "2")
REUSEPORT = (*SHARED, "--reuseport")
LISTEN = "0A"  # TCP_LISTEN in /proc/net/tcp


def listen_queues(port: int) -> dict[int, int]:
    """Every IPv4 listening socket on `port`: its inode -> connections waiting in its accept
    queue (for a listener, /proc/net/tcp's rx_queue is the accept queue's length)."""
    queues = {}
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, state, tx_rx, inode = fields[1], fields[3], fields[4], int(fields[9])
        if state == LISTEN and int(local.rsplit(":", 1)[1], 16) == port:
            queues[inode] = int(tx_rx.split(":")[1], 16)
    return queues


def socket_inodes(pid: int) -> set[int]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue  # closed since the listing
        if target.startswith("socket:["):
            inodes.add(int(target[len("socket:["):-1]))
    return inodes


def wait_for(condition: Callable[[], object], what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout}s: {what}"
        time.sleep(0.02)


def workers(live: LiveServer, count: int = 2) -> list[psutil.Process]:
    """The server's `count` workers, once it has that many, each listening where it will."""
    parent = psutil.Process(live.pid)
    wait_for(lambda: len(parent.children()) == count and all(
        socket_inodes(p.pid) & set(listen_queues(live.port)) for p in parent.children()), f"{count} workers up")
    return parent.children()


def wait_dead(worker: psutil.Process) -> None:
    """Killed: a zombie (its sockets closed) or reaped."""
    def dead() -> bool:
        try:
            return worker.status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True
    wait_for(dead, f"worker {worker.pid} dead")


@contextmanager
def parent_stopped(live: LiveServer) -> Iterator[None]:
    """SIGSTOP the server's parent process: no worker is reaped or replaced until SIGCONT."""
    os.kill(live.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(live.pid, signal.SIGCONT)


def answered(live: LiveServer, count: int) -> int:
    """How many of `count` requests, each on a fresh connection, get a 200."""
    ok = 0
    for _ in range(count):
        with live.connect(timeout=3) as sock:
            client = Client(sock)
            client.send(request(close=True))
            ok += client.read_response().status == 200
    return ok


# -- the model: who listens -------------------------------------------------------------------
@pytest.mark.parametrize(("flags", "listeners", "parent_listens"), [
    pytest.param(SHARED, 1, True, id="shared-queue: one listener, in the parent and every worker"),
    pytest.param(REUSEPORT, 2, False, id="reuseport: one listener per worker, none in the parent"),
])
def test_who_holds_the_listeners(start_server: Callable[..., LiveServer], flags: tuple[str, ...], listeners: int,
                                 parent_listens: bool) -> None:
    live = start_server(*flags)
    procs = workers(live)
    listening = set(listen_queues(live.port))
    assert len(listening) == listeners
    held = [socket_inodes(p.pid) & listening for p in procs]
    assert all(len(own) == 1 for own in held), held
    assert len(set().union(*held)) == listeners
    assert bool(socket_inodes(live.pid) & listening) == parent_listens


def test_the_kernel_spreads_connections_over_the_workers(start_server: Callable[..., LiveServer]) -> None:
    """Idle connections: each worker accepts one and waits for its request; the rest wait in
    the accept queue of the listener the kernel hashed them to. Each listener gets its share."""
    live = start_server(*REUSEPORT)
    procs = workers(live)
    count = 64
    clients = [live.connect() for _ in range(count)]
    try:
        def shares() -> list[int]:
            queues = listen_queues(live.port)
            return [sum(queues.get(inode, 0) for inode in socket_inodes(p.pid))
                    + sum(c.status == psutil.CONN_ESTABLISHED for c in p.net_connections("tcp"))
                    for p in procs]
        wait_for(lambda: sum(shares()) == count, f"all {count} connections accepted or queued")
        # A hash of the addresses picks the listener: Binomial(64, 1/2), under 10 with
        # probability 2e-8. One listener taking them all is what a shared queue would look like.
        assert min(shares()) >= 10, shares()
    finally:
        for sock in clients:
            sock.close()


# -- a worker's death ---------------------------------------------------------------------------
def test_a_dead_workers_listener_leaves_with_it(start_server: Callable[..., LiveServer]) -> None:
    """Before any replacement, the survivor's listener is the only one left: every new
    connection is answered, none waits in a listener nobody accepts on."""
    live = start_server(*REUSEPORT)
    victim, survivor = workers(live)
    with parent_stopped(live):
        victim.kill()
        wait_dead(victim)
        listening = set(listen_queues(live.port))
        assert len(listening) == 1 and listening <= socket_inodes(survivor.pid)
        assert answered(live, 20) == 20


def test_a_killed_worker_is_replaced_with_a_listener_of_its_own(start_server: Callable[..., LiveServer]) -> None:
    live = start_server(*REUSEPORT)
    before = workers(live)
    before[0].kill()
    wait_for(lambda: before[0].pid not in {p.pid for p in psutil.Process(live.pid).children()}, "the dead worker reaped")
    after = workers(live)
    assert before[0].pid not in {p.pid for p in after} and before[1].pid in {p.pid for p in after}
    assert len(listen_queues(live.port)) == 2
    assert answered(live, 20) == 20


def test_the_port_stays_reserved_while_every_worker_is_down(start_server: Callable[..., LiveServer]) -> None:
    """The parent's socket holds the port without listening: with no worker left, a plain
    bind() (no SO_REUSEADDR: see hold_port) still cannot take it, and the replacements open
    their listeners on it."""
    live = start_server(*REUSEPORT)
    procs = workers(live)
    with parent_stopped(live):
        for proc in procs:
            proc.kill()
        for proc in procs:
            wait_dead(proc)
        assert listen_queues(live.port) == {}
        with socket.socket() as intruder, pytest.raises(OSError) as refused:
            intruder.bind(("127.0.0.1", live.port))
        assert refused.value.errno == errno.EADDRINUSE
    workers(live)
    assert answered(live, 5) == 5


# -- the command line ----------------------------------------------------------------------------
def run_servers(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "servers", *args], capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=15)


@pytest.mark.parametrize("flags", [
    pytest.param(("--backend", "forking", "--reuseport", "--port", "0"), id="forking without --workers"),
    pytest.param(("--backend", "threaded", "--workers", "2", "--reuseport", "--port", "0"), id="another backend"),
])
def test_reuseport_without_preforked_workers_exits_2_with_one_line(flags: tuple[str, ...]) -> None:
    result = run_servers(*flags)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and "--reuseport" in errors[0] and "--workers" in errors[0], result.stderr
    assert "Traceback" not in result.stderr


def test_a_port_another_reuseport_server_holds_is_a_clear_error(start_server: Callable[..., LiveServer]) -> None:
    """SO_REUSEPORT would let a second server join the first one's group and take half its
    connections in silence; it must fail as on any port in use."""
    first = start_server(*REUSEPORT)
    workers(first)
    result = run_servers(*REUSEPORT, "--port", str(first.port))
    assert result.returncode == 1, result.stderr
    assert "Address already in use" in result.stderr and "Traceback" not in result.stderr
