"""Is the harness accurate? Its req/s and p50 against wrk's, same server, same CPUs.

    python bench/accuracy.py [--backend asyncio] [--path / --path /sleep?ms=10]
                             [--users 1 8 32] [--rounds 3] [--seconds 3] [--json OUT] [--check]

One backend process runs on the server CPU for the whole matrix (every --path x every
--users: by default / and /sleep?ms=10 at 1, 8 and 32 users). For each cell the Locust driver
and `wrk -t1 --latency` take turns on the driver CPU against it, one after the other, and
which goes first alternates from one run to the next; the rounds go over the whole matrix,
so a machine that slows down over time slows every cell and both tools alike.

Printed per cell: the medians over the rounds of each tool's req/s and p50, and the median
of the rounds' paired ratios (harness / wrk) and p50 differences. Targets (issue 13, §6): at
8 users and above, req/s and p50 within 5% of wrk's; at 1 user, p50 within 25 us of wrk's.
wrk's p50 is exact to the microsecond (from its Lua `done` hook); the harness's comes from
its histogram (3 significant digits): exact below 2 ms, the top of an 8 us bucket at 10 ms.

Also printed, because the harness adds latency of its own that no server causes:
- the driver's own time per request: `gap`, the mean time between an answer and the same
  user's next send, as the driver measures it (result `cycles`; from Little's law, users /
  req/s - mean latency, for a driver that predates them), and at 1 user the p50 it adds to
  wrk's: together the run's latency floor, printed last;
- how quiet the machine was: the steal share of the server and driver CPUs over each run
  (/proc/stat), and the CPU other processes took on them (their busy time minus the server's
  and the tool's). A cell where the hypervisor took more than 5%, or other processes more
  than a tenth of a CPU, in any of its runs is marked `noisy`: its ratios mean little.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from statistics import median

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness.drivers.spec import DriverSpec, RequestSpec  # noqa: E402
from harness.run.launch import launch_backend  # noqa: E402
from harness.run.options import default_pinning  # noqa: E402
from harness.run.driver import DriverProcess  # noqa: E402
from harness.run.sampling import server_cpu_seconds  # noqa: E402

RPS_TOLERANCE = 0.05  # at MANY_USERS and above: req/s and p50 within 5% of wrk's
P50_TOLERANCE_US = 25.0  # below MANY_USERS: p50 within 25 us of wrk's
MANY_USERS = 8
NOISY_STEAL = 0.05  # the same threshold as a run's `noisy` flag
NOISY_OTHERS = 0.10  # other processes on the server or driver CPU: a tenth of a CPU
WARMUP_S = 0.5  # the harness's warm-up before its window; its users all start at once


@dataclass(frozen=True)
class Sample:
    """One tool's run on one cell."""

    rps: float
    p50_us: float
    mean_us: float
    steal: float  # the larger of the server and driver CPUs' steal share over the run
    others: float  # CPU other processes took on those CPUs over the run, as a share of one CPU
    driver_cpu_percent: float | None = None  # the harness only
    gap_us: float | None = None  # the harness only: mean time from an answer to the next send


class Meter:
    """What else the machine did during one run: the steal share of the server and driver
    CPUs (/proc/stat), and the CPU time spent on them by processes other than the server and
    the tool under test (busy time minus ours), as a share of one CPU."""

    def __init__(self, cpus: tuple[int, ...], server_cpu_seconds) -> None:  # type: ignore[no-untyped-def]
        self.cpus, self.server_cpu_seconds = cpus, server_cpu_seconds
        self.mark = self._read()

    def _read(self) -> tuple[float, float, dict[int, list[int]]]:
        jiffies = {}
        try:
            for line in Path("/proc/stat").read_text().splitlines():
                name, *fields = line.split()
                if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in self.cpus:
                    jiffies[int(name[3:])] = [int(v) for v in fields[:8]]  # user .. steal
        except OSError:
            pass
        return time.monotonic(), self.server_cpu_seconds(), jiffies

    def restart(self) -> None:
        self.mark = self._read()

    def stop(self, tool_cpu_s: float) -> tuple[float, float]:
        """(steal share of the worst CPU, others' CPU as a share of one CPU) since the mark."""
        (t0, server0, before), (t1, server1, after) = self.mark, self._read()
        steal, busy = 0.0, 0
        for cpu in before.keys() & after.keys():
            delta = [b - a for a, b in zip(before[cpu], after[cpu])]
            total = sum(delta)
            if total > 0:
                steal = max(steal, delta[7] / total)
                busy += total - delta[3] - delta[4] - delta[7]  # not idle, iowait or steal
        elapsed = max(t1 - t0, 1e-9)
        others = busy / os.sysconf("SC_CLK_TCK") - (server1 - server0) - tool_cpu_s
        return steal, max(0.0, others / elapsed)


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# wrk's own summary prints p50 to 3 digits (10.2ms: 10 us steps); its Lua hook gives the exact us.
WRK_SCRIPT = """done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("concurbench-wrk %d %d %d %.3f %d\\n", summary.requests, summary.duration,
    latency:percentile(50), latency.mean, e.connect + e.read + e.write + e.status + e.timeout))
end
"""


