"""wrk load driver: the Locust driver's contract, measured by wrk, to cross-check its figures.

    python -m harness.drivers.wrk.driver --spec SPEC.json [--spec SPEC2.json ...] --out-dir DIR
    python -m harness.drivers.wrk.driver --spec SPEC.json --out RESULT.json

Same arguments, stdout events, result files, signals and exit statuses as
harness.drivers.locust.driver. Each window (and the warm-up) is one
`wrk -t1 -c<users> -d<s> --latency -s report.lua URL` process; report.lua sends the
spec's requests (the same bytes as the Locust driver's: both call wire.build_request) and reports
wrk's latency histogram, which is exact: 1 us buckets, read whole. Differences to know:
- wrk adds synthetic samples for coordinated omission before reporting; they are taken out
  again here (uncorrected), so the histogram holds measured latencies only;
- connections are opened anew for every window, all at once (no spawn_rate ramp);
- with keep_alive false a latency excludes the connect (wrk starts the clock at the write);
- a response slower than timeout_s (whole seconds in wrk) counts as a timeout, not a
  request; wrk never abandons a request, so one that is never answered counts nowhere;
- bad_status counts 4xx and 5xx only (wrk's rule), a response wrk cannot parse counts as
  a reset; `good_requests` are the answers less those, `answers_by_class` is None (wrk
  does not tell 4xx from 5xx) and the histogram holds every answer, bad ones too;
- `timeseries` is empty and `unfinished` is taken as `users` (wrk reports neither);
  `cycles` is None: wrk does not say when each connection sent, so the time it spends
  between an answer and the next send is unknown and Little's law is not checked;
- wrk does not say which connection got answers, so `starved_users` is a lower bound,
  users - requests (exact only when nothing was answered);
- a target that refuses wrk's first connection makes the window one connect error, 0 requests.
Idle and slow background clients and the open loop (`rate`, wrk2's job) cannot be expressed
in wrk: such a spec exits 2.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from servers.descriptors import raise_fd_limit
from harness.drivers.wire import build_request, destination_host, host_header
from harness.drivers.spec import (
    check_outputs,
    DriverResult,
    DriverSpec,
    ErrorCounts,
    SpecError,
    load_spec,
    write_result,
)
from harness.results.metrics import HIGHEST_US, LOWEST_US, encode_histogram, new_histogram

SCRIPT = Path(__file__).with_name("report.lua")
REQUESTS_ENV, OUT_ENV = "CONCURBENCH_WRK_REQUESTS", "CONCURBENCH_WRK_OUT"
POLL_S = 0.05  # how soon a stop request or a fractional deadline reaches wrk
KILL_AFTER_S = 3.0  # wrk stops within 0.1 s of SIGINT; past this it is hung (runner kills at 5 s)
# wrk ignores SIGINT until its threads run, so a stop is re-sent every poll until it exits.
NO_BODY_METHODS = ("HEAD", "CONNECT")  # wrk frames every response by its headers: it would wait


class WrkFailed(Exception):
    """wrk exited without a report for a reason other than a refused connection or a stop."""


class Stop:
    """Set by SIGTERM/SIGINT; polled between waits, so the handler does nothing else."""

    requested = False

    def __call__(self, signum: int, frame: object) -> None:
        self.requested = True


# --- what wrk is asked to send -----------------------------------------------------------


def check_supported(spec: DriverSpec) -> None:
    """SpecError for what wrk cannot express; everything else is sent as the Locust driver would."""
    methods = sorted({r.method for r in spec.requests if r.weight > 0} & set(NO_BODY_METHODS))
    ramp_s = spec.users / spec.spawn_rate if spec.spawn_rate else 0.0
    problems = [
        (spec.idle_connections > 0, "background idle connections are not supported"),
        (spec.slow_clients > 0, "slow clients (slowloris) are not supported"),
        (spec.rate is not None, "the open loop (rate) is not supported: wrk 4 is closed-loop"),
        (spec.users < 1, "users must be >= 1: wrk needs a connection"),
        (bool(methods), f"{'/'.join(methods)} requests are not supported (wrk would wait for a body)"),
        (ramp_s > spec.warmup_s, (f"a {ramp_s:g} s ramp-up (spawn_rate) longer than the warm-up is not "
                                  "supported: wrk opens every connection at once")),
    ]
    for failed, reason in problems:
        if failed:
            raise SpecError(f"{reason}; use --driver locust")


def destination(host: str) -> str:
    """The target's host for wrk's URL: IPv6 literals go in brackets."""
    host = destination_host(host)
    return f"[{host}]" if ":" in host else host


def requests_file(spec: DriverSpec) -> bytes:
    """The requests as report.lua reads them: "<n>\\n", then "<weight> <length>\\n<bytes>"."""
    host = host_header(spec.host, spec.port)
    entries = [(r.weight, build_request(r, host=host, keep_alive=spec.keep_alive))
               for r in spec.requests if r.weight > 0]
    return f"{len(entries)}\n".encode() + b"".join(b"%d %d\n%s" % (w, len(raw), raw) for w, raw in entries)


def wrk_argv(wrk: str, spec: DriverSpec, seconds: float) -> list[str]:
    """wrk takes whole seconds; a fractional window is cut short with SIGINT (see run_wrk)."""
    path = spec.requests[0].path if spec.requests[0].path.startswith("/") else "/"
    return [wrk, "-t1", f"-c{spec.users}", f"-d{max(1, math.ceil(seconds))}s",
            f"--timeout={max(1, math.ceil(spec.timeout_s))}s", "--latency", "-s", str(SCRIPT),
            f"http://{destination(spec.host)}:{spec.port}{path}"]


# --- what wrk measured ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WrkReport:
    """report.lua's JSON: counts, errors, and `latency` pairs or a `percentiles` grid."""

    requests: int
    duration_us: int
    errors: dict[str, int]
    latency: tuple[tuple[int, int], ...] | None
    percentiles: tuple[tuple[float, int], ...] | None
    max_us: int

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WrkReport:
        pairs = data.get("latency")
        grid = data.get("percentiles")
        return cls(requests=data["requests"], duration_us=data["duration_us"], errors=data["errors"],
                   latency=None if pairs is None else tuple((int(v), int(c)) for v, c in pairs),
                   percentiles=None if grid is None else tuple((float(p), int(v)) for p, v in grid),
                   max_us=int(data["wrk_us"]["max"]))


