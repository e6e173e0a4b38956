"""The relay's shaping, on datagram socket pairs standing in for the two TUN devices (a
datagram keeps its bounds as a packet does): delays, jitter without reordering, loss, and the
bottleneck's rate and queue. No namespaces, so no root: test_link.py runs the real devices."""

from __future__ import annotations

import io
import os
import socket
import statistics
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from harness.network.relay import BOTTLENECK_QUEUE_MIN_PACKETS, EARLY_S, Relay

MTU = 1500
EARLY_MS = EARLY_S * 1000  # a packet may leave this much before it is due


@dataclass
class Bench:
    """A running relay between a 'server' and a 'client' socket the test holds."""

    relay: Relay
    server: socket.socket
    client: socket.socket
    thread: threading.Thread | None = None

    def start(self) -> None:
        """Run the relay, shaped as the test set it."""
        self.thread = threading.Thread(target=self.relay.run, daemon=True)
        self.thread.start()

    def exchange(self, count: int, *, size: int = 100, spacing_s: float = 0.0,
                 quiet_s: float = 0.15) -> list[tuple[int, float, float]]:
        """Send `count` numbered, stamped packets from the client towards the server, and
        return (number, sent, received) of each one arriving, read as it arrives, until
        none has come for `quiet_s`."""
        got: list[tuple[int, float, float]] = []
        receiver = threading.Thread(target=self._receive, args=(got, quiet_s))
        receiver.start()
        for number in range(count):
            self.client.send(struct.pack("!Id", number, time.monotonic()).ljust(size, b"."))
            if spacing_s:
                time.sleep(spacing_s)
        receiver.join()
        return got

    def _receive(self, got: list[tuple[int, float, float]], quiet_s: float) -> None:
        self.server.settimeout(quiet_s)
        while True:
            try:
                data = self.server.recv(65536)
            except TimeoutError:
                return
            number, sent = struct.unpack_from("!Id", data)
            got.append((number, sent, time.monotonic()))


@pytest.fixture
def bench() -> Iterator[Bench]:
    server, server_side = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    client, client_side = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    for sock in (server_side, client_side):
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * 2**20)
    control_read, control_write = os.pipe()
    relay = Relay(server_side.fileno(), client_side.fileno(), mtu=MTU, control=control_read,
                  replies=io.StringIO(), seed=27)
    made = Bench(relay, server, client)
    yield made  # the test shapes it, then starts it
    os.close(control_write)  # end of input: the relay returns
    if made.thread is not None:
        made.thread.join(5)
        assert not made.thread.is_alive(), "the relay did not stop at the end of its input"
    for sock in (server, server_side, client, client_side):
        sock.close()
    os.close(control_read)


def one_way_ms(got: list[tuple[int, float, float]]) -> list[float]:
    return [(received - sent) * 1000 for _, sent, received in got]


def test_an_unshaped_relay_passes_every_packet_at_once(bench: Bench) -> None:
    bench.start()
    got = bench.exchange(100, spacing_s=0.0005)  # a sender that never sleeps would hold the GIL
    assert [number for number, _, _ in got] == list(range(100))
    assert statistics.median(one_way_ms(got)) < 2


def test_each_packet_waits_half_the_round_trip(bench: Bench) -> None:
    bench.relay.set_shape(rtt_ms=40)
    bench.start()
    delays = one_way_ms(bench.exchange(20, spacing_s=0.002))
    assert len(delays) == 20
    assert 20 - EARLY_MS <= min(delays) and statistics.median(delays) < 21


def test_jitter_spreads_delays_but_never_reorders(bench: Bench) -> None:
    bench.relay.set_shape(rtt_ms=40, jitter_ms=10)  # one way: 20 ms ± 5 ms
    bench.start()
    got = bench.exchange(100, spacing_s=0.001)
    delays = one_way_ms(got)
    assert [number for number, _, _ in got] == list(range(100))
    assert 15 - EARLY_MS <= min(delays) and max(delays) < 26
    assert max(delays) - min(delays) > 5  # spread, not a constant


def test_loss_drops_its_share_and_counts_it(bench: Bench) -> None:
    bench.relay.set_shape(loss=0.25)
    bench.start()
    got = bench.exchange(1000)
    counters = bench.relay.stats()["to_server"]
    assert counters["packets"] == 1000 and counters["lost"] + counters["delivered"] == 1000
    assert len(got) == counters["delivered"]
    assert 200 < counters["lost"] < 300


def test_the_bottleneck_sends_at_its_rate_and_drops_past_its_queue(bench: Bench) -> None:
    bench.relay.set_shape(bandwidth_bps=4_000_000)  # 1000-byte packets: one every 2 ms
    bench.start()
    got = bench.exchange(100, size=1000)  # at once: far more than the queue of 32 packets holds
    counters = bench.relay.stats()["to_server"]
    assert counters["overflow"] == 100 - len(got) > 0
    assert len(got) >= BOTTLENECK_QUEUE_MIN_PACKETS
    gaps = [(later - earlier) * 1000 for (_, _, earlier), (_, _, later) in zip(got, got[1:])]
    assert statistics.median(gaps) == pytest.approx(2.0, rel=0.1)


def test_a_bad_command_is_answered_not_fatal(bench: Bench) -> None:
    assert "error" in bench.relay._command(b'{"shape": {"rtt": 5}}')
    assert "error" in bench.relay._command(b"not json")
    assert bench.relay._command(b'{"shape": {"rtt_ms": 5}}') == {"ok": True}
    assert bench.relay.delay_s == pytest.approx(0.0025)
