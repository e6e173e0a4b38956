"""What the command line asks of a run beyond its scenario: where results go, the CPUs the
server and the driver are pinned to, and how the load is driven (harness.run.runner runs
it; harness.run.command checks a --cores sweep against the same pinning)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from harness.drivers import MASTER_PORT


def default_pinning(cpu_count: int | None = None) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Split the CPUs in half: the server the first half, the driver the rest.

    On a 2-CPU machine: server on CPU 0, driver on CPU 1. On one CPU both share it (and
    the results say so through the recorded pinning).
    """
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(cpu_count or 1))
    if len(cpus) < 2:
        return tuple(cpus), tuple(cpus)
    half = len(cpus) // 2
    return tuple(cpus[:half]), tuple(cpus[half:])


@dataclass(frozen=True, kw_only=True)
class RunOptions:
    out_root: Path
    server_cpus: tuple[int, ...] | None = None
    driver_cpus: tuple[int, ...] | None = None
    host: str = "127.0.0.1"
    report: bool = True
    # "locust", "wrk", or both in turn against the same server process; the second one's
    # steps are stored under "BACKEND (wrk)", so the two sit side by side in every chart.
    drivers: tuple[str, ...] = ("locust",)
    # Locust load processes. Above 1, Locust's master/worker mode: a master that keeps time and
    # merges the histograms, and this many local workers, one per driver CPU in turn.
    driver_procs: int = 1
    # Workers on other machines (`concurbench worker --master THIS_HOST`) the master also waits
    # for; then it listens on the address of `host`, on `master_port` (Locust's 5557), and counts
    # in only the workers that prove they know `worker_token` (harness.drivers.distributed.protocol).
    remote_workers: int = 0
    worker_token: str = ""
    master_port: int = MASTER_PORT

    def pinning(self, *, counts: tuple[int, ...] = (), share: bool = False) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """(server CPUs, driver CPUs): as given, or the machine split in half. With `share`
        ([server] share_driver_cpus) and a sweep of server CPU counts (`counts`) past the
        server's own, the server's go on into the driver's: on 2 CPUs server 0,1, driver 1."""
        server, driver = default_pinning()
        server, driver = self.server_cpus or server, self.driver_cpus or driver
        if share and counts and max(counts) > len(server):
            server += tuple(cpu for cpu in driver if cpu not in server)
        return server, driver