def uncorrected(pairs: Iterable[tuple[int, int]], *, requests: int, duration_us: int,
                connections: int) -> dict[int, int]:
    """Undo wrk's stats_correct, which before done() adds, for every latency n >= 2e, one
    sample at each n - k*e above e, e being runtime / (requests per connection), integer
    division as in wrk.c. For n > e the corrected count is then the sum of the true counts
    at n, n+e, n+2e, ..., so true[n] = corrected[n] - corrected[n + e]."""
    counts = dict(pairs)
    if requests // connections == 0:
        return counts  # wrk skips the correction
    e = duration_us // (requests // connections)
    true = {n: c - counts.get(n + e, 0) if n > e else c for n, c in counts.items()}
    if min(true.values(), default=0) < 0:  # then this wrk did not correct: the counts are true
        print(f"wrk driver: warning: no coordinated-omission correction to undo (e={e} us)", file=sys.stderr)
        return counts
    return {n: c for n, c in true.items() if c}


def from_percentiles(grid: Iterable[tuple[float, int]], *, total: int, max_us: int) -> dict[int, int]:
    """An approximation with the grid's quantiles: the samples ranked between two grid points
    are put at the upper one's value, the rest at the maximum."""
    counts: Counter[int] = Counter()
    placed = 0
    for p, value in grid:
        rank = min(total, round(p / 100 * total))
        if rank > placed:
            counts[value] += rank - placed
            placed = rank
    if total > placed:
        counts[max_us] += total - placed
    return dict(counts)


