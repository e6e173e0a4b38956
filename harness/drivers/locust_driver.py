"""Locust load driver: run a DriverSpec in this process and write a DriverResult.

    python -m harness.drivers.locust_driver --spec SPEC.json --out RESULT.json

Run it only as its own process: importing locust monkey-patches socket, threading and select
with gevent for the whole interpreter. Contract:
- stdout: one JSON line per second, {"type": "progress", "elapsed", "rps", "errors", "phase"};
- RESULT.json is written atomically at the end, also after SIGTERM/SIGINT (then
  "interrupted": true); exit 0;
- a bad spec (or an unresolvable host) prints one line on stderr and exits 2.
Latencies are taken with perf_counter_ns in each user and kept in microseconds in
HdrHistogram; Locust's own request stats (whole milliseconds) are not used at all.
"""

from __future__ import annotations

import locust  # noqa: F401  (first: it monkey-patches socket/select/threading with gevent)

import argparse
import bisect
import errno
import itertools
import json
import logging
import os
import random
import resource
import signal
import socket
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import ClassVar

import gevent
import gevent.event
import gevent.hub
from gevent.monkey import get_original
from hdrh.histogram import HdrHistogram
from locust import User, constant, task
from locust.env import Environment

from harness.drivers.spec import (
    BackgroundCounts,
    DriverResult,
    DriverSpec,
    ErrorCounts,
    RequestSpec,
    SecondSample,
    SpecError,
    load_spec,
    write_result,
)

LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS = 1, 60_000_000, 3  # 1 us .. 60 s, 0.1% resolution
RECV_SIZE = 65536  # one recv takes a whole small response; big bodies are counted, not kept
MAX_RESPONSE_HEAD = 65536  # a head bigger than this means the framing is lost
CONNECT_BACKOFF_S = 0.01  # a refused connect returns at once: pause so a dead port can't spin a CPU
RECONNECT_PAUSE_S = 0.1  # background sockets reopen this long after the server closes them
WATCHDOG_PERIOD_S = 0.1  # timeouts are enforced to within this
ERROR_KINDS = ("connect", "timeout", "reset", "bad_status")
_NS = 1_000_000_000
RealSocket = get_original("socket", "socket")  # the stdlib class, not gevent's


class ClosedEarly(ConnectionError):
    """The server closed the connection before the response was complete."""


# --- the target and the requests -------------------------------------------------------


def resolve_target(host: str, port: int) -> tuple[socket.AddressFamily, tuple]:
    """Address to connect to. As a destination, 0.0.0.0 (or ::) means this host."""
    host = host.strip("[]")
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    family, _, _, _, sockaddr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    return family, sockaddr


