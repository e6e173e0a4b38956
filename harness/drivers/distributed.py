"""Distributed load: Locust's master/worker runners carry the users, our messages the latencies.

Imported only by the driver process (harness.drivers.locust_driver). The master keeps the
timeline and writes the results; users run only in the workers. Besides Locust's own
spawn/stop messages (runner.start on the master), the two sides exchange:

    worker -> master  concurbench_hello   {"hostname"}: handlers registered, send me levels
    master -> worker  concurbench_welcome null: counted in (a master that is quitting stays
                      silent, and a worker that can rejoin waits for the next master)
    master -> worker  concurbench_level   {"index", "spec", "slot", "workers"}: one load level;
                      "spec" carries this worker's share of the background sockets
    worker -> master  concurbench_ready   {"index", "error"}: configured, idle sockets open
    master -> worker  concurbench_window  {"index", "open"}: close the open window now, then
                      open window `open` (a repetition), or none (null: the level is over)
    worker -> master  concurbench_batch   once a second of the open window, and when it closes:
                      {"index", "rep" (-1: the warm-up), "second", "final", "batches",
                      "count", "sum_us", "max_us", "histogram", "sent_histogram" (open loop),
                      "sent_max_us", "errors" (by kind), "errors_all", "warm", "span_ns"};
                      the final batch of a measured window adds "unfinished",
                      "unfinished_max_us", "starved_users", "background", "cpu_percent",
                      "duration_s", "requests" and "window_errors" (the window's totals)

A window's boundaries are the master's, but each worker gates its requests on its own clock
when the message arrives: clocks of different machines never need to agree. Batches carry
encoded HdrHistograms (harness.metrics' text form), which the master merges losslessly.
"""

from __future__ import annotations

import json
import signal
import socket
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, replace
from typing import Any

import gevent
import gevent.event
from locust.env import Environment
from locust.exception import RPCError
from locust.runners import MasterRunner, WorkerRunner

from harness.drivers.background import Background, hold_idle, trickle
from harness.drivers.raw_http import _NS, ERROR_KINDS, RequestMix, host_header, resolve_target
from harness.drivers.raw_user import RawHttpUser, Recorder, watch_timeouts
from harness.drivers.spec import BackgroundCounts, DriverSpec, SecondSample, SpecError
from harness.metrics import HIGHEST_US, decode_histogram, encode_histogram, new_histogram

MASTER_PORT = 5557  # Locust's own default
HELLO, WELCOME, LEVEL, READY, WINDOW, BATCH = (
    f"concurbench_{name}" for name in ("hello", "welcome", "level", "ready", "window", "batch"))
WELCOME_TIMEOUT_S = 2.0  # after Locust's ack: a master that is up answers in milliseconds
READY_TIMEOUT_S = 30.0  # a level's idle sockets open, and the previous level's users stop, within this
# The last batch of a window crosses the network after the window closes; a worker whose CPU
# is saturated answers late (Locust itself waits 3 heartbeats of 1 s before calling it missing).
FINAL_BATCH_TIMEOUT_S = 10.0
POLL_S = 0.005
# A worker sends a second's batch when that second ends on its own clock; the master prints
# its progress line for the second this much later, so the batches are in by then.
PROGRESS_LAG_NS = 100_000_000


class DistributedError(Exception):
    """The workers cannot carry the run: too few joined, one left or went silent."""

    def __init__(self, message: str, *, exit_status: int = 1) -> None:
        super().__init__(message)
        self.exit_status = exit_status


class DistributedUser(RawHttpUser):
    """The one user class of a distributed run. Locust spawns users by class name, so the
    class exists on both sides; each worker configures it from the level the master sends."""

    abstract = False
    configured = False
    slot = 0  # open loop: this worker's first slot of the level's timeline
    slot_step = 1  # open loop: the number of workers sharing the timeline

    @classmethod
    def configure(cls, spec: DriverSpec, recorder: Recorder, family: socket.AddressFamily, address: tuple, *,
                  slot: int, workers: int) -> None:
        cls.mix, cls.recorder, cls.keep_alive = RequestMix(spec), recorder, spec.keep_alive
        cls.family, cls.address = family, address
        cls.slot, cls.slot_step = slot, workers
        cls.configured = True
        cls.period_ns, cls.stride = (max(1, int(_NS / spec.rate)), max(spec.users, 1)) if spec.rate else (None, 1)

    def on_start(self) -> None:
        while not self.configured:  # a worker that joined mid-run: the master stops the run
            gevent.sleep(1)

    def _schedule(self, rec: Recorder) -> Iterator[int]:
        """Open loop: user j of worker w (of n) takes slot w + j*n, so the workers' users
        interleave on one timeline as one process's would; it starts with the first user."""
        slot = self.slot + rec.joined * self.slot_step
        rec.joined += 1
        if not rec.epoch_ns:
            rec.epoch_ns = time.perf_counter_ns()
        period, stride, epoch = self.period_ns, self.stride, rec.epoch_ns
        assert period is not None
        while True:
            yield epoch + slot * period
            slot += stride


