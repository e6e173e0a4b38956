"""The worker side of a distributed run: run the levels the master sends, report batches.

Imported only by the driver process (the messages: protocol.py).
"""

from __future__ import annotations

import json
import socket

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import gevent
import gevent.event
from locust.runners import WorkerRunner

from harness.drivers import WORKER_MAX_SOCKETS, WORKER_MAX_USERS
from harness.drivers.locust.background import Background, hold_idle, trickle
from harness.drivers.locust.client import _NS, host_header, resolve_target
from harness.drivers.locust.user import Recorder, watch_timeouts
from harness.drivers.spec import DriverSpec, SpecError
from harness.drivers.locust.window import tally_message
from harness.drivers.distributed.protocol import (BATCH, EPOCH, HELLO, LEVEL, POLL_S, PROOF, READY, READY_TIMEOUT_S,
                                                  WELCOME, WINDOW, DistributedUser, new_nonce, proof, proves)



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
        self.rep, self.base_ns, self.second, self.batches = rep, now_ns, 0, 0
        self.requests = self.good = self.window_errors = 0  # the window's totals so far
        self.batch_ns = now_ns  # when the last batch was taken
        self.cpu_mark = time.process_time()
        self.generation += 1

    def boundary(self, open_rep: int | None) -> dict[str, Any]:
        """Close the open window and open the next one. Nothing here yields, so no response
        lands between the two: it is in the last batch of one window or the next window."""
        now_ns = time.perf_counter_ns()
        final = self._batch(now_ns, final=True)
        self.rec.measuring = open_rep is not None
        if open_rep is None:
            self.generation += 1
        else:
            self._open(open_rep, now_ns)
        return final

    def _batch(self, now_ns: int, *, final: bool) -> dict[str, Any]:
        """What this worker recorded since its last batch (a cut of its recorder). `second`
        counts the batches of the window; a final batch says how many the window had, so the
        master knows it has all."""
        rec = self.rec
        tally = rec.cut()
        warm, self.warm_before = rec.warm - self.warm_before, rec.warm
        span_ns, self.batch_ns = now_ns - self.batch_ns, now_ns
        self.batches += 1
        answers, errors = len(tally.samples) + len(tally.bad), sum(tally.errors.values())
        self.requests += answers
        self.good += len(tally.samples)
        self.window_errors += errors
        measured = self.rep >= 0
        data: dict[str, Any] = {
            "index": self.index, "rep": self.rep, "second": self.second, "final": final, "batches": self.batches,
            "count": answers, "errors": errors,
            "tally": tally_message(tally, open_loop=bool(self.spec.rate)) if measured else None,
            "errors_all": rec.errors_all, "warm": warm, "span_ns": span_ns,
        }
        self.second += 1
        if final and measured:
            waiting = rec.waiting(self.base_ns, now_ns)
            in_flight = [now_ns - u.t0 for u in rec.users if u.busy and u.t0 <= now_ns]
            window_s = (now_ns - self.base_ns) / _NS
            cpu_s = time.process_time() - self.cpu_mark
            data.update(unfinished=len(in_flight), unfinished_max_us=max(in_flight) // 1000 if in_flight else None,
                        waiting=waiting._asdict(), background=asdict(self.bg.counts()),
                        cpu_percent=round(100 * cpu_s / window_s, 1) if window_s else 0.0,
                        duration_s=round(window_s, 6), requests=self.requests, good=self.good,
                        window_errors=self.window_errors)
        return data

    def _tick(self) -> None:
        """A batch at every whole second of the open window, on this worker's clock."""
        while True:
            generation, due_ns = self.generation, self.base_ns + (self.second + 1) * _NS
            gevent.sleep(max(0.0, (due_ns - time.perf_counter_ns()) / _NS))
            if generation == self.generation:  # else a boundary came first: start over
                self.send(self._batch(time.perf_counter_ns(), final=False))

    def stop(self) -> None:
        self.rec.measuring = False
        gevent.killall(self.greenlets)


@dataclass(frozen=True)
class WorkerLimits:
    """What a worker agrees to do for any master, whatever a level asks: at most this many
    users and background sockets (idle and slow) of its own, and only against these targets
    (IP addresses; empty: any)."""

    max_users: int = WORKER_MAX_USERS
    max_sockets: int = WORKER_MAX_SOCKETS
    targets: frozenset[str] = frozenset()

    def refusal(self, spec: DriverSpec, address: tuple, workers: int) -> str | None:
        """Why this worker will not run its share of `spec` (None: it will)."""
        if self.targets and address[0] not in self.targets:
            return (f"this worker only targets {', '.join(sorted(self.targets))} (--allow-target); "
                    f"refused {spec.host} ({address[0]})")
        users = -(-spec.users // max(1, workers))  # Locust spreads them evenly: the larger share
        if users > self.max_users:
            return f"{users} users is over this worker's --max-users {self.max_users}"
        sockets = spec.idle_connections + spec.slow_clients  # this worker's share already
        if sockets > self.max_sockets:
            return f"{sockets} background sockets is over this worker's --max-sockets {self.max_sockets}"
        return None


class WorkerSide:
    """The worker's handlers: prove the token and check the master's proof, set up each level
    the master sends (within its limits), and close and open its windows when told."""

    def __init__(self, runner: WorkerRunner, token: str, limits: WorkerLimits = WorkerLimits()) -> None:
        self.runner = runner
        self.token = token
        self.limits = limits
        self.level: WorkerLevel | None = None
        self.answered = gevent.event.Event()  # the master's welcome came, proof right or wrong
        self.welcomed = gevent.event.Event()  # the master proved the token
        self.left = False  # gave up on this master: see leave
        self.nonce = new_nonce()
        runner.register_message(WELCOME, self._on_welcome)
        runner.register_message(LEVEL, self._on_level)
        runner.register_message(WINDOW, self._on_window)
        runner.register_message(EPOCH, self._on_epoch)
        runner.send_message(HELLO, {"hostname": socket.gethostname(), "nonce": self.nonce})

    def _on_welcome(self, environment: Any, msg: Any) -> None:
        if self.left:
            return
        data = msg.data if isinstance(msg.data, dict) else {}
        theirs = data.get("nonce")
        if isinstance(theirs, str) and proves(self.token, "master", self.nonce, theirs, data.get("proof")):
            self.runner.send_message(PROOF, {"proof": proof(self.token, "worker", theirs, self.nonce)})
            self.welcomed.set()
        self.answered.set()

    def leave(self) -> None:
        """Give up on this master: no welcome within WELCOME_TIMEOUT_S (or a wrong one).
        Leaving yields (runner.quit), and a late welcome handled then (this process stalled
        past the timeout) would send the proof: the master would count in a worker that is
        gone, and this one would say the master lacks the token."""
        self.left = True

    def _send(self, data: dict[str, Any]) -> None:
        self.runner.send_message(BATCH, data)

    def _on_level(self, environment: Any, msg: Any) -> None:
        if not self.welcomed.is_set():
            return  # from a master that has not proved the token
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
        refusal = self.limits.refusal(spec, address, data["workers"])
        if refusal:
            self.runner.send_message(READY, {"index": index, "error": refusal})
            return
        rec = Recorder()  # all warm-up until the master opens a window
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

    def _on_epoch(self, environment: Any, msg: Any) -> None:
        """The level's open-loop schedule starts at the master's wall-clock instant: every
        worker's slots then fall on one timeline (the users start after this message)."""
        level = self.level
        if level is not None and level.index == msg.data["index"]:
            level.rec.epoch_ns = time.perf_counter_ns() - (time.time_ns() - msg.data["wall_ns"])

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


