"""What the orchestrator measures around each window: the server's CPU time and memory, the
whole driver's CPU per driver CPU, the hypervisor's steal on both sides, and what other
processes used on the server's CPUs.

Counters (CPU seconds, /proc/stat jiffies) are sampled at every driver event (about twice a
second) and read at the window's two boundaries by linear interpolation between the samples
around each: the window ends when its "result" event arrived, and began `duration_s` (the
driver's exact figure) before. Memory is the peak over the samples inside the window.

Steal (measurement rule 11) comes from the per-CPU lines of /proc/stat: the 8th value is the
jiffies the hypervisor ran something else while this CPU had work. The share is steal over
all jiffies of those CPUs (user .. steal; guest and guest_nice are already inside user and
nice, so they are not added again).

Others (measurement rule 11 too): what ran on the server's CPUs besides the server's process
tree and the driver (where it shares a server CPU): busy jiffies of those CPUs (user, nice,
system) over the window, less the server tree's CPU seconds and the driver's on them. Another
process of this machine on the server's CPUs takes CPU time as steal does, but the hypervisor
does not see it. Interrupt and softirq jiffies are left out: on loopback they are the kernel
moving the load's own packets, charged to no process, not a neighbour's work.
"""

from __future__ import annotations

import ctypes
import functools
import os
import sys
import time
from bisect import bisect_right
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

PROC_STAT = Path("/proc/stat")
STEAL_AT_START_S = 0.5  # how long the steal at the start of a run is measured over
# /proc/stat counts in USER_HZ ticks (100 a second on Linux), as /proc/PID/stat does the
# process times psutil reads.
TICKS_PER_S = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

Jiffies = dict[int, tuple[int, int, int]]  # CPU -> (steal, total, busy: user + nice + system) so far


def read_jiffies(path: Path = PROC_STAT) -> Jiffies | None:
    """Per CPU, (steal, all, busy) jiffies since boot from /proc/stat, busy being user + nice
    + system (what processes ran); None if it cannot be read (not Linux, no /proc). A kernel
    that lists fewer than 8 values has no steal: 0."""
    try:
        text = path.read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    cpus: Jiffies = {}
    for line in text.splitlines():
        name, _, rest = line.partition(" ")
        if not (name.startswith("cpu") and name[3:].isdigit()):
            continue  # "cpu" (the sum of all), intr, ctxt, ...
        try:
            values = [int(v) for v in rest.split()[:8]]
        except ValueError:
            continue
        cpus[int(name[3:])] = (values[7] if len(values) >= 8 else 0, sum(values), sum(values[:3]))
    return cpus or None


def steal_percent(before: Jiffies | None, after: Jiffies | None, cpus: Iterable[int]) -> float | None:
    """Steal over all jiffies of `cpus` between two readings, in percent; None when either
    reading is missing, holds none of those CPUs, or no jiffy passed."""
    if before is None or after is None:
        return None
    common = [cpu for cpu in cpus if cpu in before and cpu in after]
    total = sum(after[cpu][1] - before[cpu][1] for cpu in common)
    if not common or total <= 0:
        return None
    return round(100 * sum(after[cpu][0] - before[cpu][0] for cpu in common) / total, 2)


def steal_at_start(server_cpus: Sequence[int], driver_cpus: Sequence[int], *, seconds: float = STEAL_AT_START_S,
                   path: Path = PROC_STAT) -> dict[str, Any]:
    """The steal share of the server and driver CPUs over `seconds`, before anything runs."""
    before = read_jiffies(path)
    time.sleep(seconds)
    after = read_jiffies(path)
    return {"server": steal_percent(before, after, server_cpus), "driver": steal_percent(before, after, driver_cpus),
            "seconds": seconds}


def tree_cpu_seconds(root: psutil.Process) -> float | None:
    """User + system CPU seconds of `root` and every live descendant, children they reaped
    included; None if `root` is gone."""
    try:
        family = [root, *root.children(recursive=True)]
    except psutil.Error:
        return None
    total, seen = 0.0, False
    for proc in family:
        try:
            used = process_cpu_seconds(proc)
        except psutil.Error:
            continue
        seen = True
        total += used
    return total if seen else None


def process_cpu_seconds(proc: psutil.Process) -> float:
    """One process's user + system CPU seconds, children it reaped included.

    /proc counts user and system time in whole clock ticks (10 ms), rounded down: a process
    that has used 4 ms reads 0. One busy process loses under a tick; 64 forking children,
    each answering 50 requests a second, each read 0 for a whole step, and the step's server
    CPU read 0 while the machine's counters charged it to "other processes". On Linux the
    process's CPU-time clock (clock_gettime on its clock id, as clock_getcpuclockid makes
    it) is the scheduler's runtime of all its threads, exited ones too, in ns: one call, and
    exact. Reaped children stay in ticks: the kernel sums them before it rounds."""
    times = proc.cpu_times()
    used = times.user + times.system
    if sys.platform == "linux":
        try:
            used = time.clock_gettime(_cpu_clock(proc.pid))
        except OSError:
            pass  # gone since, or a kernel without it: the ticks
    return used + getattr(times, "children_user", 0.0) + getattr(times, "children_system", 0.0)