def encode_samples(samples: list[int]) -> str:
    """A batch of latencies (us) as encoded HdrHistogram text. Recorded by distinct value:
    one record_value per value is ~10x cheaper than one per sample."""
    hist = new_histogram()
    for value, count in Counter(samples).items():
        hist.record_value(min(value, HIGHEST_US), count)
    return encode_histogram(hist)


def share(total: int, *, slot: int, workers: int) -> int:
    """Worker `slot`'s part of `total` things split as evenly as possible."""
    return total // workers + (slot < total % workers)


# --- the worker side ----------------------------------------------------------------------


class WorkerLevel:
    """One level on one worker: its recorder, its background sockets, the open window."""

    def __init__(self, *, index: int, spec: DriverSpec, rec: Recorder, bg: Background,
                 greenlets: list[gevent.Greenlet], send: Callable[[dict[str, Any]], None]) -> None:
        self.index, self.spec, self.rec, self.bg, self.greenlets, self.send = index, spec, rec, bg, greenlets, send
        self.generation = 0
        self.warm_before = 0
        self._open(-1, time.perf_counter_ns())  # -1: the warm-up, reported for progress only
        self.greenlets.append(gevent.spawn(self._tick))

    def _open(self, rep: int, now_ns: int) -> None:
        self.rep, self.base_ns, self.second, self.batches, self.requests = rep, now_ns, 0, 0, 0
        self.batch_ns = now_ns  # when the last batch was taken
        self.errors_before = dict.fromkeys(ERROR_KINDS, 0)
        self.cpu_mark = time.process_time()
        self.generation += 1

    def boundary(self, open_rep: int | None) -> dict[str, Any]:
        """Close the open window and open the next one. Nothing here yields, so no response
        lands between the two: it is in the last batch of one window or the next window."""
        now_ns = time.perf_counter_ns()
        final = self._batch(now_ns, final=True)
        rec = self.rec
        if open_rep is None:
            rec.gate_ns = sys.maxsize
            self.generation += 1
        else:
            rec.gate_ns = now_ns
            rec.errors = dict.fromkeys(ERROR_KINDS, 0)
            self._open(open_rep, now_ns)
        return final

    def _batch(self, now_ns: int, *, final: bool) -> dict[str, Any]:
        """What this worker measured since its last batch. `second` counts the batches of the
        window; a final batch says how many the window had, so the master knows it has all."""
        rec = self.rec
        samples, rec.samples = rec.samples, []
        sent, rec.samples_sent = rec.samples_sent, []
        errors = {kind: rec.errors[kind] - self.errors_before[kind] for kind in ERROR_KINDS}
        self.errors_before = dict(rec.errors)
        warm, self.warm_before = rec.warm - self.warm_before, rec.warm
        span_ns, self.batch_ns = now_ns - self.batch_ns, now_ns
        self.batches += 1
        self.requests += len(samples)
        measured = self.rep >= 0
        data: dict[str, Any] = {
            "index": self.index, "rep": self.rep, "second": self.second, "final": final, "batches": self.batches,
            "count": len(samples), "sum_us": sum(samples), "max_us": max(samples, default=0),
            "histogram": encode_samples(samples) if measured else None,
            "sent_histogram": encode_samples(sent) if measured and self.spec.rate else None,
            "sent_max_us": max(sent, default=0),
            "errors": errors, "errors_all": rec.errors_all, "warm": warm, "span_ns": span_ns,
        }
        self.second += 1
        if final and measured:
            in_flight = [now_ns - u.t0 for u in rec.users if u.conn is not None and u.t0 <= now_ns]
            window_s = (now_ns - self.base_ns) / _NS
            cpu_s = time.process_time() - self.cpu_mark
            data.update(unfinished=len(in_flight), unfinished_max_us=max(in_flight) // 1000 if in_flight else None,
                        starved_users=rec.starved(self.base_ns), background=asdict(self.bg.counts()),
                        cpu_percent=round(100 * cpu_s / window_s, 1) if window_s else 0.0,
                        duration_s=round(window_s, 6), requests=self.requests, window_errors=sum(rec.errors.values()))
        return data

    def _tick(self) -> None:
        """A batch at every whole second of the open window, on this worker's clock."""
        while True:
            generation, due_ns = self.generation, self.base_ns + (self.second + 1) * _NS
            gevent.sleep(max(0.0, (due_ns - time.perf_counter_ns()) / _NS))
            if generation == self.generation:  # else a boundary came first: start over
                self.send(self._batch(time.perf_counter_ns(), final=False))

    def stop(self) -> None:
        self.rec.gate_ns = sys.maxsize
        gevent.killall(self.greenlets)


