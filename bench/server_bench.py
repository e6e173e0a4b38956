"""Keep-alive `GET /` throughput of each backend against a named peer server, with wrk.

Method: the server runs on CPU 0 (`taskset -c 0`) and `wrk -t1` on CPU 1, so neither steals
the other's core. Each run starts a fresh server in its own process group, waits until it
answers 200, warms it up with 1 s of wrk, measures, then kills the whole group. Ours and
its peer take turns (round 1: ours, peer; round 2: peer, ours; ...), so a drift in machine
load hits both alike, and each side is reported as its median over the rounds. A ceiling
server that parses nothing shows what this machine's syscalls allow at all; asyncio also
alternates with it, so their ratio (what parsing, routing and building cost) is from one run.
granian (Rust I/O and parser) is a reference rather than a target: what Python I/O costs.

    python bench/server_bench.py [--duration 5] [--rounds 3] [--only asyncio,selectors] [--json PATH]
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import platform
import re
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PEERS = Path(__file__).resolve().parent / "peers"
PY = sys.executable  # peers must import with the interpreter that runs this script
SERVER_CPU, WRK_CPU = "0", "1"
STARTUP_TIMEOUT = 15.0  # seconds; gunicorn's master+worker start takes ~1 s on a loaded box
WARMUP_S = 1
SCHEMA_VERSION = 2  # 1: first version; 2: a run's group is "BACKEND vs PEER" (was the backend alone)

UVICORN = (PY, "-m", "uvicorn", "asgi_hello:app", "--app-dir", str(PEERS), "--host", "127.0.0.1",
           "--port", "{port}", "--http", "httptools", "--loop", "asyncio", "--no-access-log",
           "--log-level", "warning")
GUNICORN = (PY, "-m", "gunicorn", "--chdir", str(PEERS), "--bind", "127.0.0.1:{port}", "--workers", "1",
            "--log-level", "warning", "wsgi_hello:app")
# granian: I/O and HTTP parsing in Rust, only the app in Python; one worker on one runtime thread.
GRANIAN = (PY, "-m", "granian", "--working-dir", str(PEERS), "--host", "127.0.0.1", "--port", "{port}",
           "--workers", "1", "--runtime-threads", "1", "--http", "1", "--no-ws", "--log-level", "warning")


class LaunchError(Exception):
    """A server did not come up; the message carries its stderr tail."""


class WrkError(Exception):
    """wrk failed, or printed no figures we can read."""


@dataclass(frozen=True)
class Server:
    label: str
    argv: tuple[str, ...]  # "{port}" is replaced by a free port; without it, read the startup line
    needs: str | None = None  # module that must import for this server to run


@dataclass(frozen=True)
class Comparison:
    backend: str
    peer: Server
    conns: int
    target: float | None  # ours/peer req/s ratio we aim for; None: a reference, not a race


@dataclass(frozen=True)
class Run:
    group: str  # "BACKEND vs PEER", or "ceiling-CONNS"
    label: str
    round: int
    rps: float
    latency_avg_ms: float
    latency_max_ms: float
    non_2xx: int
    socket_errors: str  # wrk's "connect 0, read 0, write 0, timeout 0", or ""


def ours(backend: str) -> Server:
    """Default flags: a thread or process per connection. --threads/--workers tie a pool slot to a
    keep-alive connection for its whole life, so 32 connections would mostly wait in the queue."""
    return Server(f"ours:{backend}", (PY, "-m", "servers", "--backend", backend, "--port", "0"))


CEILING = Server("ceiling", (PY, str(PEERS / "ceiling.py"), "{port}"))
COMPARISONS = [
    # What parsing, routing and building cost on top of the same loop and syscalls.
    Comparison("asyncio", CEILING, 32, 0.6),
    Comparison("asyncio", Server("uvicorn", UVICORN, "uvicorn"), 32, 2.0),
    # What keeping the I/O and the parser in Python costs.
    Comparison("asyncio", Server("granian", (*GRANIAN, "--interface", "asgi", "--loop", "asyncio", "asgi_hello:app"),
                                 "granian"), 32, None),
    Comparison("selectors", Server("uvicorn", UVICORN, "uvicorn"), 32, 2.0),
    Comparison("threaded", Server("gunicorn-gthread", (*GUNICORN, "-k", "gthread", "--threads", "8"), "gunicorn"),
               32, 1.5),
    Comparison("threaded", Server("granian-wsgi", (*GRANIAN, "--interface", "wsgi", "--blocking-threads", "8",
                                                   "wsgi_hello:app"), "granian"), 32, None),
    Comparison("forking", Server("gunicorn-sync", (*GUNICORN, "-k", "sync"), "gunicorn"), 32, 1.5),
    Comparison("iterative", Server("http.server, Nagle off", (PY, str(PEERS / "stdlib_hello.py"), "{port}")), 1, 1.5),
    # The stdlib as shipped writes headers and body separately with Nagle on (DESIGN lesson 6).
    Comparison("iterative", Server("http.server, as shipped",
                                   (PY, str(PEERS / "stdlib_hello.py"), "{port}", "--as-shipped")), 1, 1.5),
]
# The ceiling is measured at every connection count a comparison uses: at 1 connection it
# is the round trip that bounds, not the server.


def installed(module: str) -> bool:
    return subprocess.run([PY, "-c", f"import {module}"], capture_output=True).returncode == 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stderr_tail(log: Path, lines: int = 10) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def read_startup_port(proc: subprocess.Popen[bytes], deadline: float) -> int:
    assert proc.stdout is not None
    if not select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))[0]:
        raise LaunchError("no startup line")
    match = re.match(rb"listening on http://[^\s]+:(\d+)", proc.stdout.readline())
    if not match:
        raise LaunchError("exited before its startup line")
    return int(match.group(1))


def answers_hello(port: int, deadline: float, proc: subprocess.Popen[bytes]) -> None:
    """Poll until `GET /` answers 200 "Hello, World!"; a refused connect means not yet."""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise LaunchError(f"exited with status {proc.returncode}")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        try:
            conn.request("GET", "/")
            reply = conn.getresponse()
            body = reply.read()
            if reply.status != 200 or body != b"Hello, World!":
                raise LaunchError(f"GET / answered {reply.status} {body[:60]!r}")
            return
        except (ConnectionError, socket.timeout):
            time.sleep(0.05)
        finally:
            conn.close()
    raise LaunchError(f"port {port} did not answer within {STARTUP_TIMEOUT:.0f} s")


def start(server: Server, log: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port() if any("{port}" in a for a in server.argv) else 0
    argv = ["taskset", "-c", SERVER_CPU, *(a.replace("{port}", str(port)) for a in server.argv)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with log.open("wb") as err:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=err,
                                start_new_session=True)  # its own process group: killed as one
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        port = port or read_startup_port(proc, deadline)
        answers_hello(port, deadline, proc)
        return proc, port
    except BaseException as error:  # Ctrl+C included: the group must not outlive us
        stop(proc)
        if isinstance(error, LaunchError):
            raise LaunchError("\n".join(filter(None, [f"{server.label}: {error}", stderr_tail(log)]))) from None
        raise


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the whole group (gunicorn's worker, forked children), then SIGKILL what is left."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):  # the group is already gone
            os.killpg(proc.pid, sig)  # start_new_session: the group id is the leader's pid
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=3)
    proc.stdout.close()  # type: ignore[union-attr]


def to_ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[unit]


def wrk(port: int, *, conns: int, seconds: int) -> str:
    argv = ["taskset", "-c", WRK_CPU, "wrk", "-t1", f"-c{conns}", f"-d{seconds}s", f"http://127.0.0.1:{port}/"]
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        raise WrkError(f"wrk exited with {done.returncode}: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


def requests_per_second(out: str, label: str) -> float:
    """wrk's "Requests/sec" figure; WrkError, naming `label`, without one."""
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not match:
        raise WrkError(f"{label}: cannot read wrk output:\n{out}")
    return float(match.group(1))