def host_header(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


def build_request(entry: RequestSpec, *, host: str, keep_alive: bool) -> bytes:
    """The whole request as one buffer: one send per request, nothing for Nagle to hold."""
    body = entry.body.encode()
    headers = {"host": ("Host", host)}
    if body or entry.method in ("POST", "PUT", "PATCH"):
        headers["content-length"] = ("Content-Length", str(len(body)))
    if not keep_alive:
        headers["connection"] = ("Connection", "close")
    headers.update((name.lower(), (name, value)) for name, value in entry.headers.items())
    lines = [f"{entry.method} {entry.path} HTTP/1.1", *(f"{n}: {v}" for n, v in headers.values())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class RequestMix:
    """Weighted choice of pre-built requests; `pick()` returns (request bytes, is HEAD)."""

    def __init__(self, spec: DriverSpec) -> None:
        host = host_header(spec.host, spec.port)
        entries = [e for e in spec.requests if e.weight > 0]
        self.entries = [
            (build_request(e, host=host, keep_alive=spec.keep_alive), e.method == "HEAD") for e in entries
        ]
        self.cumulative = list(itertools.accumulate(e.weight for e in entries))
        if len(self.entries) == 1:
            self.pick = itertools.repeat(self.entries[0]).__next__

    def pick(self) -> tuple[bytes, bool]:
        return self.entries[bisect.bisect_right(self.cumulative, random.random() * self.cumulative[-1])]


def read_response(first: bytes, recv, head_only: bool) -> tuple[int, bool]:
    """Frame one response from its first chunk plus `recv(n)`; return (status, server will
    close). Framing is Content-Length only; the body is counted, never kept.

    Raises ClosedEarly (or another OSError) when the connection fails, ValueError when the
    response cannot be framed.
    """
    buf = first
    end = buf.find(b"\r\n\r\n")
    while end < 0:
        if len(buf) > MAX_RESPONSE_HEAD:
            raise ValueError("response head too long")
        more = recv(RECV_SIZE)
        if not more:
            raise ClosedEarly("connection closed before the response head")
        buf += more
        end = buf.find(b"\r\n\r\n")
    if not buf.startswith(b"HTTP/1."):
        raise ValueError("not an HTTP/1.x response")
    status = int(buf[9:12])
    head = buf[:end].lower()
    close = b"\r\nconnection: close" in head or buf[7] == 48  # 48: b"0", an HTTP/1.0 response
    if head_only or status < 200 or status == 204 or status == 304:
        return status, close
    i = head.find(b"\r\ncontent-length:")
    if i < 0:
        if b"\r\ntransfer-encoding:" in head:
            raise ValueError("chunked responses are not supported")
        while recv(RECV_SIZE):  # no length: the body runs until the server closes
            pass
        return status, True
    j = head.find(b"\r\n", i + 2)
    length = int(head[i + 17 : j] if j > 0 else head[i + 17 :])
    have = len(buf) - end - 4
    while have < length:
        more = recv(min(length - have, RECV_SIZE))
        if not more:
            raise ClosedEarly("connection closed in the response body")
        have += len(more)
    return status, close or have > length  # extra bytes: framing lost, start afresh


class RequestTimeout(Exception):
    """Thrown into a user's wait by the watchdog when its request is older than timeout_s."""


class Connection:
    """A non-blocking socket waited on through the gevent hub itself.

    gevent's socket costs, per request, a recv that fails with EAGAIN before every wait and
    a getsockopt(SO_SNDBUF) in sendall; here a request is one send, one wait, one recv.
    Another greenlet may `cancel(exc)` a wait in progress (see watch_timeouts).
    """

    __slots__ = ("sock", "hub", "readable", "writable")

    def __init__(self, family: socket.AddressFamily, hub: gevent.hub.Hub) -> None:
        self.sock = sock = RealSocket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.hub = hub
        self.readable, self.writable = hub.loop.io(sock.fileno(), 1), hub.loop.io(sock.fileno(), 2)

    def connect(self, address: tuple) -> None:
        err = self.sock.connect_ex(address)
        if err == errno.EINPROGRESS:
            self.hub.wait(self.writable)
            err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            raise OSError(err, os.strerror(err))

    def send(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                view = view[self.sock.send(view) :]
            except BlockingIOError:
                pass
            if view:
                self.hub.wait(self.writable)

    def recv_reply(self) -> bytes:
        """The first chunk after a send: nothing can be there yet, so wait before reading."""
        while True:
            self.hub.wait(self.readable)
            try:
                return self.sock.recv(RECV_SIZE)
            except BlockingIOError:
                pass

    def recv(self, size: int) -> bytes:
        while True:
            try:
                return self.sock.recv(size)
            except BlockingIOError:
                self.hub.wait(self.readable)

    def cancel(self, exc: BaseException) -> None:
        self.hub.cancel_wait(self.readable, exc)
        self.hub.cancel_wait(self.writable, exc)

    def close(self) -> None:
        self.readable.close()
        self.writable.close()
        self.sock.close()


# --- the users --------------------------------------------------------------------------


class Recorder:
    """Counts shared by every user in this process; greenlets are cooperative, so no locks."""

    def __init__(self, gate_ns: int) -> None:
        self.gate_ns = gate_ns  # requests that start before this are warm-up
        self.samples: list[int] = []  # latencies (us) of measured responses since the last tick
        self.warm = 0  # warm-up responses, for progress only
        self.errors = dict.fromkeys(ERROR_KINDS, 0)  # measured window
        self.errors_all = 0  # warm-up included, for progress
        self.users: list[RawHttpUser] = []

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

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        self.conn: Connection | None = None
        self.t0 = 0  # perf_counter_ns() when the request in flight started

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

    def _loop(self, rec, pick, keep_alive, now, hub) -> None:  # type: ignore[no-untyped-def]
        conn = None
        while True:
            payload, head_only = pick()
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
            if t0 >= rec.gate_ns:
                rec.samples.append((now() - t0) // 1000)
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
    return Users


def watch_timeouts(recorder: Recorder, timeout_s: float) -> None:
    timeout_ns = int(timeout_s * _NS)
    while True:
        gevent.sleep(min(WATCHDOG_PERIOD_S, timeout_s / 10))
        limit = time.perf_counter_ns() - timeout_ns
        for user in recorder.users:
            if user.conn is not None and user.t0 < limit:
                user.conn.cancel(RequestTimeout())


# --- background sockets -----------------------------------------------------------------


class Background:
    def __init__(self) -> None:
        self.idle_open = self.idle_reconnects = self.slow_requests = self.slow_reconnects = 0
        self.idle_tried = 0  # idle sockets that have made their first connect attempt

    def counts(self) -> BackgroundCounts:
        return BackgroundCounts(self.idle_open, self.idle_reconnects, self.slow_requests, self.slow_reconnects)


def _open(family: socket.AddressFamily, address: tuple, timeout_s: float) -> socket.socket | None:
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(timeout_s)
    try:
        sock.connect(address)
    except OSError:
        sock.close()
        return None
    return sock


def hold_idle(family: socket.AddressFamily, address: tuple, timeout_s: float, bg: Background) -> None:
    """Connect and send nothing, like a browser's preconnect; reopen when the server closes."""
    first = True
    while True:
        sock = _open(family, address, timeout_s)
        if first:
            bg.idle_tried, first = bg.idle_tried + 1, False
        if sock is not None:
            sock.settimeout(None)
            bg.idle_open += 1
            try:
                while sock.recv(RECV_SIZE):  # e.g. a 408 before the server closes
                    pass
            except OSError:
                pass
            finally:
                bg.idle_open -= 1
                sock.close()
            bg.idle_reconnects += 1
        gevent.sleep(RECONNECT_PAUSE_S)


def trickle(
    family: socket.AddressFamily, address: tuple, request: bytes, spec: DriverSpec, bg: Background
) -> None:
    """Send a valid GET one byte every slow_interval_s (slowloris); reopen when closed."""
    while True:
        sock = _open(family, address, spec.timeout_s)
        if sock is not None:
            try:
                while True:
                    for i in range(len(request)):
                        if i:
                            gevent.sleep(spec.slow_interval_s)
                        sock.sendall(request[i : i + 1])
                    _, close = read_response(sock.recv(RECV_SIZE), sock.recv, False)
                    bg.slow_requests += 1
                    if close:
                        break
            except (OSError, ValueError, IndexError):
                pass
            finally:
                sock.close()
            bg.slow_reconnects += 1
        gevent.sleep(RECONNECT_PAUSE_S)


# --- the run ----------------------------------------------------------------------------


def new_histogram() -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)


def histogram_of(batch: list[int]) -> HdrHistogram:
    """Record a batch by distinct value: Counter + one record_value per value is ~10x
    cheaper than record_value per sample, and the hot loop only appends to a list."""
    hist = new_histogram()
    for value, count in Counter(batch).items():
        hist.record_value(min(value, HIGHEST_US), count)
    return hist


def raise_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


class Window:
    """What one measured window collected, tick by tick."""

    def __init__(self) -> None:
        self.total = new_histogram()
        self.series: list[SecondSample] = []
        self.count = self.sum_us = self.max_us = 0


def run(spec: DriverSpec, stop: gevent.event.Event, emit: Callable[[int, DriverResult], None]) -> bool:
    """Warm up once, then measure `spec.repeat` consecutive windows, emitting a result for
    each. The users keep their connections across windows. Returns True if stopped early."""
    family, address = resolve_target(spec.host, spec.port)
    raise_fd_limit(spec.users + spec.idle_connections + spec.slow_clients + 256)
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
    rec = Recorder(gate_ns=measure_ns)
    env = Environment(user_classes=[user_class(spec, rec, family, address)])
    runner = env.create_local_runner()
    if spec.users:
        runner.start(spec.users, spawn_rate=spec.effective_spawn_rate)
    background.append(gevent.spawn(watch_timeouts, rec, spec.timeout_s))
    clock = Clock(start_ns)
    stopped = clock.ticks(rec, start_ns, measure_ns, stop, window=None)  # warm-up: progress only
    rep = 0
    while not stopped and rep < spec.repeat:
        window_ns = measure_ns + int(rep * spec.duration_s * _NS)
        end_ns = window_ns + int(spec.duration_s * _NS)
        rec.gate_ns = window_ns
        rec.errors = dict.fromkeys(ERROR_KINDS, 0)
        rec.samples = []
        cpu_mark, window = cpu_seconds(), Window()
        stopped = clock.ticks(rec, window_ns, end_ns, stop, window=window)
        last_ns = clock.last_ns
        in_flight = [last_ns - u.t0 for u in rec.users if u.conn is not None and u.t0 <= last_ns]
        emit(rep, result_of(spec, window, rec, in_flight, bg, window_s=max(0, last_ns - window_ns) / _NS,
                            cpu_used=cpu_seconds() - cpu_mark, stopped=stopped))
        rep += 1
    rec.gate_ns = sys.maxsize  # nothing after the last window counts
    runner.quit()
    gevent.killall(background)
    return stopped


class Clock:
    """One tick a second: fold the latencies in, print a progress line, fill the series."""

    def __init__(self, start_ns: int) -> None:
        self.start_ns = self.last_ns = start_ns
        self.errors_before = self.warm_before = 0

    def ticks(self, rec: Recorder, from_ns: int, until_ns: int, stop: gevent.event.Event, *,
              window: Window | None) -> bool:
        """Tick at every whole second after from_ns, and at until_ns; True if stopped."""
        second = 0
        base_ns = from_ns
        while self.last_ns < until_ns:
            when = min(base_ns + (second + 1) * _NS, until_ns)
            stopped = stop.wait(timeout=max(0.0, (when - time.perf_counter_ns()) / _NS))
            now_ns = time.perf_counter_ns()
            batch, rec.samples = rec.samples, []
            errors_now = sum(rec.errors.values())
            if batch and window is not None:
                hist = histogram_of(batch)
                window.total.add(hist)
                window.count += len(batch)
                window.sum_us += sum(batch)
                window.max_us = max(window.max_us, max(batch))
                if when == base_ns + (second + 1) * _NS and not stopped:  # a whole second
                    p50, p99 = hist.get_value_at_percentile(50), hist.get_value_at_percentile(99)
                    window.series.append(SecondSample(second, len(batch), errors_now - self.errors_before, p50, p99))
            elif window is not None and when == base_ns + (second + 1) * _NS and not stopped:
                window.series.append(SecondSample(second, 0, errors_now - self.errors_before, None, None))
            done = len(batch) + rec.warm - self.warm_before
            print(json.dumps({
                "type": "progress",
                "elapsed": round((now_ns - self.start_ns) / _NS, 3),
                "rps": round(done * _NS / max(now_ns - self.last_ns, 1), 1),
                "errors": rec.errors_all,
                "phase": "warmup" if window is None else "measure",
            }), flush=True)
            self.errors_before, self.warm_before, self.last_ns = errors_now, rec.warm, now_ns
            second += 1
            if stopped:
                return True
        self.errors_before = 0
        return False


def result_of(spec: DriverSpec, window: Window, rec: Recorder, in_flight: list[int], bg: Background, *,
              window_s: float, cpu_used: float, stopped: bool) -> DriverResult:
    count, total = window.count, window.total
    pct = (lambda q: total.get_value_at_percentile(q)) if count else (lambda q: None)
    return DriverResult(
        requests=count,
        errors=ErrorCounts(**rec.errors),
        unfinished=len(in_flight),
        unfinished_max_us=max(in_flight) // 1000 if in_flight else None,
        duration_s=round(window_s, 6),
        rps=round(count / window_s, 3) if window_s else 0.0,
        p50_us=pct(50),
        p90_us=pct(90),
        p99_us=pct(99),
        p999_us=pct(99.9),
        max_us=window.max_us if count else None,
        mean_us=round(window.sum_us / count, 3) if count else None,
        histogram=total.encode().decode("ascii"),
        timeseries=tuple(window.series),
        users=spec.users,
        keep_alive=spec.keep_alive,
        driver_cpu_percent=round(100 * cpu_used / window_s, 1) if window_s else 0.0,
        interrupted=stopped,
        background=bg.counts(),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m harness.drivers.locust_driver", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--spec", required=True, action="append",
                        help="DriverSpec JSON file; repeat it to run several levels in sequence")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--out", help="where to write the DriverResult JSON (one spec, repeat 1)")
    where.add_argument("--out-dir", help="write result-<spec>-<repetition>.json here, one per window")
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.ERROR, format="locust_driver: %(name)s: %(message)s")
    spec = None
    try:
        specs = [load_spec(path) for path in args.spec]
        for spec in specs:
            resolve_target(spec.host, spec.port)
        target = args.out or os.path.join(args.out_dir, "x")
        if not os.path.isdir(os.path.dirname(os.path.abspath(target))):
            raise SpecError(f"--out: no such directory for {args.out or args.out_dir}")
        if args.out and (len(specs) > 1 or specs[0].repeat > 1):
            raise SpecError("--out takes one spec with repeat 1; use --out-dir for more")
    except SpecError as exc:
        print(f"locust_driver: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"locust_driver: spec: cannot resolve host {spec.host!r}: {exc}", file=sys.stderr)  # type: ignore[union-attr]
        return 2
    stop = gevent.event.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        gevent.signal_handler(signum, stop.set)
    failed = False

    for index, spec in enumerate(specs):
        def emit(rep: int, result: DriverResult, index: int = index) -> None:
            nonlocal failed
            path = args.out or os.path.join(args.out_dir, f"result-{index}-{rep}.json")
            try:
                write_result(path, result)
            except OSError as exc:
                print(f"locust_driver: cannot write {path}: {exc}", file=sys.stderr)
                failed = True
                return
            print(json.dumps({"type": "result", "spec": index, "repetition": rep, "path": path}), flush=True)

        if run(spec, stop, emit):
            break
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