class WorkerSide:
    """The worker's handlers: set up each level the master sends, and close and open its
    windows when the master says so."""

    def __init__(self, runner: WorkerRunner) -> None:
        self.runner = runner
        self.level: WorkerLevel | None = None
        self.welcomed = gevent.event.Event()
        runner.register_message(WELCOME, lambda environment, msg: self.welcomed.set())
        runner.register_message(LEVEL, self._on_level)
        runner.register_message(WINDOW, self._on_window)
        runner.send_message(HELLO, {"hostname": socket.gethostname()})

    def _send(self, data: dict[str, Any]) -> None:
        self.runner.send_message(BATCH, data)

    def _on_level(self, environment: Any, msg: Any) -> None:
        gevent.spawn(self._start_level, msg.data)  # waits for sockets: not in the message loop

    def _start_level(self, data: dict[str, Any]) -> None:
        index = data["index"]
        if self.level is not None:
            self.level.stop()
            self.level = None
        deadline = time.monotonic() + READY_TIMEOUT_S
        while self.runner.user_count and time.monotonic() < deadline:  # the last level's users
            gevent.sleep(POLL_S)
        try:
            spec = DriverSpec.from_dict(data["spec"])
            family, address = resolve_target(spec.host, spec.port)
        except SpecError as exc:
            self.runner.send_message(READY, {"index": index, "error": str(exc)})
            return
        except OSError as exc:
            self.runner.send_message(READY, {"index": index, "error": f"cannot resolve host {spec.host!r}: {exc}"})
            return
        rec = Recorder(gate_ns=sys.maxsize)  # all warm-up until the master opens a window
        DistributedUser.configure(spec, rec, family, address, slot=data["slot"], workers=data["workers"])
        bg = Background()
        slow_request = f"GET / HTTP/1.1\r\nHost: {host_header(spec.host, spec.port)}\r\n\r\n".encode()
        greenlets = [
            *(gevent.spawn(hold_idle, family, address, spec.timeout_s, bg) for _ in range(spec.idle_connections)),
            *(gevent.spawn(trickle, family, address, slow_request, spec, bg) for _ in range(spec.slow_clients)),
            gevent.spawn(watch_timeouts, rec, spec.timeout_s),
        ]
        while bg.idle_tried < spec.idle_connections:  # idle sockets go first, as in one process
            gevent.sleep(0.01)
        self.level = WorkerLevel(index=index, spec=spec, rec=rec, bg=bg, greenlets=greenlets, send=self._send)
        self.runner.send_message(READY, {"index": index, "error": None})

    def _on_window(self, environment: Any, msg: Any) -> None:
        level = self.level
        if level is None or level.index != msg.data["index"]:
            return
        closed_rep, open_rep = level.rep, msg.data["open"]
        final = level.boundary(open_rep)
        self._send(final)
        if closed_rep >= 0:  # this worker's own totals, for whoever checks the merge
            print(json.dumps({"type": "worker-window", "spec": level.index, "repetition": closed_rep,
                              "requests": final["requests"], "errors": final["window_errors"]}), flush=True)
        if open_rep is None:
            level.stop()
            self.level = None

    def close(self) -> None:
        if self.level is not None:
            self.level.stop()


# --- the master side ----------------------------------------------------------------------


class Second:
    """One second of a window, merged over the workers until every one has moved past it."""

    def __init__(self) -> None:
        self.hist = new_histogram()
        self.count = self.errors = 0

    def sample(self, second: int) -> SecondSample:
        p50, p99 = ((self.hist.get_value_at_percentile(50), self.hist.get_value_at_percentile(99))
                    if self.count else (None, None))
        return SecondSample(second, self.count, self.errors, p50, p99)


