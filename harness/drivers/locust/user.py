"""The Locust user: a closed loop over one keep-alive socket, latencies in microseconds.

Imported only by the driver process (harness.drivers.locust.driver).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from typing import ClassVar

import gevent
import gevent.event
import gevent.hub
from locust import User, constant, task
from locust.env import Environment

from harness.drivers.spec import (
    DriverSpec,
)

from harness.drivers.locust.client import (
    _NS,
    CONNECT_BACKOFF_S,
    WATCHDOG_PERIOD_S,
    Connection,
    RequestMix,
    RequestTimeout,
    read_response,
)
from harness.drivers.locust.window import Tally, Waiting
from harness.results.steps import ERROR_KINDS

class Recorder:
    """What every user in this process records; greenlets are cooperative, so no locks.

    Attribution: a request belongs to the window in which it completes (answer or failure).
    Nothing counts until `measuring` is set, when the warm-up ends; `cut()` takes everything
    recorded since the last cut and starts afresh. The driver cuts once a second and at every
    window boundary, from one greenlet, without yielding in between: each completion lands in
    exactly one cut, so windows are contiguous and none is lost at a boundary.
    """

    def __init__(self) -> None:
        self.measuring = False
        self.epoch_ns = 0  # open loop: intended send times count from here
        self.joined = 0  # users started so far: each takes the next slot of the schedule
        self.warm = 0  # warm-up completions, for progress only
        self.errors_all = 0  # warm-up included, for progress
        self.users: list[RawHttpUser] = []
        self._reset()

    def _reset(self) -> None:
        self.samples: list[int] = []  # latency (us) of each good (2xx/3xx) answer
        # Open loop: the same good answers timed from the actual send (service time).
        self.samples_sent: list[int] = []
        self.censored: list[int] = []  # waits known only as a lower bound: timeouts
        self.bad: list[int] = []  # the status of each answer that is not 2xx/3xx
        self.redirects = 0  # 3xx answers (good, in `samples`)
        self.errors = dict.fromkeys(ERROR_KINDS, 0)  # failures, and bad_status answers
        # Little's law: every completion's latency (answers of any status, failures), and the
        # driver's own time from a completion to the next send.
        self.latency_sum_us = self.completions = self.gap_sum_ns = self.gaps = 0

    def cut(self) -> Tally:
        """Everything recorded since the last cut; recording starts afresh."""
        tally = Tally(self.samples, self.samples_sent, self.censored, self.bad, self.redirects, self.errors,
                      self.latency_sum_us, self.completions, self.gap_sum_ns, self.gaps)
        self._reset()
        return tally

    def waiting(self, opened_ns: int, closed_ns: int) -> Waiting:
        """At a window's close: what is still waiting, recorded at its wait so far.

        - A user with no answer in the window whose request was sent before it opened: its
          wait (from the intended send) is a censored value of this window.
        - Open loop: each slot that fell due in the window on a connection still busy with
          an earlier request was not sent (k6's dropped_iterations); its wait so far is a
          censored value too. A slot is dropped once, in the window it fell due in.
        """
        starved, censored, dropped = 0, [], []
        for user in self.users:
            if user.last_done_ns >= opened_ns:
                continue
            starved += 1
            if user.busy and user.intended < opened_ns:
                censored.append((closed_ns - user.intended) // 1000)
        for user in self.users:
            step = user.period_ns and user.period_ns * user.stride
            if not step or not user.busy:
                continue
            due = user.intended + step  # the next slot: it waits for the answer in flight
            if due < opened_ns:
                due += -(-(opened_ns - due) // step) * step  # its first slot due in this window
            while due < closed_ns:
                dropped.append((closed_ns - due) // 1000)
                due += step
        return Waiting(starved, censored, dropped)

    def error(self, kind: str) -> None:
        """Count a failure (or a bad answer) in the window where it is seen."""
        self.errors_all += 1
        if self.measuring:
            self.errors[kind] += 1


class RawHttpUser(User):
    """Closed loop over one connection: send, read, repeat with no wait in between.

    Configured by subclassing (see `user_class`). Timeouts are enforced by one watchdog
    greenlet for all users, far cheaper than a timer armed around every wait.
    """

    abstract = True
    wait_time = constant(0)
    mix: ClassVar[RequestMix]
    recorder: ClassVar[Recorder]
    family: ClassVar[socket.AddressFamily]
    address: ClassVar[tuple]
    keep_alive: ClassVar[bool]
    period_ns: ClassVar[int | None] = None  # open loop: 1 / rate; None: closed loop
    stride: ClassVar[int] = 1  # open loop: the number of connections sharing the schedule

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        self.conn: Connection | None = None
        self.t0 = 0  # perf_counter_ns() when the request in flight started
        self.intended = 0  # when it was due (open loop; closed loop: t0)
        self.busy = False  # a request is in flight (connecting, sent, or being read)
        self.last_done_ns = 0  # when this user last got an answer
        self.end_ns = 0  # when its last request completed (answer or failure)

    def failed(self, kind: str) -> None:
        """The request in flight failed: count it, and its wait (a timeout's wait is a lower
        bound of its latency, so it enters the latency record as a censored value)."""
        rec, self.busy = self.recorder, False
        self.end_ns = now = time.perf_counter_ns()
        rec.error(kind)
        if rec.measuring:
            waited = (now - self.intended) // 1000
            rec.latency_sum_us += waited
            rec.completions += 1
            if kind == "timeout":
                rec.censored.append(waited)
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    @task
    def closed_loop(self) -> None:
        rec, pick, keep_alive, now = self.recorder, self.mix.pick, self.keep_alive, time.perf_counter_ns
        hub = gevent.get_hub()
        rec.users.append(self)
        try:
            self._loop(rec, pick, keep_alive, now, hub)
        finally:
            # A stopped user (runner.quit, or a level ending) must close its socket: an
            # iterative server would otherwise keep serving the dead connection.
            if self.conn is not None:
                self.conn.close()
                self.conn = None

    def _schedule(self, rec: Recorder) -> Iterator[int]:
        """Open loop: this user's intended send times. User i of n takes slots i, i+n,
        i+2n... of one fixed-rate timeline, so the rate is spread evenly (as wrk2)."""
        slot = rec.joined
        rec.joined += 1
        period, stride, epoch = self.period_ns, self.stride, rec.epoch_ns
        assert period is not None
        while True:
            yield epoch + slot * period
            slot += stride

    def _loop(self, rec: Recorder, pick: Callable[[], tuple[bytes, bool]], keep_alive: bool,
              now: Callable[[], int], hub: gevent.hub.Hub) -> None:
        conn = None
        schedule = self._schedule(rec) if self.period_ns else None
        while True:
            payload, head_only = pick()
            if schedule is None:
                intended = t0 = now()
            else:
                # Open loop: wait for the intended time; when behind (a stalled server),
                # send at once. Latency counts from `intended`, so the wait a stalled
                # server imposed on requests not yet sent is counted (no coordinated omission).
                intended = next(schedule)
                ahead = intended - now()
                if ahead > 0:
                    gevent.sleep(ahead / _NS)
                t0 = now()
            self.t0, self.intended, self.busy = t0, intended, True
            if rec.measuring and self.end_ns:
                rec.gap_sum_ns += t0 - self.end_ns  # the driver's own time between requests
                rec.gaps += 1
            if conn is None:
                conn = self.conn = Connection(self.family, hub)
                try:
                    conn.connect(self.address)
                except RequestTimeout:
                    self.failed("timeout")
                    conn = None
                    continue
                except OSError:
                    self.failed("connect")
                    conn = None
                    gevent.sleep(CONNECT_BACKOFF_S)
                    continue
            try:
                conn.send(payload)
                status, close = read_response(conn.recv_reply(), conn.recv, head_only)
            except RequestTimeout:
                self.failed("timeout")
                conn = None
                continue
            except OSError:
                self.failed("reset")
                conn = None
                continue
            except (ValueError, IndexError):
                self.failed("bad_status")
                conn = None
                continue
            self.last_done_ns = self.end_ns = done = now()
            self.busy = False
            if rec.measuring:
                latency = (done - intended) // 1000
                rec.latency_sum_us += latency
                rec.completions += 1
                if 200 <= status < 400:  # goodput: the latency record holds good answers only
                    rec.samples.append(latency)
                    if schedule is not None:
                        rec.samples_sent.append((done - t0) // 1000)
                    if status >= 300:
                        rec.redirects += 1
                else:
                    rec.bad.append(status)
                    rec.error("bad_status")
            else:
                rec.warm += 1
            if close or not keep_alive:
                conn.close()
                conn = self.conn = None


def user_class(
    spec: DriverSpec, recorder: Recorder, family: socket.AddressFamily, address: tuple
) -> type[User]:
    class Users(RawHttpUser):
        abstract = False

    Users.mix, Users.recorder, Users.keep_alive = RequestMix(spec), recorder, spec.keep_alive
    Users.family, Users.address = family, address
    if spec.rate:
        Users.period_ns, Users.stride = max(1, int(_NS / spec.rate)), max(spec.users, 1)
    return Users


def watch_timeouts(recorder: Recorder, timeout_s: float) -> None:
    timeout_ns = int(timeout_s * _NS)
    while True:
        gevent.sleep(min(WATCHDOG_PERIOD_S, timeout_s / 10))
        limit = time.perf_counter_ns() - timeout_ns
        for user in recorder.users:
            if user.conn is not None and user.t0 < limit:
                user.conn.cancel(RequestTimeout())

