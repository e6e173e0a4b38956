"""Locust load driver: run DriverSpecs in this process and write a DriverResult per window.

    python -m harness.drivers.locust.driver --spec SPEC.json [--spec SPEC2.json ...] --out-dir DIR
    python -m harness.drivers.locust.driver --spec SPEC.json --out RESULT.json
    python -m harness.drivers.locust.driver --master --expect-workers N [--expect-timeout S]
        [--master-bind HOST] [--master-port P] --spec SPEC.json ... --out-dir DIR
    python -m harness.drivers.locust.driver --worker --master-host HOST [--master-port P] [--rejoin]
        [--max-users N] [--max-sockets N] [--allow-target HOST ...]

Run it only as its own process: importing locust monkey-patches socket, threading and select
with gevent for the whole interpreter. Each spec is one user level: a warm-up, then
`repeat` back-to-back measured windows. Contract:
- stdout: one JSON line per second, {"type": "progress", "elapsed", "rps", "errors", "phase"},
  and {"type": "result", "spec", "repetition", "path"} as each window's result is written;
- results are written atomically, also after SIGTERM/SIGINT (then "interrupted": true); exit 0;
- a bad spec (or an unresolvable host) prints one line on stderr and exits 2.
With --master the users run in N --worker processes (see distributed/protocol.py; both sides
take the run's token from $CONCURBENCH_WORKER_TOKEN, and refuse to start without one) and the master
writes the same results and events; it first prints {"type": "master", "port"}, and each
"result" event adds "workers" and "worker_hosts". Fewer than N workers within
--expect-timeout: one line on stderr, exit 2; a worker leaving mid-run: exit 1. A worker
prints {"type": "worker-window", "spec", "repetition", "requests", "errors"} per window.
Latencies are taken with perf_counter_ns in each user and kept in microseconds in
HdrHistogram; Locust's own request stats (whole milliseconds) are not used at all.
"""

from __future__ import annotations

import locust  # noqa: F401  (first: it monkey-patches socket/select/threading with gevent)

import argparse
import json
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from typing import Any

import gevent
import gevent.event
import gevent.hub
from locust.env import Environment

from harness.drivers.spec import (
    check_outputs,
    DriverResult,
    DriverSpec,
    SecondSample,
    SpecError,
    load_spec,
    write_result,
)

from servers.descriptors import raise_fd_limit
from harness.drivers.locust.background import Background, hold_idle, trickle
from harness.drivers.distributed.master import Board
from harness.drivers import MASTER_PORT, TOKEN_ENV
from harness.drivers.distributed.protocol import DistributedError
from harness.drivers.distributed.roles import serve_worker, start_master
from harness.drivers.distributed.worker import WorkerLimits
from harness.drivers.locust.client import _NS, host_header, resolve_target
from harness.drivers.locust.user import Recorder, user_class, watch_timeouts
from harness.drivers.locust.window import Window, result_of

# A worker learns its share of the load only from the master: room for any level one
# process can drive (each user and background socket holds one descriptor).
WORKER_FD_LIMIT = 65536

# --- the run ----------------------------------------------------------------------------


def cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def run(spec: DriverSpec, stop: gevent.event.Event, emit: Callable[[int, DriverResult], None]) -> bool:
    """Warm up once, then measure `spec.repeat` consecutive windows, emitting a result for
    each. The users keep their connections across windows. Returns True if stopped early."""
    family, address = resolve_target(spec.host, spec.port)
    raise_fd_limit(spec.descriptors)
    bg = Background()
    slow_request = f"GET / HTTP/1.1\r\nHost: {host_header(spec.host, spec.port)}\r\n\r\n".encode()
    background = [
        *(gevent.spawn(hold_idle, family, address, spec.timeout_s, bg) for _ in range(spec.idle_connections)),
        *(gevent.spawn(trickle, family, address, slow_request, spec, bg) for _ in range(spec.slow_clients)),
    ]
    while bg.idle_tried < spec.idle_connections and not stop.is_set():  # idle sockets go first
        gevent.sleep(0.01)

    start_ns = time.perf_counter_ns()
    measure_ns = start_ns + int(spec.warmup_s * _NS)
    rec = Recorder()
    rec.epoch_ns = start_ns  # open loop: the schedule starts with the warm-up
    env = Environment(user_classes=[user_class(spec, rec, family, address)])
    runner = env.create_local_runner()
    if spec.users:
        runner.start(spec.users, spawn_rate=spec.effective_spawn_rate)
    background.append(gevent.spawn(watch_timeouts, rec, spec.timeout_s))
    clock = Clock(start_ns)
    stopped = clock.ticks(rec, start_ns, measure_ns, stop, window=None)  # warm-up: progress only
    rec.measuring = True  # from the warm-up's last cut on, every completion counts
    opened_ns = clock.last_ns
    rep = 0
    while not stopped and rep < spec.repeat:
        # Ticks keep to the planned timeline (whole seconds of each window); the window's
        # span runs from cut to cut.
        begin_ns, end_ns = (measure_ns + int(k * spec.duration_s * _NS) for k in (rep, rep + 1))
        cpu_mark, window = cpu_seconds(), Window()
        stopped = clock.ticks(rec, begin_ns, end_ns, stop, window=window)
        closed_ns = clock.last_ns  # the last cut: the next window opens at this instant
        window.add_waiting(rec.waiting(opened_ns, closed_ns))
        in_flight = [closed_ns - u.t0 for u in rec.users if u.busy and u.t0 <= closed_ns]
        window_s = (closed_ns - opened_ns) / _NS
        emit(rep, result_of(spec, window, unfinished=len(in_flight),
                            unfinished_max_us=max(in_flight) // 1000 if in_flight else None,
                            background=bg.counts(), window_s=window_s,
                            cpu_percent=round(100 * (cpu_seconds() - cpu_mark) / window_s, 1) if window_s else 0.0,
                            stopped=stopped))
        rep, opened_ns = rep + 1, closed_ns
    rec.measuring = False  # nothing after the last window counts
    runner.quit()
    gevent.killall(background)
    return stopped