class MergedWindow:
    """One window as all the workers saw it: what locust_driver.Window holds for one process,
    plus the sums of the workers' final reports."""

    def __init__(self, workers: Iterable[str]) -> None:
        self.total, self.sent = new_histogram(), new_histogram()
        self.count = self.sum_us = self.max_us = self.sent_max_us = 0
        self.series: list[SecondSample] = []
        self.errors = dict.fromkeys(ERROR_KINDS, 0)
        self.unfinished = self.starved = 0
        self.unfinished_max_us: int | None = None
        self.cpu_percent = 0.0  # the busiest worker's
        self.background: Counter[str] = Counter()
        self.received: Counter[str] = Counter()  # batches, by worker
        self.expected: dict[str, int] = {}  # batches, by worker, known from its final batch
        self.reached = dict.fromkeys(workers, -1)  # the latest second each worker has sent
        self.seconds: dict[int, Second] = {}
        self.settled: dict[int, SecondSample] = {}

    @property
    def complete(self) -> bool:
        return all(self.received[w] == self.expected.get(w) for w in self.reached)

    def fold(self, worker: str, data: dict[str, Any]) -> None:
        hist = decode_histogram(data["histogram"])
        self.total.add(hist)
        self.count += data["count"]
        self.sum_us += data["sum_us"]
        self.max_us = max(self.max_us, data["max_us"])
        if data["sent_histogram"]:
            self.sent.add(decode_histogram(data["sent_histogram"]))
            self.sent_max_us = max(self.sent_max_us, data["sent_max_us"])
        for kind, count in data["errors"].items():
            self.errors[kind] += count
        second = data["second"]
        if second not in self.settled:  # ZMQ keeps one worker's messages in order: always true
            part = self.seconds.setdefault(second, Second())
            part.hist.add(hist)
            part.count += data["count"]
            part.errors += sum(data["errors"].values())
        self.received[worker] += 1
        self.reached[worker] = max(self.reached[worker], second)
        if data["final"]:
            self.expected[worker] = data["batches"]
            self.unfinished += data["unfinished"]
            self.starved += data["starved_users"]
            if data["unfinished_max_us"] is not None:
                self.unfinished_max_us = max(self.unfinished_max_us or 0, data["unfinished_max_us"])
            self.cpu_percent = max(self.cpu_percent, data["cpu_percent"])
            self.background.update(data["background"])
        if self.received[worker] == self.expected.get(worker):
            self.reached[worker] = sys.maxsize
        self._settle()

    def _settle(self) -> None:
        """Turn the seconds every worker has moved past into samples, and drop their histograms."""
        done = min(self.reached.values(), default=sys.maxsize)
        for second in [s for s in self.seconds if s < done]:
            self.settled[second] = self.seconds.pop(second).sample(second)

    def close(self, whole_seconds: int) -> None:
        """The series: the window's whole seconds, as one process reports them."""
        self.series = [self.settled.get(s) or Second().sample(s) for s in range(whole_seconds)]

    def background_counts(self) -> BackgroundCounts:
        return BackgroundCounts(**{key: self.background[key] for key in BackgroundCounts.__dataclass_fields__})