@dataclass(frozen=True, slots=True)
class WrkRun:
    """One wrk process: its report (None if refused, or stopped too early), CPU and wall seconds."""

    report: WrkReport | None
    refused: bool
    cpu_s: float
    wall_s: float


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_wrk(argv: list[str], *, seconds: float, env: dict[str, str], out: Path, stop: Stop) -> WrkRun:
    """Run wrk to its end, or SIGINT it (it then reports what it has) at `seconds` or on a stop."""
    out.unlink(missing_ok=True)
    cpu0, t0 = children_cpu_s(), time.monotonic()
    cut_at = t0 + seconds if seconds != math.ceil(seconds) else math.inf
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, **env}, process_group=0)  # the orchestrator's SIGTERM is ours
    interrupted_at = None
    while True:
        try:
            _, stderr = proc.communicate(timeout=POLL_S)
            break
        except subprocess.TimeoutExpired:
            now = time.monotonic()
            if stop.requested or now >= cut_at:
                interrupted_at = interrupted_at or now
                proc.send_signal(signal.SIGKILL if now - interrupted_at > KILL_AFTER_S else signal.SIGINT)
        except BaseException:
            proc.kill()
            raise
    wall_s, cpu_s = time.monotonic() - t0, children_cpu_s() - cpu0
    text = stderr.decode(errors="replace").strip()
    if out.exists():
        return WrkRun(WrkReport.from_dict(json.loads(out.read_text())), False, cpu_s, wall_s)
    if "unable to connect" in text:
        while time.monotonic() < t0 + seconds and not stop.requested:  # the window's time passes
            time.sleep(POLL_S)
        return WrkRun(None, True, cpu_s, time.monotonic() - t0)
    if stop.requested:
        return WrkRun(None, False, cpu_s, wall_s)
    raise WrkFailed(f"wrk exited with status {proc.returncode}: {(text.splitlines() or ['no output'])[-1]}")


def result_of(spec: DriverSpec, run: WrkRun, *, stopped: bool) -> DriverResult:
    report = run.report
    if report is None:  # refused: wrk's one probe connection is the window's one error
        counts, errors, window_s = {}, ErrorCounts(connect=1), run.wall_s
    else:
        e = report.errors
        errors = ErrorCounts(connect=e["connect"], timeout=e["timeout"], reset=e["read"] + e["write"],
                             bad_status=e["status"])
        measured = report.requests - e["timeout"]  # a response later than timeout_s has no latency
        if report.latency is not None:
            counts = uncorrected(report.latency, requests=report.requests, duration_us=report.duration_us,
                                 connections=spec.users)
        else:
            print("wrk driver: warning: latency histogram rebuilt from wrk's percentiles (approximate)",
                  file=sys.stderr)
            counts = from_percentiles(report.percentiles or (), total=measured, max_us=report.max_us)
        window_s = report.duration_us / 1e6
    hist = new_histogram()
    for value, count in counts.items():
        hist.record_value(min(max(value, LOWEST_US), HIGHEST_US), count)
    count = sum(counts.values())
    # wrk counts a bad answer later than the timeout in status and timeout both, and it has no
    # latency, so it is not in `count`: good_requests may be low by that many.
    good = max(0, count - errors.bad_status)
    pct = (lambda q: hist.get_value_at_percentile(q)) if count else (lambda q: None)
    return DriverResult(
        requests=count, errors=errors, unfinished=spec.users if report else 0, unfinished_max_us=None,
        duration_s=round(window_s, 6), rps=round(count / window_s, 3) if window_s else 0.0,
        p50_us=pct(50), p90_us=pct(90), p99_us=pct(99), p999_us=pct(99.9),
        max_us=max(counts) if count else None,
        mean_us=round(sum(v * c for v, c in counts.items()) / count, 3) if count else None,
        histogram=encode_histogram(hist), timeseries=(), users=spec.users, keep_alive=spec.keep_alive,
        driver_cpu_percent=round(100 * run.cpu_s / window_s, 1) if window_s else 0.0, interrupted=stopped,
        starved_users=max(0, spec.users - count),  # at least: wrk cannot tell who was answered
        good_requests=good, good_rps=round(good / window_s, 3) if window_s else 0.0, cycles=None,
    )


