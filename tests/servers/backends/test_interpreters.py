"""The interpreters backend: sub-interpreters in one process, each with its own GIL, on one
listener. Real servers under the 3.13 that `make pythons` builds, over real sockets.

What every backend does (routes, timeouts, limits, shutdown) the conformance suite checks on
each interpreter; these are what is particular to this one: the Python it needs, the
parallelism it is for, and what one process of many interpreters must still get right.
"""

from __future__ import annotations

import functools
import glob
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.run import pythons
from support import ROOT, Client, LiveServer, request

pytestmark = pytest.mark.timeout(60)
PYTHON_313 = pythons.built("3.13")
needs_313 = pytest.mark.skipif(PYTHON_313 is None, reason="no Python 3.13 built here: run `make pythons`")


@pytest.fixture
def start(start_server) -> Callable[..., LiveServer]:  # type: ignore[no-untyped-def]
    """start_server, under the 3.13 build."""
    return functools.partial(start_server, python=str(PYTHON_313))


def answered(client: Client, target: str = "/") -> bytes:
    client.send(request("GET", target))
    response = client.read_response()
    assert response.status == 200
    return response.body


@needs_313
def test_it_serves_hello_and_cpu(start) -> None:  # type: ignore[no-untyped-def]
    live = start("--backend", "interpreters", "--interpreters", "2")
    client = Client(live.connect())
    assert answered(client) == b"Hello, World!"
    assert answered(client, "/cpu?ms=5").startswith(b"burned 5 ms")
    assert live.stop() == 0
    assert live.stdout_rest == b"" and b"Traceback" not in live.stderr


@pytest.mark.skipif(sys.version_info >= (3, 13), reason="this Python has sub-interpreters")
def test_an_older_python_is_refused_in_one_line_with_status_2() -> None:
    done = subprocess.run([sys.executable, "-m", "servers", "--backend", "interpreters", "--port", "0"], cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=30)
    assert (done.returncode, done.stdout) == (2, "")
    version = ".".join(map(str, sys.version_info[:3]))
    assert done.stderr == ("error: the interpreters backend needs Python 3.13+ (concurrent.interpreters or "
                           f"_interpreters); this is {version}\n")


# -- parallelism ---------------------------------------------------------------------------------
QUIET_TRIES = 10  # tries with free CPUs before two interpreters that never ran at once fail


def two_cpus() -> list[int] | None:
    cpus = sorted(os.sched_getaffinity(0))
    return cpus[:2] if len(cpus) >= 2 else None


@dataclass(frozen=True)
class CpuShare:
    """What the server's threads did while two /cpu?ms=300 requests were answered at once, in
    CPUs on average: `ran` on one, `waited` for one (busy with other work) (schedstat)."""

    ran: float
    waited: float


def schedstat(pid: int) -> dict[str, tuple[int, int]]:
    """Each thread of `pid`: (ns it has run, ns it has waited for a CPU)."""
    times = {}
    for path in glob.glob(f"/proc/{pid}/task/*/schedstat"):
        try:
            ran, waited, _ = map(int, Path(path).read_text().split())
        except (OSError, ValueError):
            continue  # a thread that ended meanwhile
        times[path] = (ran, waited)
    return times


def two_cpu_requests(live: LiveServer) -> CpuShare:
    clients = [Client(live.connect()) for _ in range(2)]
    for client in clients:
        answered(client)  # accepted, and its thread started, before the window opens
    before, started = schedstat(live.pid), time.monotonic_ns()
    for client in clients:
        client.send(request("GET", "/cpu?ms=300"))
    for client in clients:
        assert client.read_response().status == 200
    after, wall = schedstat(live.pid), time.monotonic_ns() - started
    for client in clients:
        client.close()
    ran = sum(now[0] - before.get(path, (0, 0))[0] for path, now in after.items())
    waited = sum(now[1] - before.get(path, (0, 0))[1] for path, now in after.items())
    return CpuShare(ran / wall, waited / wall)


@needs_313
@pytest.mark.skipif(two_cpus() is None, reason="fewer than 2 CPUs to give the server")
@pytest.mark.skipif(not Path("/proc/self/schedstat").exists(), reason="no per-thread schedstat (Linux)")
def test_two_interpreters_compute_at_once(start) -> None:  # type: ignore[no-untyped-def]
    """Two CPU-bound requests on a server given 2 CPUs can run at once, one per interpreter:
    the server runs on nearly 2 CPUs, so the pair takes about as long as one request.

    Only a try in which the server's threads hardly waited for a CPU can tell (these CPUs
    are shared: while other work holds one, the two take turns on the other, whatever their
    GILs). And the kernel hands each connection to whichever interpreter accepts first
    (servers/backends/interpreters.py): about one try in two, both land in one interpreter,
    whose threads take turns on its GIL (ran about 1, waited about 0: the try's placement,
    not a shared GIL). So the first quiet try that ran on more than 1.5 CPUs passes; quiet
    tries that all stayed at one CPU fail, the sign of interpreters sharing a GIL (with
    placement alone to blame, QUIET_TRIES of them in a row happen once in 2**QUIET_TRIES)."""
    cpus = two_cpus()
    live = start("--backend", "interpreters", "--interpreters", "2", preexec=lambda: os.sched_setaffinity(0, cpus))
    tries = []
    for _ in range(3 * QUIET_TRIES):
        tries.append(two_cpu_requests(live))
        if tries[-1].waited < 0.3 and tries[-1].ran > 1.5:
            return
        quiet = [share for share in tries if share.waited < 0.3]
        if len(quiet) == QUIET_TRIES:
            pytest.fail(f"in {QUIET_TRIES} tries the CPUs were free, the server never ran on more than 1.5: {quiet}")
        time.sleep(0.2)
    waited = sorted(share.waited for share in tries)
    pytest.skip(f"the CPUs were busy with other work in {len(tries) - len(quiet)} of {len(tries)} tries: the "
                f"server's threads waited for a CPU {waited[0]:.1f} to {waited[-1]:.1f} of the time")