class Board:
    """The master's side: which workers there are, what they report, and the merged windows."""

    def __init__(self, runner: MasterRunner) -> None:
        self.runner = runner
        self.hosts: dict[str, str] = {}  # client id -> hostname, for every worker that said hello
        self.level: dict[str, str] = {}  # the workers carrying the current level
        self.index = -1
        self.ready: dict[str, str | None] = {}  # client id -> error, for the current level
        self.windows: dict[int, MergedWindow] = {}
        self.closing = False
        self.intruder: str | None = None
        # Since the last progress line, by worker: responses (warm-up ones too), and the time
        # they took on that worker's clock: the rate does not depend on when batches arrive.
        self.done: Counter[str] = Counter()
        self.span_ns: Counter[str] = Counter()
        self.errors_all: dict[str, int] = {}  # client id -> errors this level, for progress
        self.start_ns = time.perf_counter_ns()
        runner.register_message(HELLO, self._on_hello)
        runner.register_message(READY, self._on_ready)
        runner.register_message(BATCH, self._on_batch)
        runner.environment.events.worker_connect.add_listener(self._on_connect)

    @property
    def worker_hosts(self) -> list[str]:
        return sorted(self.level.values())

    def _on_connect(self, client_id: str, **kwargs: Any) -> None:
        if self.level and client_id not in self.level:
            self.intruder = client_id  # Locust has already handed it users taken from the others

    def _on_hello(self, environment: Any, msg: Any) -> None:
        if not self.closing:
            self.hosts[msg.node_id] = msg.data["hostname"]
            self.runner.send_message(WELCOME, None, client_id=msg.node_id)

    def _on_ready(self, environment: Any, msg: Any) -> None:
        if msg.data["index"] == self.index:
            self.ready[msg.node_id] = msg.data["error"]

    def _on_batch(self, environment: Any, msg: Any) -> None:
        data = msg.data
        if data["index"] != self.index or msg.node_id not in self.level:
            return
        self.done[msg.node_id] += data["count"] + data["warm"]
        self.span_ns[msg.node_id] += data["span_ns"]
        self.errors_all[msg.node_id] = data["errors_all"]
        window = self.windows.get(data["rep"])
        if window is not None:
            window.fold(msg.node_id, data)

    def _connected(self) -> list[str]:
        return sorted(c for c in self.hosts if c in self.runner.clients)

    def _wait(self, done: Callable[[], bool], timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while not done():
            if time.monotonic() > deadline:
                return False
            self.check()
            gevent.sleep(POLL_S)
        return True

    def gather(self, expected: int, timeout_s: float, stop: gevent.event.Event) -> bool:
        """Wait until `expected` workers have joined; False if stopped first."""
        deadline = time.monotonic() + timeout_s
        while len(self._connected()) < expected:
            if stop.is_set():
                return False
            if time.monotonic() > deadline:
                raise DistributedError(
                    f"only {len(self._connected())} of {expected} workers joined within {timeout_s:g}s "
                    f"(master port {self.runner.server.port})", exit_status=2)
            gevent.sleep(POLL_S)
        return True

    def configure(self, index: int, spec: DriverSpec) -> int:
        """Send every worker the level, with its share of the background sockets, and wait
        until each has set it up; returns the level's start on the master's clock."""
        self.index, self.ready, self.errors_all, self.windows = index, {}, {}, {}
        workers = self._connected()
        if not workers:
            raise DistributedError("every worker has left")
        self.level = {client: self.hosts[client] for client in workers}
        for slot, client in enumerate(workers):
            part = replace(spec, idle_connections=share(spec.idle_connections, slot=slot, workers=len(workers)),
                           slow_clients=share(spec.slow_clients, slot=slot, workers=len(workers)))
            self.runner.send_message(LEVEL, {"index": index, "spec": part.to_dict(), "slot": slot,
                                             "workers": len(workers)}, client_id=client)
        if not self._wait(lambda: len(self.ready) == len(workers), READY_TIMEOUT_S):
            missing = [self.level[c] for c in workers if c not in self.ready]
            raise DistributedError(f"worker(s) on {', '.join(missing)} did not set up level {index} "
                                   f"within {READY_TIMEOUT_S:g}s")
        for client, error in self.ready.items():
            if error:
                raise DistributedError(f"worker on {self.level[client]}: {error}", exit_status=2)
        self.done.clear()
        self.span_ns.clear()
        self.start_ns = time.perf_counter_ns()
        return self.start_ns

    def start_users(self, spec: DriverSpec) -> gevent.Greenlet | None:
        """Locust spreads the users over the workers (runner.start blocks while it does)."""
        if not spec.users:
            return None
        return gevent.spawn(self.runner.start, spec.users, spawn_rate=spec.effective_spawn_rate)

    def end_level(self, spawner: gevent.Greenlet | None, spec: DriverSpec) -> None:
        """Down to 0 users, all at once, before the next level configures the workers."""
        if spawner is not None:
            spawner.kill()
            self.runner.start(0, spawn_rate=max(spec.users, 1))
        self.level = {}

    def open(self, rep: int | None) -> int:
        """Close the open window on every worker and open window `rep` (None: the level is
        over); returns the moment, on the master's clock."""
        if rep is not None:
            self.windows[rep] = MergedWindow(self.level)
        self.runner.send_message(WINDOW, {"index": self.index, "open": rep})
        return time.perf_counter_ns()

    def collect(self, rep: int, *, whole_seconds: int) -> MergedWindow:
        """Window `rep` once every worker's last batch for it is in."""
        window = self.windows[rep]
        if not self._wait(lambda: window.complete, FINAL_BATCH_TIMEOUT_S):
            silent = [self.level[w] for w in window.reached if window.received[w] != window.expected.get(w)]
            raise DistributedError(f"no end-of-window report from the worker(s) on {', '.join(silent)} "
                                   f"within {FINAL_BATCH_TIMEOUT_S:g}s")
        del self.windows[rep]
        window.close(whole_seconds)
        return window

    def ticks(self, from_ns: int, until_ns: int, stop: gevent.event.Event, *, phase: str) -> bool:
        """Wait until until_ns, printing a progress line just after each whole second since
        from_ns; True if stopped. The caller prints the last line, once the batches are in."""
        second = 1
        while True:
            line_ns = from_ns + second * _NS + PROGRESS_LAG_NS
            stopped = stop.wait(timeout=max(0.0, (min(line_ns, until_ns) - time.perf_counter_ns()) / _NS))
            self.check()
            if stopped or line_ns >= until_ns:
                return stopped
            self.progress(phase)
            second += 1

    def progress(self, phase: str) -> None:
        print(json.dumps({
            "type": "progress",
            "elapsed": round((time.perf_counter_ns() - self.start_ns) / _NS, 3),
            "rps": round(sum(self.done[w] * _NS / self.span_ns[w] for w in self.span_ns if self.span_ns[w]), 1),
            "errors": sum(self.errors_all.values()),
            "phase": phase,
        }), flush=True)
        self.done.clear()
        self.span_ns.clear()

    def close(self) -> None:
        """Quit, and the workers with it; one that joins meanwhile is not welcomed."""
        self.closing = True
        self.runner.quit()

    def check(self) -> None:
        """Fail the run if the set of workers changed under it."""
        if self.intruder is not None:
            host = self.intruder.rsplit("_", 1)[0]  # Locust's client ids are HOSTNAME_UUID
            raise DistributedError(f"a worker on {host} joined mid-run; start every worker before the master's "
                                   "first level")
        gone = [host for client, host in self.level.items() if client not in self.runner.clients]
        if gone:
            raise DistributedError(f"the worker(s) on {', '.join(gone)} left mid-run")


# --- the processes ------------------------------------------------------------------------


def start_master(bind: str, port: int) -> Board:
    """Listen for workers on bind:port (0: any free port, see board.runner.server.port)."""
    env = Environment(user_classes=[DistributedUser])
    try:
        runner = env.create_master_runner(bind, port)
    except (SystemExit, RPCError) as exc:  # Locust logs a busy port, then calls sys.exit
        raise DistributedError(f"cannot listen for workers on {bind}:{port}: "
                               f"{'address in use' if isinstance(exc, SystemExit) else exc}", exit_status=2) from None
    return Board(runner)


def serve_worker(master_host: str, master_port: int, stop: gevent.event.Event, *, rejoin: bool = False) -> int:
    """Join the master and run the levels it sends until it quits or this process is stopped.
    With `rejoin`, then wait for the next master on the same address (`concurbench run` starts
    one per backend)."""
    try:
        socket.getaddrinfo(master_host, master_port, type=socket.SOCK_STREAM)
    except OSError as exc:
        print(f"locust_driver: cannot resolve the master {master_host!r}: {exc}", file=sys.stderr)
        return 2
    while True:
        env = Environment(user_classes=[DistributedUser])
        try:
            # Locust retries for 5 minutes. Until it is in, SIGTERM and SIGINT keep their
            # default effect: nothing runs yet, so nothing needs a clean stop.
            runner = env.create_worker_runner(master_host, master_port)
        except ConnectionError:
            if rejoin:
                continue
            print(f"locust_driver: no master answered at {master_host}:{master_port}", file=sys.stderr)
            return 1
        side = WorkerSide(runner)
        if not side.welcomed.wait(timeout=WELCOME_TIMEOUT_S):  # the last master, quitting
            runner.quit()
            runner.client.close(linger=0)
            if rejoin:
                continue
            print(f"locust_driver: the master at {master_host}:{master_port} is quitting", file=sys.stderr)
            return 1
        handlers = [gevent.signal_handler(signum, stop.set) for signum in (signal.SIGTERM, signal.SIGINT)]
        while len(runner.greenlet) and not stop.wait(timeout=0.2):  # the master's "quit" empties it
            pass
        if stop.is_set():
            env.events.quitting.fire(environment=env, reverse=True)  # tells the master this worker left
            runner.quit()
        side.close()
        runner.client.close(linger=0)
        for handler in handlers:
            handler.cancel()
        if stop.is_set() or not rejoin:
            return 0
