"""The Locust user: a closed loop over one keep-alive socket, latencies in microseconds.

Imported only by the driver process (harness.drivers.locust.driver).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
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
from harness.results.steps import ERROR_KINDS

class Recorder:
    """Counts shared by every user in this process; greenlets are cooperative, so no locks."""

    def __init__(self, gate_ns: int) -> None:
        self.gate_ns = gate_ns  # requests that start before this are warm-up
        self.samples: list[int] = []  # latencies (us) of measured responses since the last tick
        # Open loop: the same responses timed from the actual send (uncorrected).
        self.samples_sent: list[int] = []
        self.epoch_ns = 0  # open loop: intended send times count from here
        self.joined = 0  # users started so far: each takes the next slot of the schedule
        self.warm = 0  # warm-up responses, for progress only
        self.errors = dict.fromkeys(ERROR_KINDS, 0)  # measured window
        self.errors_all = 0  # warm-up included, for progress
        self.users: list[RawHttpUser] = []

    def starved(self, since_ns: int) -> int:
        """Users with no answer at all since `since_ns`: a closed-loop histogram cannot show
        them (they sent nothing more), so they are counted (an iterative server's queue)."""
        return sum(1 for user in self.users if user.last_done_ns < since_ns)

    def error(self, kind: str, t0: int) -> None:
        """Count an error in the window where it is seen. A request that waited through a
        window boundary (a starved client of an iterative server) still shows up."""
        self.errors_all += 1
        if time.perf_counter_ns() >= self.gate_ns:
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
        self.last_done_ns = 0  # when this user last got an answer

    def failed(self, kind: str) -> None:
        self.recorder.error(kind, self.t0)
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

    def _loop(self, rec, pick, keep_alive, now, hub) -> None:  # type: ignore[no-untyped-def]
        conn = None
        schedule = self._schedule(rec) if self.period_ns else None
        while True:
            payload, head_only = pick()
            if schedule is None:
                intended = t0 = self.t0 = now()
            else:
                # Open loop: wait for the intended time; when behind (a stalled server),
                # send at once. Latency counts from `intended`, so the wait a stalled
                # server imposed on requests not yet sent is counted (no coordinated omission).
                intended = next(schedule)
                ahead = intended - now()
                if ahead > 0:
                    gevent.sleep(ahead / _NS)
                t0 = self.t0 = now()
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
            self.last_done_ns = done = now()
            if intended >= rec.gate_ns:
                rec.samples.append((done - intended) // 1000)
                if schedule is not None:
                    rec.samples_sent.append((done - t0) // 1000)
                if not 200 <= status < 300:
                    rec.error("bad_status", t0)
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