@needs_313
def test_threads_of_one_interpreter_take_turns(start) -> None:  # type: ignore[no-untyped-def]
    """The control, on the same Python: threaded's two threads share one GIL, so the server
    never runs on more than about one CPU, however free the CPUs are."""
    cpus = two_cpus() or sorted(os.sched_getaffinity(0))
    live = start("--backend", "threaded", preexec=lambda: os.sched_setaffinity(0, cpus))
    share = two_cpu_requests(live)
    assert share.ran < 1.15, share


# -- what one process of many interpreters must get right -----------------------------------------
@needs_313
def test_idle_keepalive_connections_do_not_block_others(start) -> None:  # type: ignore[no-untyped-def]
    """More idle keep-alive connections than interpreters: each is a parked thread, so a new
    client is answered at once (a blocking loop per interpreter would serve none)."""
    live = start("--backend", "interpreters", "--interpreters", "2")
    idle = [Client(live.connect()) for _ in range(4)]
    for client in idle:
        answered(client)
    fresh = Client(live.connect(timeout=2))
    started = time.monotonic()
    assert answered(fresh) == b"Hello, World!"
    assert time.monotonic() - started < 1
    for client in idle:  # and each idle one is still served
        assert answered(client) == b"Hello, World!"


def admitted(live: LiveServer) -> bool:
    """Whether a new connection is served. A refused one reads a 503 unasked, at once; an
    admitted one waits for its request."""
    client = Client(live.connect())
    client.sock.settimeout(0.3)
    try:
        response = client.read_response()
    except TimeoutError:
        client.sock.settimeout(5)
        client.send(request())
        response = client.read_response()
    finally:
        client.close()
    assert response.status in (200, 503)
    return response.status == 200


@needs_313
def test_max_connections_counts_every_interpreter(start) -> None:  # type: ignore[no-untyped-def]
    """--max-connections 2 with 2 interpreters: a limit per interpreter would admit 4. A
    slot freed in one interpreter admits a client in any."""
    live = start("--backend", "interpreters", "--interpreters", "2", "--max-connections", "2")
    held = [Client(live.connect()) for _ in range(2)]
    for client in held:
        answered(client)
    assert not any(admitted(live) for _ in range(4))
    held.pop().close()
    deadline = time.monotonic() + 5  # the closed connection's thread gives its slot back as it ends
    while not admitted(live):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    answered(held[0])  # and the one held all along is still served


@needs_313
def test_sigterm_finishes_the_inflight_request_and_closes_idle_connections(start) -> None:  # type: ignore[no-untyped-def]
    live = start("--backend", "interpreters", "--interpreters", "2")
    idle = Client(live.connect())
    answered(idle)
    busy = Client(live.connect())
    busy.send(request("GET", "/sleep?ms=600"))
    time.sleep(0.2)
    started = time.monotonic()
    live.process.send_signal(signal.SIGTERM)
    assert busy.read_response().status == 200  # in flight when the signal came: finished
    assert busy.closed_by_server() and idle.closed_by_server()
    assert live.process.wait(10) == 0
    assert time.monotonic() - started < 3
    live.kill()
    assert live.stdout_rest == b"" and b"Traceback" not in live.stderr


@needs_313
def test_a_request_past_the_shutdown_grace_does_not_keep_the_process(start) -> None:  # type: ignore[no-untyped-def]
    """A process does not exit while a sub-interpreter runs a thread, and an isolated
    interpreter has no daemon threads: past the grace, the server leaves without it."""
    live = start("--backend", "interpreters", "--interpreters", "2", "--shutdown-grace", "1")
    busy = Client(live.connect())
    busy.send(request("GET", "/sleep?ms=20000"))
    time.sleep(0.2)
    started = time.monotonic()
    live.process.send_signal(signal.SIGTERM)
    assert live.process.wait(10) == 0
    assert 1 <= time.monotonic() - started < 5  # the grace, the margin, and no more
    live.kill()
    assert b"interpreters still busy past the shutdown grace" in live.stderr