def _cpu_clock(pid: int) -> int:
    """clock_getcpuclockid(pid): Linux's clock id of a process's CPU time (CPUCLOCK_SCHED, the
    whole thread group), as a C int."""
    clock = ((~pid) << 3) | 2
    return ctypes.c_int32(clock).value


def server_tree(pid: int) -> list[psutil.Process]:
    """The server process `pid` and all its descendants (forking's children); [] once it is gone."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def server_cpu_seconds(pid: int) -> float:
    """CPU seconds of the server's whole tree so far, reaped children included (forking's);
    0 once it is gone."""
    try:
        root = psutil.Process(pid)
    except psutil.Error:
        return 0.0
    return tree_cpu_seconds(root) or 0.0


def server_memory(pid: int) -> tuple[int | None, int | None]:
    """(RSS, PSS) of the server's tree in bytes, each under its own name.

    RSS: the sum over the tree (one process: its RSS). PSS: for a process tree (forking
    with children), the sum of each process's proportional share, None for one process
    or where the platform has none. A page shared copy-on-write by 500 children is
    counted once in PSS, 500 times in RSS (7 GiB of RSS for 50 MiB of PSS in c10k)."""
    tree = server_tree(pid)
    rss = pss = 0
    seen = pss_known = False
    for proc in tree:
        try:
            if len(tree) > 1:
                try:
                    full = proc.memory_full_info()
                    rss, pss, pss_known = rss + full.rss, pss + full.pss, True
                    seen = True
                    continue
                except AttributeError:  # no PSS on this platform
                    pass
            rss += proc.memory_info().rss
            seen = True
        except psutil.Error:
            continue
    return (rss if seen else None), (pss if pss_known else None)


@dataclass
class Sample:
    t: float  # time.monotonic()
    server_cpu_s: float
    rss_bytes: int | None
    pss_bytes: int | None
    driver_cpu_s: tuple[float | None, ...]  # per driver process (see WindowSampler.driver), None: unknown yet
    jiffies: Jiffies | None


@dataclass
class WindowSampler:
    """Samples the server and the local driver processes; `window` turns them into the
    step's "server" and "driver" dicts.

    `server_cpu` and `server_memory` read the server tree (server_cpu_seconds and
    server_memory); `driver` are the driver's local processes (the master and each worker), whose
    CPU counts on the CPUs each is pinned to, split evenly when it is pinned to several.
    `relay`: an emulated link's relay process, on the driver's CPUs: its CPU counts there as
    the load's, and `relay_percent` gives its own share."""

    server_cpu: Callable[[], float]
    server_memory: Callable[[], tuple[int | None, int | None]]
    driver: Sequence[int]  # pids
    server_cpus: tuple[int, ...]
    driver_cpus: tuple[int, ...]
    proc_stat: Path = PROC_STAT
    samples: list[Sample] = field(default_factory=list)
    relay: int | None = None  # pid

    def __post_init__(self) -> None:
        self._procs: list[psutil.Process | None] = []
        self._pinned: list[tuple[int, ...]] = []
        for pid in (*self.driver, *([self.relay] if self.relay is not None else [])):
            try:
                proc = psutil.Process(pid)
                pinned = tuple(proc.cpu_affinity() or ()) if hasattr(proc, "cpu_affinity") else ()
            except psutil.Error:
                proc, pinned = None, ()
            self._procs.append(proc)
            self._pinned.append(pinned or self.driver_cpus)

    def sample(self) -> Sample:
        before = time.monotonic()
        server_cpu = self.server_cpu()
        jiffies = read_jiffies(self.proc_stat)
        driver = [tree_cpu_seconds(proc) if proc is not None else None for proc in self._procs]
        t = (before + time.monotonic()) / 2  # the counters' moment (a forking tree takes a while to walk)
        rss, pss = self.server_memory()
        if self.samples:  # a driver process that has exited keeps its last figure
            last = self.samples[-1].driver_cpu_s
            driver = [now if now is not None else then for now, then in zip(driver, last)]
        sample = Sample(t, server_cpu, rss, pss, tuple(driver), jiffies)
        self.samples.append(sample)
        return sample

    def window(self, *, end: float, seconds: float, requests: int) -> tuple[dict[str, Any], dict[str, Any]]:
        """The server and driver figures over [end - seconds, end] (monotonic time): samples
        on both sides of each boundary are needed for exact figures; without, the nearest."""
        if not self.samples or self.samples[-1].t < end:
            self.sample()
        start = end - seconds
        span = seconds if seconds > 0 else None
        server_cpu = _delta(self.samples, start, end, lambda s: s.server_cpu_s)
        inside = [s for s in self.samples if start - 0.25 <= s.t <= end + 0.25] or self.samples[-1:]
        server = {
            "cpu_percent": round(100 * server_cpu / span, 1) if span and server_cpu is not None else None,
            "rss_bytes": max((s.rss_bytes for s in inside if s.rss_bytes is not None), default=None),
            "pss_bytes": max((s.pss_bytes for s in inside if s.pss_bytes is not None), default=None),
            "cpu_seconds": round(server_cpu, 4) if server_cpu is not None else None,
            "cpu_us_per_request": round(server_cpu * 1e6 / requests, 1) if server_cpu is not None and requests else None,
            "steal_percent": self._steal(start, end, self.server_cpus),
        }
        by_cpu: dict[int, float] = dict.fromkeys(self.driver_cpus, 0.0)
        for index, pinned in enumerate(self._pinned):
            used = _delta(self.samples, start, end, functools.partial(_driver_cpu, index=index))
            for cpu in pinned:
                by_cpu[cpu] = by_cpu.get(cpu, 0.0) + (used or 0.0) / len(pinned)
        server["others_percent"] = self._others(start, end, server_cpu,
                                                sum(by_cpu.get(cpu, 0.0) for cpu in self.server_cpus))
        percent = {str(cpu): round(100 * used / span, 1) for cpu, used in sorted(by_cpu.items())} if span else {}
        driver = {"cpu_percent": max(percent.values()) if percent else None, "cpu_percent_by_cpu": percent,
                  "steal_percent": self._steal(start, end, self.driver_cpus)}
        return server, driver

    def relay_percent(self, *, end: float, seconds: float) -> float | None:
        """The relay's CPU over [end - seconds, end], as a % of one CPU (None without one)."""
        if self.relay is None or seconds <= 0:
            return None
        used = _delta(self.samples, end - seconds, end, functools.partial(_driver_cpu, index=len(self._procs) - 1))
        return None if used is None else round(100 * used / seconds, 1)

    def _steal(self, start: float, end: float, cpus: tuple[int, ...]) -> float | None:
        if len({s.t for s in self.samples}) < 2:
            return None
        steal = _delta(self.samples, start, end, _jiffies(cpus, 0))
        total = _delta(self.samples, start, end, _jiffies(cpus, 1))
        return round(100 * steal / total, 2) if steal is not None and total else None

    def _others(self, start: float, end: float, server_s: float | None, driver_s: float) -> float | None:
        """CPU time on the server's CPUs of anything but the server tree (`server_s`) and the
        driver (`driver_s`: its seconds on them), as a % of all the server's CPUs over the window;
        None without /proc/stat, the server's figure, or two distinct samples."""
        seconds = end - start
        if server_s is None or not self.server_cpus or seconds <= 0 or len({s.t for s in self.samples}) < 2:
            return None
        busy = _delta(self.samples, start, end, _jiffies(self.server_cpus, 2))
        if busy is None:
            return None
        others = max(0.0, busy / TICKS_PER_S - server_s - driver_s)
        return round(100 * others / (seconds * len(self.server_cpus)), 1)