def wrk_run(url: str, *, users: int, seconds: int, cpus: tuple[int, ...], meter: Meter, script: Path) -> Sample:
    argv = ["taskset", "-c", ",".join(map(str, cpus)), "wrk", "-t1", f"-c{users}", f"-d{seconds}s", "--latency",
            "-s", str(script), url]
    used = _children_cpu_s()
    meter.restart()
    text = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=seconds + 30).stdout
    steal, others = meter.stop(_children_cpu_s() - used)
    found = re.search(r"^concurbench-wrk (\d+) (\d+) (\d+) ([\d.]+) (\d+)$", text, re.MULTILINE)
    if found is None:
        raise RuntimeError(f"wrk printed no summary:\n{text}")
    requests, duration_us, p50_us, mean_us, errors = found.groups()
    if int(errors):
        print(f"warning: wrk counted {errors} errors (socket errors, timeouts, non-2xx/3xx)", file=sys.stderr)
    return Sample(rps=int(requests) * 1e6 / int(duration_us), p50_us=float(p50_us), mean_us=float(mean_us),
                  steal=steal, others=others)


def harness_run(host: str, port: int, path: str, *, users: int, seconds: float, cpus: tuple[int, ...],
                meter: Meter) -> Sample:
    """One Locust driver process: a WARMUP_S warm-up, then one window of `seconds`."""
    spec = DriverSpec(host=host, port=port, requests=(RequestSpec(path=path),), users=users, duration_s=seconds,
                      warmup_s=WARMUP_S, spawn_rate=max(1000.0, float(users)))
    with tempfile.TemporaryDirectory() as tmp:
        driver = DriverProcess([spec], workdir=Path(tmp), cpus=cpus)
        try:
            while (event := driver.events.get(timeout=seconds + 60)) is not None:
                if event["type"] == "progress" and event.get("phase") == "warmup":
                    meter.restart()  # the last warm-up tick is the window's start
                if event["type"] == "result":
                    # Read as a plain dict: only fields every result version keeps.
                    data = json.loads(Path(event["path"]).read_text())
                    cpu = float(data.get("driver_cpu_percent") or 0)
                    steal, others = meter.stop(cpu / 100 * float(data.get("duration_s") or seconds))
                    rps, mean_us = float(data["rps"]), float(data.get("mean_us") or 0)
                    if errors := sum((data.get("errors") or {}).values()):
                        print(f"warning: the harness counted {errors} errors", file=sys.stderr)
                    cycles = data.get("cycles") or {}
                    if cycles.get("gaps"):
                        gap = cycles["gap_sum_us"] / cycles["gaps"]
                    else:  # Little's law: a user's cycle is users / rps, of which mean_us waiting
                        gap = users * 1e6 / rps - mean_us if rps else None
                    return Sample(rps=rps, p50_us=float(data["p50_us"] or 0), mean_us=mean_us, steal=steal,
                                  others=others, driver_cpu_percent=cpu, gap_us=gap)
        finally:
            driver.stop()
    raise RuntimeError("the driver produced no result: " + "".join(driver.stderr))


