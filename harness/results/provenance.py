"""Where and how a run was made (measurement rule 6), as its results.json records it: the
machine, the pinning, the git commit, the scenario file's hash, the order backends started in and
the latency floor. `raw` keeps everything recorded, for the report to list; the fields are what
the stages read."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from harness.results.checked import Checked


@dataclass(frozen=True)
class Metadata:
    """A run's metadata; None where it was not recorded."""

    raw: Mapping[str, Any] = field(default_factory=dict)
    hostname: str | None = None
    cpu_model: str | None = None
    date: str | None = None
    commit: str | None = None
    dirty: bool = False
    server_cpus: tuple[int, ...] | None = None  # the pinning
    driver_cpus: tuple[int, ...] | None = None
    scenario_sha256: str | None = None
    order: tuple[str, ...] = ()  # the backend of each entry of metadata "order", as the run started them
    latency_floor: Mapping[str, Any] | None = None  # harness/run/floor.py's record (summary.floor_line)


def metadata_of(c: Checked) -> Metadata:
    pinning, git, scenario = c.opt_sub("pinning"), c.opt_sub("git"), c.opt_sub("scenario")

    def cpus(side: str) -> tuple[int, ...] | None:
        return tuple(pinning.ints(side)) if pinning and pinning.data.get(side) is not None else None
    return Metadata(
        raw=c.data, hostname=c.opt_str("hostname"), cpu_model=c.opt_str("cpu_model"), date=c.opt_str("date"),
        commit=git.opt_str("commit") if git else None, dirty=bool(git and git.opt_bool("dirty")),
        server_cpus=cpus("server"), driver_cpus=cpus("driver"),
        scenario_sha256=scenario.opt_str("sha256") if scenario else None,
        order=tuple(entry.text("backend") for entry in c.items("order")),
        latency_floor=c.free("latency_floor") if c.data.get("latency_floor") is not None else None)