def measure(server: Server, *, group: str, conns: int, seconds: int, round_: int, log: Path) -> Run:
    proc, port = start(server, log)
    try:
        wrk(port, conns=conns, seconds=WARMUP_S)
        out = wrk(port, conns=conns, seconds=seconds)
    finally:
        stop(proc)
    rps = requests_per_second(out, server.label)
    latency = re.search(r"Latency\s+(\S+)\s+\S+\s+(\S+)", out)
    if not latency:
        raise WrkError(f"{server.label}: cannot read wrk output:\n{out}")
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:\s+(.+)", out)
    return Run(group, server.label, round_, rps, to_ms(latency.group(1)), to_ms(latency.group(2)),
               int(non_2xx.group(1)) if non_2xx else 0, errors.group(1).strip() if errors else "")


def report(run: Run) -> str:
    line = (f"  round {run.round}: {run.label:<18} {run.rps:>9,.0f} req/s  "
            f"latency avg {run.latency_avg_ms:.2f} ms, max {run.latency_max_ms:.2f} ms")
    if run.non_2xx:
        line += f"  ERROR: {run.non_2xx} non-2xx/3xx responses"
    if run.socket_errors:
        line += f"  ERROR: socket errors: {run.socket_errors}"
    return line


def alternate(group: str, pair: list[Server], *, rounds: int, conns: int, seconds: int, log: Path,
              problems: list[str]) -> list[Run]:
    """Round 1 runs pair in order, round 2 reversed, and so on; a failure ends the group."""
    runs: list[Run] = []
    try:
        for i in range(rounds):
            for server in pair if i % 2 == 0 else pair[::-1]:
                runs.append(measure(server, group=group, conns=conns, seconds=seconds, round_=i + 1, log=log))
                print(report(runs[-1]), flush=True)
    except (LaunchError, WrkError) as error:
        problems.append(f"FAILED: {error}")
        print(f"  {problems[-1]}", flush=True)
    return runs