class Clock:
    """One tick a second: cut what the users recorded, print a progress line, fill the series."""

    def __init__(self, start_ns: int) -> None:
        self.start_ns = self.last_ns = start_ns
        self.warm_before = 0

    def ticks(self, rec: Recorder, from_ns: int, until_ns: int, stop: gevent.event.Event, *,
              window: Window | None) -> bool:
        """Tick at every whole second after from_ns, and at until_ns; True if stopped. Each
        tick cuts the recorder at `last_ns` without yielding in between, so a completion
        belongs to the cut (and the window) whose span it happened in."""
        second = 0
        while self.last_ns < until_ns:
            whole = from_ns + (second + 1) * _NS
            when = min(whole, until_ns)
            stopped = stop.wait(timeout=max(0.0, (when - time.perf_counter_ns()) / _NS))
            now_ns = time.perf_counter_ns()
            tally = rec.cut()
            if window is not None:
                hist = window.add(tally)
                if when == whole and not stopped:  # a whole second
                    answers = len(tally.samples) + len(tally.bad)
                    errors = sum(tally.errors.values())
                    p50, p99 = (hist.get_value_at_percentile(50), hist.get_value_at_percentile(99)) if hist \
                        else (None, None)
                    window.series.append(SecondSample(second, answers, errors, p50, p99))
            done = len(tally.samples) + len(tally.bad) + rec.warm - self.warm_before
            print(json.dumps({
                "type": "progress",
                "elapsed": round((now_ns - self.start_ns) / _NS, 3),
                "rps": round(done * _NS / max(now_ns - self.last_ns, 1), 1),
                "errors": rec.errors_all,
                "phase": "warmup" if window is None else "measure",
            }), flush=True)
            self.warm_before, self.last_ns = rec.warm, now_ns
            second += 1
            if stopped:
                return True
        return False


def run_distributed(spec: DriverSpec, index: int, board: Board, stop: gevent.event.Event,
                    emit: Callable[..., None]) -> bool:
    """run() with the users in the workers: the master keeps the timeline, announces each
    window, and turns the workers' merged batches into the same results."""
    start_ns = board.configure(index, spec)
    measure_ns = start_ns + int(spec.warmup_s * _NS)
    spawner = board.start_users(spec)
    stopped = board.ticks(start_ns, measure_ns, stop, phase="warmup")
    if spec.warmup_s:
        board.progress("warmup")
    opened_ns = board.open(None if stopped else 0)  # None: stopped in the warm-up, the level ends
    rep = 0
    while not stopped and rep < spec.repeat:
        end_ns = measure_ns + int((rep + 1) * spec.duration_s * _NS)
        stopped = board.ticks(opened_ns, end_ns, stop, phase="measure")
        closed_ns = board.open(None if stopped or rep + 1 == spec.repeat else rep + 1)
        window_s = (closed_ns - opened_ns) / _NS
        window = board.collect(rep, whole_seconds=int(window_s) if stopped else int(spec.duration_s))
        board.progress("measure")  # the window's last second, its final batches in
        emit(rep, result_of(spec, window, unfinished=window.unfinished, unfinished_max_us=window.unfinished_max_us,
                            background=window.background_counts(), window_s=window.span_s(window_s),
                            cpu_percent=window.cpu_percent, stopped=stopped, worker_hosts=board.worker_hosts,
                            rates=window.rates()),
             workers=len(board.level), worker_hosts=board.worker_hosts)
        rep, opened_ns = rep + 1, closed_ns
    board.end_level(spawner, spec)
    return stopped


