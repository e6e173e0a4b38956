"""The emulated link end to end, as root: real namespaces, real TUN devices, the real relay,
and a real backend in the server's namespace. One link serves the module; the tests that
make and break links make their own."""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support import ROOT, LiveServer

from harness.network import netns
from harness.network.link import Link, LinkError, missing, setns_preexec, sweep_leftovers
from harness.network.probe import measure_bandwidth, measure_rtt, retransmitted_segments
from harness.network.shape import Shape, parse_bandwidth

MISSING = missing()
pytestmark = pytest.mark.skipif(MISSING is not None, reason=f"no emulated network here: {MISSING}")

PORT = 8080  # each namespace has its own ports: nothing else is listening there
PRIVATE_PORT = 8081  # the server bound to its namespace's loopback


@pytest.fixture(scope="module")
def link() -> Iterator[Link]:
    with Link("test") as made:
        yield made


@pytest.fixture(scope="module")
def server(link: Link) -> Iterator[LiveServer]:
    live = LiveServer(("--backend", "asyncio", "--host", link.server_addr), port=PORT,
                      preexec=setns_preexec(link.server_ns)).start()
    yield live
    live.kill()


@pytest.fixture
def shaped(link: Link) -> Iterator[Callable[[Shape], None]]:
    """Shape the module's link for one test; it is bare again afterwards."""
    yield link.set_shape
    link.set_shape(Shape())


def fetch(namespace: str, host: str, path: str, port: int = PORT) -> bytes:
    """The body of GET `path`, asked from inside `namespace`."""
    def get() -> bytes:
        connection = http.client.HTTPConnection(host, port, timeout=5)
        try:
            connection.request("GET", path)
            return connection.getresponse().read()
        finally:
            connection.close()
    return netns.run_in(namespace, get)


def namespaces() -> set[str]:
    return set(os.listdir(netns.NETNS_DIR)) if os.path.isdir(netns.NETNS_DIR) else set()


def running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_the_server_is_reachable_across_the_link_at_its_address(link: Link, server: LiveServer) -> None:
    assert fetch(link.client_ns, link.server_addr, "/") == b"Hello, World!"


def test_a_server_bound_to_loopback_in_its_namespace_is_unreachable_from_the_client(link: Link) -> None:
    private = LiveServer(("--backend", "asyncio", "--host", "127.0.0.1"), port=PRIVATE_PORT,
                         preexec=setns_preexec(link.server_ns)).start()
    try:
        assert fetch(link.server_ns, "127.0.0.1", "/", PRIVATE_PORT) == b"Hello, World!"  # it is up
        for host in ("127.0.0.1", link.server_addr):  # the client's own loopback; the link
            with pytest.raises(ConnectionRefusedError):
                fetch(link.client_ns, host, "/", PRIVATE_PORT)
    finally:
        private.kill()


def test_a_40_ms_round_trip_measures_within_10_percent(link: Link, server: LiveServer,
                                                       shaped: Callable[[Shape], None]) -> None:
    shaped(Shape(rtt_ms=40))
    assert measure_rtt(link, PORT) == pytest.approx(40, rel=0.10)


def test_loss_drops_packets_and_tcp_still_delivers(link: Link, server: LiveServer,
                                                   shaped: Callable[[Shape], None]) -> None:
    def connect() -> http.client.HTTPConnection:  # before the loss: a lost SYN waits 1 s
        connection = http.client.HTTPConnection(link.server_addr, PORT, timeout=10)
        connection.connect()
        return connection

    connection = netns.run_in(link.client_ns, connect)
    before, resent_before = link.relay_counters(), retransmitted_segments(link.server_ns)
    shaped(Shape(loss=0.2))
    try:
        connection.request("GET", "/bytes?size=100000")
        body = connection.getresponse().read()
    finally:
        connection.close()
    during = link.relay_counters().since(before)
    assert len(body) == 100_000
    assert during.to_client.lost > 0 and during.to_client.delivered > 0
    assert retransmitted_segments(link.server_ns) > resent_before


def test_a_20_mbit_link_measures_within_15_percent(link: Link, server: LiveServer,
                                                   shaped: Callable[[Shape], None]) -> None:
    shaped(Shape(bandwidth_bps=parse_bandwidth("20mbit")))
    assert measure_bandwidth(link, PORT) == pytest.approx(20e6, rel=0.15)


def test_the_relay_reports_its_cpu(link: Link) -> None:
    assert link.relay_cpu_seconds() > 0  # its start-up alone takes some


def test_close_leaves_no_namespace_device_or_relay() -> None:
    made = Link("test-close")
    names, relay = {made.server_ns, made.client_ns}, made.relay_pid
    assert names <= namespaces() and relay is not None and running(relay)
    made.close()
    assert not names & namespaces()
    assert not running(relay)
    shown = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True).stdout
    assert made.device not in shown  # the devices were never in this namespace, and are gone
    made.close()  # again: nothing to do


def test_a_failure_inside_the_block_still_removes_the_link() -> None:
    with pytest.raises(ZeroDivisionError):
        with Link("test-fails") as made:
            names = {made.server_ns, made.client_ns}
            1 / 0
    assert not names & namespaces()


def test_a_bad_run_id_is_refused_before_anything_is_made() -> None:
    with pytest.raises(LinkError, match="run id"):
        Link("no spaces/here")


def test_a_killed_owners_leftovers_are_swept_and_a_live_ones_are_not(link: Link) -> None:
    # The owner also leaves a process inside its server namespace that does not die with it.
    owner = subprocess.Popen(
        [sys.executable, "-c", "from harness.network.link import Link, setns_preexec; import subprocess, time; "
                               "made = Link('test-killed'); "
                               "inside = subprocess.Popen(['sleep', '60'], preexec_fn=setns_preexec(made.server_ns)); "
                               "print(made.server_ns, made.client_ns, made.relay_pid, inside.pid, flush=True); "
                               "time.sleep(60)"],
        stdout=subprocess.PIPE, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        server_ns, client_ns, relay, inside = owner.stdout.readline().split()  # type: ignore[union-attr]
    finally:
        owner.send_signal(signal.SIGKILL)
        owner.wait()
    deadline = time.monotonic() + 2
    while running(int(relay)) and time.monotonic() < deadline:  # it dies with its owner
        time.sleep(0.01)
    assert not running(int(relay))
    assert {server_ns, client_ns} <= namespaces() and running(int(inside))  # what a killed run leaves

    removed = sweep_leftovers()

    assert {f"namespace {server_ns}", f"namespace {client_ns}", f"process {inside} in namespace {server_ns}"} <= set(
        removed)
    assert not {server_ns, client_ns} & namespaces()
    deadline = time.monotonic() + 2
    while running(int(inside)) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not running(int(inside))
    assert {link.server_ns, link.client_ns} <= namespaces()  # ours: its owner (this process) lives