# --- the run ----------------------------------------------------------------------------


def run(spec: DriverSpec, stop: Stop, emit: Callable[[int, DriverResult], None], *, wrk: str) -> bool:
    """The warm-up, then `spec.repeat` windows, one wrk each; True if stopped early."""
    raise_fd_limit(spec.descriptors)  # wrk inherits it
    started, errors_seen = time.monotonic(), 0
    phases = [("warmup", spec.warmup_s, -1)] if spec.warmup_s > 0 else []
    phases += [("measure", spec.duration_s, rep) for rep in range(spec.repeat)]
    with tempfile.TemporaryDirectory(prefix="concurbench-wrk-") as tmp:
        requests, out = Path(tmp, "requests"), Path(tmp, "report.json")
        requests.write_bytes(requests_file(spec))
        env = {REQUESTS_ENV: str(requests), OUT_ENV: str(out)}
        for phase, seconds, rep in phases:
            window = run_wrk(wrk_argv(wrk, spec, seconds), seconds=seconds, env=env, out=out, stop=stop)
            if window.report is None and not window.refused:
                return True  # stopped before wrk could report
            result = result_of(spec, window, stopped=stop.requested)
            errors_seen += result.errors.total
            print(json.dumps({"type": "progress", "elapsed": round(time.monotonic() - started, 3),
                              "rps": result.rps, "errors": errors_seen, "phase": phase}), flush=True)
            if rep >= 0:
                emit(rep, result)
            if stop.requested:
                return True
    return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.drivers.wrk.driver",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--spec", required=True, action="append",
                        help="DriverSpec JSON file; repeat it to run several levels in sequence")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--out", help="where to write the DriverResult JSON (one spec, repeat 1)")
    where.add_argument("--out-dir", help="write result-<spec>-<repetition>.json here, one per window")
    args = parser.parse_args(argv)
    try:
        wrk = shutil.which("wrk")
        if wrk is None:
            raise SpecError("wrk is not on PATH; install it (apt-get install wrk) or use --driver locust")
        specs = [load_spec(path) for path in args.spec]
        for spec in specs:
            check_supported(spec)
            try:
                socket.getaddrinfo(destination(spec.host).strip("[]"), spec.port, type=socket.SOCK_STREAM)
            except OSError as exc:
                raise SpecError(f"spec: cannot resolve host {spec.host!r}: {exc}") from None
        check_outputs(out=args.out, out_dir=args.out_dir, specs=specs)
    except SpecError as exc:
        print(f"wrk driver: {exc}", file=sys.stderr)
        return 2
    stop = Stop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, stop)
    failed = False

    for index, spec in enumerate(specs):
        def emit(rep: int, result: DriverResult, index: int = index) -> None:
            nonlocal failed
            path = args.out or os.path.join(args.out_dir, f"result-{index}-{rep}.json")
            try:
                write_result(path, result)
            except OSError as exc:
                print(f"wrk driver: cannot write {path}: {exc}", file=sys.stderr)
                failed = True
                return
            print(json.dumps({"type": "result", "spec": index, "repetition": rep, "path": path}), flush=True)

        try:
            if run(spec, stop, emit, wrk=wrk):
                break
        except (WrkFailed, OSError, ValueError, KeyError) as exc:
            print(f"wrk driver: {exc}", file=sys.stderr)
            return 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