def drive_workers(specs: list[DriverSpec], args: argparse.Namespace, stop: gevent.event.Event,
                  emit_to: Callable[[int], Callable[..., None]]) -> int:
    """--master: wait for the workers, then run every level on them; the exit status."""
    try:
        board = start_master(args.master_bind, args.master_port, os.environ[TOKEN_ENV])
    except DistributedError as exc:
        print(f"locust_driver: {exc}", file=sys.stderr)
        return exc.exit_status
    print(json.dumps({"type": "master", "port": board.runner.server.port}), flush=True)
    try:
        if board.gather(args.expect_workers, args.expect_timeout, stop):
            for index, spec in enumerate(specs):
                if run_distributed(spec, index, board, stop, emit_to(index)):
                    break
    except DistributedError as exc:
        print(f"locust_driver: {exc}", file=sys.stderr)
        return exc.exit_status
    finally:
        board.close()  # the workers quit too
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m harness.drivers.locust.driver", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--spec", action="append",
                        help="DriverSpec JSON file; repeat it to run several levels in sequence")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--out", help="where to write the DriverResult JSON (one spec, repeat 1)")
    where.add_argument("--out-dir", help="write result-<spec>-<repetition>.json here, one per window")
    role = parser.add_mutually_exclusive_group()
    role.add_argument("--master", action="store_true", help="run the users in --worker processes, not here")
    role.add_argument("--worker", action="store_true", help="run the users a --master hands out")
    parser.add_argument("--expect-workers", type=int, metavar="N", help="--master: wait for N workers")
    parser.add_argument("--expect-timeout", type=float, default=60.0, metavar="S",
                        help="--master: give up if N workers have not joined within S seconds (default: %(default)s)")
    parser.add_argument("--master-bind", default="127.0.0.1", metavar="HOST",
                        help="--master: the address to listen on for workers (default: %(default)s; '*' is every "
                             "interface, for anyone who can reach this machine)")
    parser.add_argument("--master-host", metavar="HOST", help="--worker: the master to join")
    parser.add_argument("--rejoin", action="store_true",
                        help="--worker: when the master quits, wait for the next one (one per backend)")
    parser.add_argument("--master-port", type=int, default=MASTER_PORT, metavar="P",
                        help="the master's port; --master with 0 picks a free one (default: %(default)s)")
    limits = WorkerLimits()
    parser.add_argument("--max-users", type=int, default=limits.max_users, metavar="N",
                        help="--worker: refuse a level that would give it more users (default: %(default)s)")
    parser.add_argument("--max-sockets", type=int, default=limits.max_sockets, metavar="N",
                        help="--worker: refuse a level that would give it more idle and slow sockets "
                             "(default: %(default)s)")
    parser.add_argument("--allow-target", action="append", default=[], metavar="HOST",
                        help="--worker: the only server(s) it will load (repeatable; default: the master's host)")
    args = parser.parse_args(argv)
    if (args.master or args.worker) and not os.environ.get(TOKEN_ENV):
        parser.error(f"--master and --worker need the run's token in ${TOKEN_ENV}")
    if args.worker and (args.master_host is None or args.spec or args.out or args.out_dir):
        parser.error("--worker takes --master-host and its levels from the master: no --spec, --out or --out-dir")
    if not args.worker and (not args.spec or not (args.out or args.out_dir)):
        parser.error("--spec and one of --out/--out-dir are required")
    if args.master and (args.expect_workers is None or args.expect_workers < 1):
        parser.error("--master needs --expect-workers N, N >= 1")
    logging.basicConfig(stream=sys.stderr, level=logging.ERROR, format="locust_driver: %(name)s: %(message)s")
    stop = gevent.event.Event()
    if args.worker:
        raise_fd_limit(WORKER_FD_LIMIT)
        try:
            targets = frozenset(str(info[4][0]) for host in (args.allow_target or [args.master_host])
                                for info in socket.getaddrinfo(host, None, type=socket.SOCK_STREAM))
        except OSError as exc:
            print(f"locust_driver: cannot resolve an --allow-target: {exc}", file=sys.stderr)
            return 2
        limits = WorkerLimits(max_users=args.max_users, max_sockets=args.max_sockets, targets=targets)
        return serve_worker(args.master_host, args.master_port, stop, token=os.environ[TOKEN_ENV], limits=limits,
                            rejoin=args.rejoin)
    try:
        specs = [load_spec(path) for path in args.spec]
        for spec in specs:
            try:
                resolve_target(spec.host, spec.port)
            except OSError as exc:
                raise SpecError(f"spec: cannot resolve host {spec.host!r}: {exc}") from None
        check_outputs(out=args.out, out_dir=args.out_dir, specs=specs)
    except SpecError as exc:
        print(f"locust_driver: {exc}", file=sys.stderr)
        return 2
    for signum in (signal.SIGTERM, signal.SIGINT):
        gevent.signal_handler(signum, stop.set)
    failed: list[str] = []

    def emit_to(index: int) -> Callable[..., None]:
        def emit(rep: int, result: DriverResult, **event: Any) -> None:
            path = args.out or os.path.join(args.out_dir, f"result-{index}-{rep}.json")
            try:
                write_result(path, result)
            except OSError as exc:
                print(f"locust_driver: cannot write {path}: {exc}", file=sys.stderr)
                failed.append(path)
                return
            print(json.dumps({"type": "result", "spec": index, "repetition": rep, "path": path, **event}), flush=True)
        return emit

    if args.master:
        status = drive_workers(specs, args, stop, emit_to)
    else:
        status = 0
        for index, spec in enumerate(specs):
            if run(spec, stop, emit_to(index)):
                break
    return status or (1 if failed else 0)


if __name__ == "__main__":
    sys.exit(main())
