"""The master side of a distributed run: the timeline, and the merge of the workers' batches.

Imported only by the driver process (the messages: protocol.py).
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

import gevent
import gevent.event
from locust.rpc import Message
from locust.runners import STATE_MISSING, MasterRunner

from harness.drivers.locust.client import _NS
from harness.drivers.locust.window import Waiting, Window
from harness.drivers.spec import BackgroundCounts, DriverSpec, SecondSample
from harness.results.metrics import new_histogram
from harness.drivers.distributed.protocol import (BATCH, EPOCH, FINAL_BATCH_TIMEOUT_S, HELLO, LEVEL, POLL_S, PROOF,
                                                  PROGRESS_LAG_NS, READY, READY_TIMEOUT_S, WELCOME, WINDOW,
                                                  new_nonce, proof, proves,
                                                  DistributedError, share)



class Second:
    """One second of a window, merged over the workers until every one has moved past it."""

    def __init__(self) -> None:
        self.hist = new_histogram()
        self.count = self.errors = 0

    def sample(self, second: int) -> SecondSample:
        p50, p99 = ((self.hist.get_value_at_percentile(50), self.hist.get_value_at_percentile(99))
                    if self.count else (None, None))
        return SecondSample(second, self.count, self.errors, p50, p99)


class MergedWindow(Window):
    """One window as all the workers saw it: what a Window holds for one process, plus the
    sums of the workers' final reports."""

    def __init__(self, workers: Iterable[str]) -> None:
        super().__init__()
        self.unfinished = 0
        self.unfinished_max_us: int | None = None
        self.cpu_percent = 0.0  # the busiest worker's
        self.background: Counter[str] = Counter()
        # Each worker's totals over its own span: the window's rates are their sums.
        self.spans: dict[str, tuple[float, int, int]] = {}  # worker -> (duration_s, requests, good)
        self.received: Counter[str] = Counter()  # batches, by worker
        self.expected: dict[str, int] = {}  # batches, by worker, known from its final batch
        self.reached = dict.fromkeys(workers, -1)  # the latest second each worker has sent
        self.seconds: dict[int, Second] = {}
        self.settled: dict[int, SecondSample] = {}

    @property
    def complete(self) -> bool:
        return all(self.received[w] == self.expected.get(w) for w in self.reached)

    def fold(self, worker: str, data: dict[str, Any]) -> None:
        hist = self.add_message(data["tally"])
        second = data["second"]
        if second not in self.settled:  # ZMQ keeps one worker's messages in order: always true
            part = self.seconds.setdefault(second, Second())
            if hist is not None:
                part.hist.add(hist)
            part.count += data["count"]
            part.errors += data["errors"]
        self.received[worker] += 1
        self.reached[worker] = max(self.reached[worker], second)
        if data["final"]:
            self.expected[worker] = data["batches"]
            self.unfinished += data["unfinished"]
            self.add_waiting(Waiting(**data["waiting"]))
            if data["unfinished_max_us"] is not None:
                self.unfinished_max_us = max(self.unfinished_max_us or 0, data["unfinished_max_us"])
            self.cpu_percent = max(self.cpu_percent, data["cpu_percent"])
            self.background.update(data["background"])
            self.spans[worker] = (data["duration_s"], data["requests"], data["good"])
        if self.received[worker] == self.expected.get(worker):
            self.reached[worker] = sys.maxsize
        self._settle()

    def rates(self) -> tuple[float, float]:
        """(rps, good_rps): each worker's counts over its own span, summed. A worker whose
        window message came late (a busy CPU) measured over a longer span, not the master's."""
        return (sum(requests / span for span, requests, _ in self.spans.values() if span),
                sum(good / span for span, _, good in self.spans.values() if span))

    def span_s(self, master_s: float) -> float:
        """The window's length: the workers' spans' mean (the master's when none reported)."""
        spans = [span for span, _, _ in self.spans.values()]
        return sum(spans) / len(spans) if spans else master_s

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

    def __init__(self, runner: MasterRunner, token: str) -> None:
        self.runner = runner
        self.token = token
        self.hosts: dict[str, str] = {}  # client id -> hostname, for every worker that proved the token
        self.pending: dict[str, tuple[str, str, str]] = {}  # client id -> (hostname, its nonce, ours)
        # client id -> how far its handshake got (none: Locust's own "client_ready" only), so
        # gather's error names who came but was not counted in, and where each stopped
        self.stages: dict[str, str] = {}
        self.level: dict[str, str] = {}  # the workers carrying the current level
        self.index = -1
        self.ready: dict[str, str | None] = {}  # client id -> error, for the current level
        self.windows: dict[int, MergedWindow] = {}
        self.closing = False
        # Since the last progress line, by worker: responses (warm-up ones too), and the time
        # they took on that worker's clock: the rate does not depend on when batches arrive.
        self.done: Counter[str] = Counter()
        self.span_ns: Counter[str] = Counter()
        self.errors_all: dict[str, int] = {}  # client id -> errors this level, for progress
        self.start_ns = time.perf_counter_ns()
        runner.register_message(HELLO, self._on_hello)
        runner.register_message(PROOF, self._on_proof)
        runner.register_message(READY, self._on_ready)
        runner.register_message(BATCH, self._on_batch)
        handle = runner.handle_message

        def admit(client_id: str, msg: Message) -> None:
            """Locust hands a worker that joins mid-run users taken from the others: one is
            refused before Locust sees it (a stranger must not be able to stop a run)."""
            if msg.type == "client_ready" and self.level and client_id not in self.level:
                self.refuse(client_id, _host_of(client_id),
                            "it joined mid-run; start every worker before the master's first level")
                return
            handle(client_id, msg)

        runner.handle_message = admit  # type: ignore[method-assign]

    @property
    def worker_hosts(self) -> list[str]:
        return sorted(self.level.values())

    def _on_hello(self, environment: Any, msg: Any) -> None:
        if self.closing:
            return
        self.stages[msg.node_id] = "said hello"
        data = msg.data if isinstance(msg.data, dict) else {}
        host, nonce = str(data.get("hostname", "?"))[:100], data.get("nonce")
        if not isinstance(nonce, str) or not nonce:
            self.refuse(msg.node_id, host, "it offered no proof of the run's token")
            return
        ours = new_nonce()
        self.pending[msg.node_id] = (host, nonce, ours)
        self.runner.send_message(WELCOME, {"nonce": ours, "proof": proof(self.token, "master", nonce, ours)},
                                 client_id=msg.node_id)
        self.stages[msg.node_id] = "welcome sent, no proof"

    def _on_proof(self, environment: Any, msg: Any) -> None:
        """Counted in only now: a worker that knows the run's token."""
        host, nonce, ours = self.pending.pop(msg.node_id, ("?", "", ""))
        claimed = msg.data.get("proof") if isinstance(msg.data, dict) else None
        if not nonce or not proves(self.token, "worker", ours, nonce, claimed):
            self.refuse(msg.node_id, host, "it does not know the run's token")
        elif not self.closing:
            self.hosts[msg.node_id] = host
            self.stages[msg.node_id] = "proved the token, then left"  # said only once it is gone

    def refuse(self, client: str, host: str, why: str) -> None:
        """Tell a worker that cannot prove the token to quit, and forget it, so Locust never
        hands it users; the run goes on with the others."""
        print(f"locust_driver: refused a worker on {host}: {why}", file=sys.stderr, flush=True)
        self.runner.server.send_to_client(Message("quit", None, client))
        self.runner.clients.pop(client, None)
        self.pending.pop(client, None)
        self.stages[client] = f"refused ({why})"

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
                    f"(master port {self.runner.server.port}){self._who_came()}", exit_status=2)
            gevent.sleep(POLL_S)
        return True

    def _who_came(self) -> str:
        """Gather's account of the workers that came: those counted in, and the others by the
        stage their handshake stopped at, with how many Locust has stopped hearing from. A
        worker that never connected is in neither: look on its own side."""
        counted = self._connected()
        stopped: dict[str, list[str]] = {}
        for client in [*self.stages, *(c for c in self.runner.clients if c not in self.stages)]:
            if client not in counted:
                stopped.setdefault(self.stages.get(client, "connected"), []).append(client)
        parts = []
        for stage, clients in stopped.items():
            silent = sum(getattr(self.runner.clients.get(c), "state", None) == STATE_MISSING for c in clients)
            more = f" and {len(clients) - 3} more" if len(clients) > 3 else ""
            parts.append(f"{len(clients)} {stage}: {', '.join(clients[:3])}{more}"
                         + (f" ({silent} missing: no heartbeat)" if silent else ""))
        return (f"; counted in: {', '.join(counted) or 'none'}; came but not counted: "
                f"{'; '.join(parts) if parts else 'none'}; any other worker never reached this master")

    def configure(self, index: int, spec: DriverSpec) -> int:
        """Send every worker the level, with its share of the background sockets, and wait
        until each has set it up; returns the level's start on the master's clock."""
        self.index, self.ready, self.errors_all, self.windows = index, {}, {}, {}
        for client in [c for c in self.runner.clients if c not in self.hosts]:  # Locust would give it users
            self.refuse(client, _host_of(client), "it did not prove the run's token before the level")
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
        epoch = {"index": self.index, "wall_ns": time.time_ns()}
        for client in self.level:  # before Locust's spawn message, which follows it in order
            self.runner.send_message(EPOCH, epoch, client_id=client)
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
        gone = [host for client, host in self.level.items() if client not in self.runner.clients]
        if gone:
            raise DistributedError(f"the worker(s) on {', '.join(gone)} left mid-run")


def _host_of(client_id: str) -> str:
    """The host in a Locust client id (HOSTNAME_UUID), for a worker that never said its own."""
    return client_id.rsplit("_", 1)[0]
