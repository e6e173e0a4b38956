"""A run's emulated link ([network]): made once per run, reshaped for each round trip of the
sweep, and measured before each driver starts, so every shaped step records the link it ran
on beside the one it was given (measurement rule 11's other side: a link more than 10% off
its setting, or a relay busy over 90% of its CPU, flags the step).

The server runs in the link's server namespace, bound to the link's own address (127.0.0.1
there is that namespace's loopback, which the driver's namespace cannot reach); the driver
and its local workers run in the client namespace; the relay runs on the driver's CPUs,
where its work is the load's, not the server's. harness.network builds the link.
"""

from __future__ import annotations

from typing import Any

from harness.network.link import Link, LinkError, sweep_leftovers
from harness.network.probe import ProbeError, measure_bandwidth, measure_rtt
from harness.scenario.network import Network

__all__ = ["LinkError", "RunLink", "sweep_leftovers"]


class RunLink:
    """The run's Link and what each round trip of its sweep measured as. Make it on the
    thread that lives as long as the run (the relay dies with the thread that made it)."""

    def __init__(self, network: Network, run_id: str, *, relay_cpus: tuple[int, ...]) -> None:
        self.network = network
        self.link = Link(run_id, relay_cpus=relay_cpus)

    @property
    def server_ns(self) -> str:
        return self.link.server_ns

    @property
    def client_ns(self) -> str:
        return self.link.client_ns

    @property
    def server_addr(self) -> str:
        return self.link.server_addr

    @property
    def relay_pid(self) -> int | None:
        return self.link.relay_pid

    def reshape(self, rtt_ms: float, port: int) -> tuple[dict[str, Any], str | None]:
        """Set the link to the sweep's round trip `rtt_ms` and measure it against the server
        on `port`: the step's "link" record (its relay CPU is the window's, filled in later),
        and why a probe failed, if one did (the record then holds None for it)."""
        shape = self.network.shape(rtt_ms)
        self.link.set_shape(shape)
        record: dict[str, Any] = {"rtt_ms": rtt_ms, "jitter_ms": shape.jitter_ms, "loss": shape.loss,
                                  "bandwidth_bps": shape.bandwidth_bps, "measured_rtt_ms": None,
                                  "measured_bandwidth_bps": None, "relay_cpu_percent": None}
        try:
            record["measured_rtt_ms"] = round(measure_rtt(self.link, port), 3)
            if shape.bandwidth_bps is not None:
                record["measured_bandwidth_bps"] = round(measure_bandwidth(self.link, port))
        except (ProbeError, OSError) as error:
            return record, f"the link at {shape.describe()} was not measured: {error}"
        return record, None

    def close(self) -> None:
        self.link.close()