def _jiffies(cpus: tuple[int, ...], kind: int) -> Callable[[Sample], float | None]:
    """A reader of one kind of jiffies (0 steal, 1 all, 2 busy) summed over `cpus`."""
    def read(sample: Sample) -> float | None:
        found = [sample.jiffies[cpu][kind] for cpu in cpus if sample.jiffies and cpu in sample.jiffies]
        return float(sum(found)) if found else None
    return read


def _at(samples: list[Sample], t: float, value: Callable[[Sample], float | None]) -> float | None:
    """A counter at time t, linear between the samples on either side (the nearest at an end)."""
    known = [(s.t, v) for s in samples if (v := value(s)) is not None]
    if not known:
        return None
    times = [k[0] for k in known]
    index = bisect_right(times, t)
    if index == 0:
        return known[0][1]
    if index == len(known):
        return known[-1][1]
    (t0, v0), (t1, v1) = known[index - 1], known[index]
    return v0 + (v1 - v0) * (t - t0) / (t1 - t0) if t1 > t0 else v1


def _driver_cpu(sample: Sample, index: int) -> float | None:
    """The CPU seconds of the driver process at `index`, as of `sample`."""
    return sample.driver_cpu_s[index]


def _delta(samples: list[Sample], start: float, end: float, value: Callable[[Sample], float | None]) -> float | None:
    first, last = _at(samples, start, value), _at(samples, end, value)
    return max(0.0, last - first) if first is not None and last is not None else None