@dataclass(frozen=True)
class Cell:
    path: str
    users: int
    harness: tuple[Sample, ...]
    wrk: tuple[Sample, ...]

    def row(self) -> dict:
        pairs = list(zip(self.harness, self.wrk))
        rps_ratio = median(h.rps / w.rps for h, w in pairs)
        p50_ratio = median(h.p50_us / w.p50_us for h, w in pairs)
        p50_diff = median(h.p50_us - w.p50_us for h, w in pairs)
        if self.users >= MANY_USERS:
            rps_ok: bool | None = abs(rps_ratio - 1) <= RPS_TOLERANCE
            p50_ok = abs(p50_ratio - 1) <= RPS_TOLERANCE
        else:
            rps_ok, p50_ok = None, abs(p50_diff) <= P50_TOLERANCE_US
        steal = max(s.steal for s in (*self.harness, *self.wrk))
        others = max(s.others for s in (*self.harness, *self.wrk))
        return {
            "path": self.path, "users": self.users,
            "harness_rps": median(s.rps for s in self.harness), "wrk_rps": median(s.rps for s in self.wrk),
            "rps_ratio": rps_ratio, "rps_ok": rps_ok,
            "harness_p50_us": median(s.p50_us for s in self.harness), "wrk_p50_us": median(s.p50_us for s in self.wrk),
            "p50_diff_us": p50_diff, "p50_ratio": p50_ratio, "p50_ok": p50_ok,
            "gap_us": median(gaps) if (gaps := [s.gap_us for s in self.harness if s.gap_us is not None]) else None,
            "driver_cpu_percent": median(s.driver_cpu_percent or 0 for s in self.harness),
            "steal": steal, "others": others, "noisy": steal > NOISY_STEAL or others > NOISY_OTHERS,
            "harness": [asdict(s) for s in self.harness], "wrk": [asdict(s) for s in self.wrk],
        }


def _mark(ok: bool | None) -> str:
    return "-" if ok is None else ("ok" if ok else "MISS")


