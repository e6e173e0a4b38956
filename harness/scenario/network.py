"""A scenario's [network] table: the link between the clients and the server.

    [network]
    rtt_ms = [0, 20, 100]   # round-trip time: one value, or a sweep run in turn like users
    jitter_ms = 2           # a random extra delay per packet, up to this, each way
    loss = 0.01             # a share of the packets dropped, each way
    bandwidth = "10mbit"    # each way (tc's units: kbit, mbit, gbit; kbps, mbps are bytes)

A scenario with a [network] table runs the server in a network namespace of its own and the
driver in another, joined by an emulated link (harness.network); without one, everything
talks over loopback as before. rtt_ms = 0 still goes through the link: the baseline of a
sweep pays the same path as its other steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from harness.network.shape import Shape, parse_bandwidth
from harness.scenario.fields import _show, _Table

MAX_RTT_MS = 10_000.0  # a link slower than this is a different experiment


@dataclass(frozen=True)
class Network:
    """The [network] table, validated: the round trips each run in turn, and what every step
    of them shares."""

    rtts_ms: tuple[float, ...] = (0.0,)
    jitter_ms: float = 0.0
    loss: float = 0.0
    bandwidth: str | None = None  # as written, e.g. "10mbit"
    bandwidth_bps: int | None = None

    def shape(self, rtt_ms: float) -> Shape:
        """The link's shape for one round trip of the sweep."""
        return Shape(rtt_ms=rtt_ms, jitter_ms=self.jitter_ms, loss=self.loss, bandwidth_bps=self.bandwidth_bps)

    def to_dict(self) -> dict[str, Any]:
        return {"rtt_ms": list(self.rtts_ms), "jitter_ms": self.jitter_ms, "loss": self.loss,
                "bandwidth": self.bandwidth, "bandwidth_bps": self.bandwidth_bps}


def read_network(table: _Table) -> Network:
    """[network] into a Network; a bad value fails naming its key."""
    table.allow("rtt_ms", "jitter_ms", "loss", "bandwidth")
    rtts = rtt_sweep(table, table.data.get("rtt_ms", 0))
    jitter = _milliseconds(table, "jitter_ms", table.data.get("jitter_ms", 0))
    loss = table.data.get("loss", 0)
    if isinstance(loss, bool) or not isinstance(loss, (int, float)) or not 0 <= loss < 1:
        table.fail("loss", f"must be a share of the packets, from 0 up to (not including) 1, e.g. 0.01; "
                           f"got {_show(loss)}")
    bandwidth = table.data.get("bandwidth")
    bps = None
    if bandwidth is not None:
        if not isinstance(bandwidth, str):
            table.fail("bandwidth", f"must be a rate with its unit, e.g. \"10mbit\"; got {_show(bandwidth)}")
        try:
            bps = parse_bandwidth(bandwidth)
        except ValueError as exc:
            table.fail("bandwidth", str(exc))
    return Network(rtts_ms=rtts, jitter_ms=jitter, loss=float(loss), bandwidth=bandwidth, bandwidth_bps=bps)


def rtt_sweep(table: _Table, value: object) -> tuple[float, ...]:
    """rtt_ms: one round trip, or a non-empty array of them, each run in turn."""
    values = value if isinstance(value, list) else [value]
    if not values:
        table.fail("rtt_ms", "empty sweep: give a round trip in ms, or an array of them, e.g. [0, 20, 100]")
    rtts: list[float] = []
    for i, one in enumerate(values):
        rtt = _milliseconds(table, f"rtt_ms[{i}]" if isinstance(value, list) else "rtt_ms", one)
        if rtt in rtts:
            table.fail("rtt_ms", f"lists the round trip {one} ms twice; each value is one step")
        rtts.append(rtt)
    return tuple(rtts)


def _milliseconds(table: _Table, key: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not 0 <= value <= MAX_RTT_MS:
        table.fail(key, f"must be a number of milliseconds from 0 to {MAX_RTT_MS:g}; got {_show(value)}")
    return float(value)