def median_rps(runs: list[Run], group: str, label: str) -> float | None:
    values = [r.rps for r in runs if r.group == group and r.label == label]
    return statistics.median(values) if values else None


def table(rows: list[tuple[str, ...]]) -> str:
    """Text left-aligned in the first two columns, numbers right-aligned in the rest."""
    widths = [max(map(len, column)) for column in zip(*rows)]
    lines = ["  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))) for row in rows]
    return "\n".join([lines[0], "-" * len(lines[0]), *lines[1:]])


def group_of(comparison: Comparison) -> str:
    """Runs are medians within their own comparison: ours against the peer it alternated with."""
    return f"{comparison.backend} vs {comparison.peer.label}"


def summary_row(comparison: Comparison, runs: list[Run]) -> tuple[str, ...]:
    mine = median_rps(runs, group_of(comparison), f"ours:{comparison.backend}")
    theirs = median_rps(runs, group_of(comparison), comparison.peer.label)
    ratio = mine / theirs if mine and theirs else None
    if comparison.target is None:
        target = met = "-"
    else:
        target = f">={comparison.target:.1f}"
        met = "n/a" if ratio is None else ("yes" if ratio >= comparison.target else "no")
    return (comparison.backend, comparison.peer.label, str(comparison.conns),
            f"{mine:,.0f}" if mine else "-", f"{theirs:,.0f}" if theirs else "-",
            f"{ratio:.2f}" if ratio else "-", target, met)


def run_all(chosen: list[Comparison], *, rounds: int, seconds: int) -> tuple[list[Run], list[str]]:
    runs: list[Run] = []
    problems: list[str] = []
    common = dict(rounds=rounds, seconds=seconds, problems=problems)
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "server.stderr"
        for comparison in chosen:
            pair = [ours(comparison.backend), comparison.peer]
            print(f"{comparison.backend} vs {comparison.peer.label}, {comparison.conns} connections", flush=True)
            if comparison.peer.needs and not installed(comparison.peer.needs):
                problems.append(f"skipped: {comparison.peer.needs} not installed (pip install concurbench[peers])")
                print(f"  {problems[-1]}; measuring ours alone", flush=True)
                pair = pair[:1]
            runs += alternate(group_of(comparison), pair, conns=comparison.conns, log=log, **common)
        for conns in sorted({c.conns for c in chosen}, reverse=True):
            print(f"ceiling, {conns} connections", flush=True)
            runs += alternate(f"ceiling-{conns}", [CEILING], conns=conns, log=log, **common)
    problems += [report(r).strip() for r in runs if r.non_2xx or r.socket_errors]
    return runs, problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--duration", type=int, default=5, help="seconds per measured wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each server, alternating ours and peer")
    parser.add_argument("--only", default="", help="comma-separated backends (default: all)")
    parser.add_argument("--json", type=Path, help="save every run's raw numbers here")
    args = parser.parse_args()
    if not shutil.which("wrk") or not shutil.which("taskset"):
        print("error: wrk and taskset are required (apt-get install wrk util-linux)", file=sys.stderr)
        return 2
    only = set(filter(None, args.only.split(",")))
    if unknown := only - {c.backend for c in COMPARISONS}:
        parser.error(f"--only: unknown backend(s) {', '.join(sorted(unknown))}")
    chosen = [c for c in COMPARISONS if not only or c.backend in only]
    load_start = os.getloadavg()
    runs, problems = run_all(chosen, rounds=args.rounds, seconds=args.duration)
    load_end = os.getloadavg()

    rows = [("backend", "peer", "conns", "ours req/s", "peer req/s", "ratio", "target", "met")]
    rows += [summary_row(c, runs) for c in chosen]
    for conns in sorted({c.conns for c in chosen}, reverse=True):
        ceiling = median_rps(runs, f"ceiling-{conns}", CEILING.label)
        rows += [("ceiling", "asyncio Protocol, no parsing", str(conns), f"{ceiling:,.0f}" if ceiling else "-", *"----")]
    print(f"\nmedian of {args.rounds} rounds x {args.duration} s, server on CPU {SERVER_CPU}, wrk -t1 on CPU {WRK_CPU}")
    print(table(rows))
    print("load average (1, 5, 15 min): start %.2f %.2f %.2f, end %.2f %.2f %.2f" % (*load_start, *load_end))
    for problem in problems:
        print(problem)
    if args.json:
        metadata = {"python": platform.python_version(), "cpu_count": os.cpu_count(), "date": time.time(),
                    "hostname": platform.node(), "duration_s": args.duration, "rounds": args.rounds,
                    "loadavg_start": load_start, "loadavg_end": load_end, "problems": problems}
        data = {"version": SCHEMA_VERSION, "metadata": metadata, "benchmarks": [asdict(r) for r in runs]}
        args.json.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return 1 if problems else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # the finally blocks have already killed the servers
        print("\ninterrupted", file=sys.stderr)
        sys.exit(130)