def print_table(rows: list[dict], header: str) -> None:
    print(f"\n{header}")
    columns = ("path", "users", "harness req/s", "wrk req/s", "ratio", "harness p50", "wrk p50", "diff",
               "ratio", "gap", "drv CPU", "steal", "others", "req/s", "p50")
    table = [columns]
    for r in rows:
        table.append((
            r["path"], str(r["users"]), f"{r['harness_rps']:,.0f}", f"{r['wrk_rps']:,.0f}", f"{r['rps_ratio']:.3f}",
            f"{r['harness_p50_us']:,.0f} us", f"{r['wrk_p50_us']:,.0f} us", f"{r['p50_diff_us']:+,.0f} us",
            f"{r['p50_ratio']:.3f}", "?" if r["gap_us"] is None else f"{r['gap_us']:.1f} us",
            f"{r['driver_cpu_percent']:.0f}%", f"{100 * r['steal']:.1f}%",
            f"{100 * r['others']:.0f}%" + (" noisy" if r["noisy"] else ""),
            _mark(r["rps_ok"]), _mark(r["p50_ok"]),
        ))
    widths = [max(len(line[i]) for line in table) for i in range(len(columns))]
    for n, line in enumerate(table):
        print("  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(line, widths))))
        if n == 0:
            print("  ".join("-" * w for w in widths))
    print(f"targets: {MANY_USERS}+ users: req/s and p50 within {RPS_TOLERANCE:.0%} of wrk's; "
          f"fewer: p50 within {P50_TOLERANCE_US:.0f} us (req/s: no target, '-'). ratio and diff: the median of "
          "the rounds' pairs. gap: the harness's mean time from an answer to the next send.\n"
          f"steal, others: the worst run of the cell; noisy: steal > {NOISY_STEAL:.0%} or others > "
          f"{NOISY_OTHERS:.0%} of a CPU.")


def print_floor(rows: list[dict]) -> None:
    """The driver's latency floor: what it adds to every latency it measures (its p50 against
    wrk's at 1 user on the cheapest route, where nothing else hides it) and the time it takes
    between an answer and the next send."""
    single = [r for r in rows if r["users"] == 1]
    if not single:
        return
    cheapest = min(single, key=lambda r: r["wrk_p50_us"])
    gaps = [r["gap_us"] for r in rows if r["gap_us"] is not None]
    print(f"latency floor: the harness adds {cheapest['p50_diff_us']:+.0f} us to wrk's p50 at 1 user on "
          f"{cheapest['path']} ({cheapest['harness_p50_us']:.0f} against {cheapest['wrk_p50_us']:.0f} us)"
          + (f"; {min(gaps):.1f}-{max(gaps):.1f} us from an answer to the next send" if gaps else ""))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="asyncio")
    parser.add_argument("--path", action="append", help="a route; repeat for several (default: / and /sleep?ms=10)")
    parser.add_argument("--users", type=int, nargs="+", default=[1, 8, 32], help="user counts (default: 1 8 32)")
    parser.add_argument("--seconds", type=int, default=3, help="each measured run (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each tool per cell (default: %(default)s)")
    parser.add_argument("--json", metavar="OUT", help="also write every run and the table here")
    parser.add_argument("--check", action="store_true", help="exit 1 if a cell misses its target")
    args = parser.parse_args()
    paths = args.path or ["/", "/sleep?ms=10"]
    if not shutil.which("wrk") or not shutil.which("taskset"):
        print("error: wrk and taskset are required (apt-get install wrk util-linux)", file=sys.stderr)
        return 2
    server_cpus, driver_cpus = default_pinning()
    cells = [(path, users) for path in paths for users in args.users]
    per_run = args.seconds + WARMUP_S + 1  # + the driver's start-up
    print(f"{args.backend}: {len(cells)} cells x {args.rounds} rounds x 2 tools, about "
          f"{len(cells) * args.rounds * (per_run + args.seconds) / 60:.1f} min; load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    tmp = tempfile.TemporaryDirectory()
    script = Path(tmp.name) / "summary.lua"
    script.write_text(WRK_SCRIPT)
    backend = launch_backend(args.backend, cpus=server_cpus)
    meter = Meter(tuple(sorted({*server_cpus, *driver_cpus})), partial(server_cpu_seconds, backend.process.pid))
    runs: dict[tuple[str, int], dict[str, list[Sample]]] = {cell: {"harness": [], "wrk": []} for cell in cells}
    started = time.monotonic()
    try:
        for round_ in range(args.rounds):
            for index, (path, users) in enumerate(cells):
                order = ("harness", "wrk") if (round_ + index) % 2 == 0 else ("wrk", "harness")
                for who in order:
                    if who == "harness":
                        sample = harness_run(backend.host, backend.port, path, users=users, seconds=args.seconds,
                                             cpus=driver_cpus, meter=meter)
                    else:
                        sample = wrk_run(f"{backend.url}{path}", users=users, seconds=args.seconds,
                                         cpus=driver_cpus, meter=meter, script=script)
                    runs[(path, users)][who].append(sample)
                    print(f"round {round_ + 1} {path} {users:>3} users {who:<7} {sample.rps:>9,.0f} req/s  "
                          f"p50 {sample.p50_us:>7,.0f} us  mean {sample.mean_us:>7,.0f} us  "
                          + (f"gap {sample.gap_us:.1f} us  " if sample.gap_us is not None else "")
                          + f"steal {100 * sample.steal:.1f}%  others {100 * sample.others:.0f}%", flush=True)
    finally:
        backend.stop()
        tmp.cleanup()
    rows = [Cell(path, users, tuple(runs[(path, users)]["harness"]), tuple(runs[(path, users)]["wrk"])).row()
            for path, users in cells]
    header = (f"{args.backend}, server CPU {','.join(map(str, server_cpus))}, driver CPU "
              f"{','.join(map(str, driver_cpus))}: medians of {args.rounds} rounds x {args.seconds} s per tool "
              f"(harness warm-up {WARMUP_S} s), {time.monotonic() - started:.0f} s in all")
    print_table(rows, header)
    print_floor(rows)
    if args.json:
        Path(args.json).write_text(json.dumps({"header": header, "rows": rows}, indent=1) + "\n")
    missed = [r for r in rows if r["rps_ok"] is False or r["p50_ok"] is False]
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    sys.exit(main())
