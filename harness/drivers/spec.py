"""What a load driver is asked to do (DriverSpec) and what it measured (DriverResult).

Plain dataclasses with JSON (de)serialisation, shared by the orchestrator and the driver
process. This module must never import locust or gevent (see harness/drivers/__init__.py).
Latencies are integers in microseconds; a percentile is None when nothing was measured.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from harness.drivers.wire import RequestSpec, SpecError
from harness.results.store import write_atomically

# Result schema history:
#   1: first version.
#   2: open loop: `rate` and `uncorrected` (both null for a closed-loop window);
#      `starved_users`; distributed load: `workers` and `worker_hosts`.
#   3: measurement truth (issue 13): a request belongs to the window it completes in;
#      `good_requests`, `good_rps`, `answers_by_class`; the histogram holds good answers and
#      censored waits (`censored`, `censored_min_us`); open loop `dropped`; `cycles`.
#      Later, still version 3: `cycles` null from a driver that does not see each request's
#      cycle (wrk); readers then do not check Little's law.
RESULT_VERSION = 3

# Descriptors a driver process holds beyond its sockets: the interpreter, pipes, result
# files, epoll, logs.
DESCRIPTOR_HEADROOM = 256


@dataclass(frozen=True, slots=True)
class DriverSpec:
    """Load to generate: `users` closed-loop users plus background sockets against host:port."""

    host: str
    port: int
    requests: tuple[RequestSpec, ...]
    users: int
    duration_s: float
    warmup_s: float = 0.0  # once, before the first repetition
    repeat: int = 1  # consecutive measured windows of duration_s, one result each
    # Open loop: requests/s offered at fixed intended times spread across the `users`
    # connections, latency counted from the intended time (wrk2). None: closed loop.
    rate: float | None = None
    keep_alive: bool = True  # False: a new connection per request
    timeout_s: float = 10.0  # per request, connect included
    spawn_rate: float | None = None  # users started per second; None: all at once
    idle_connections: int = 0  # connect, send nothing, hold (browser preconnect)
    slow_clients: int = 0  # trickle a GET one byte every slow_interval_s (slowloris)
    slow_interval_s: float = 1.0

    @property
    def descriptors(self) -> int:
        """The most descriptors a driver running this spec holds at once: a socket per user
        and per background client, and its own."""
        return self.users + self.idle_connections + self.slow_clients + DESCRIPTOR_HEADROOM

    @property
    def effective_spawn_rate(self) -> float:
        return self.spawn_rate if self.spawn_rate is not None else float(max(self.users, 1))

    @classmethod
    def from_dict(cls, data: Any) -> DriverSpec:
        if not isinstance(data, dict):
            raise SpecError("spec: expected a JSON object")
        unknown = sorted(set(data) - _SPEC_KEYS)
        if unknown:
            raise SpecError(f"spec: unknown key {unknown[0]!r}")
        for key in ("host", "port", "requests", "users", "duration_s"):
            if key not in data:
                raise SpecError(f"spec: missing key {key!r}")
        host = data["host"]
        if not isinstance(host, str) or not host or any(c.isspace() for c in host):
            raise SpecError(f"spec: 'host' must be a host name or address, got {host!r}")
        raw = data["requests"]
        if not isinstance(raw, list) or not raw:
            raise SpecError("spec: 'requests' must be a non-empty list")
        requests = tuple(_request_from_dict(i, entry) for i, entry in enumerate(raw))
        if sum(r.weight for r in requests) <= 0:
            raise SpecError("spec: 'requests' weights must not all be 0")
        spawn_rate = data.get("spawn_rate")
        return cls(
            host=host,
            port=_int(data, "port", low=1, high=65535),
            requests=requests,
            users=_int(data, "users", low=0),
            duration_s=_number(data, "duration_s", positive=True),
            warmup_s=_number(data, "warmup_s", default=0.0),
            repeat=_int(data, "repeat", low=1, default=1),
            rate=None if data.get("rate") is None else _number(data, "rate", positive=True),
            keep_alive=_bool(data, "keep_alive", default=True),
            timeout_s=_number(data, "timeout_s", default=10.0, positive=True),
            spawn_rate=None if spawn_rate is None else _number(data, "spawn_rate", positive=True),
            idle_connections=_int(data, "idle_connections", low=0, default=0),
            slow_clients=_int(data, "slow_clients", low=0, default=0),
            slow_interval_s=_number(data, "slow_interval_s", default=1.0, positive=True),
        )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["requests"] = [dict(asdict(r), headers=dict(r.headers)) for r in self.requests]
        return data


_SPEC_KEYS = frozenset(DriverSpec.__dataclass_fields__)
_REQUEST_KEYS = frozenset(RequestSpec.__dataclass_fields__)


@dataclass(frozen=True, slots=True)
class ErrorCounts:
    """Failed requests by kind; bad_status requests also count in `requests`."""

    connect: int = 0  # the connection could not be opened
    timeout: int = 0  # no complete response within timeout_s
    reset: int = 0  # connection reset or closed before the response was complete
    bad_status: int = 0  # a response that is not 2xx (or has no readable status line)

    @property
    def total(self) -> int:
        return self.connect + self.timeout + self.reset + self.bad_status


@dataclass(frozen=True, slots=True)
class SecondSample:
    """One whole second of the measured window; `second` counts from 0."""

    second: int
    requests: int
    errors: int
    p50_us: int | None
    p99_us: int | None


@dataclass(frozen=True, slots=True)
class BackgroundCounts:
    """What the idle and slow background sockets did."""

    idle_connected: int = 0  # idle sockets open when the run ended
    idle_reconnects: int = 0  # times the server closed an idle socket and it was reopened
    slow_requests: int = 0  # trickled requests that got a complete response
    slow_reconnects: int = 0  # times a slow client's connection was closed and reopened


@dataclass(frozen=True, slots=True)
class Uncorrected:
    """Open loop only: latency from the actual send, as a closed-loop tool would see it.

    Kept beside the corrected figures so the coordinated omission is visible, not hidden.
    """

    p50_us: int | None
    p90_us: int | None
    p99_us: int | None
    p999_us: int | None
    max_us: int | None
    histogram: str


@dataclass(frozen=True, slots=True)
class Cycles:
    """Closed loop, for Little's law: each completion (answer of any status, or failure) in
    the window with its latency, and the driver's own time between a completion and the
    next send (`gaps` of them)."""

    completions: int = 0
    latency_sum_us: int = 0
    gaps: int = 0
    gap_sum_us: int = 0


@dataclass(frozen=True, slots=True)
class DriverResult:
    """What one driver process measured over one window after warm-up.

    A request belongs to the window in which it completes; windows are contiguous, so none
    is lost between repetitions. `requests` counts the answers (any status) completed in the
    window, `good_requests` the 2xx/3xx ones. `histogram` (HdrHistogram, 1 us .. 60 s, 3
    significant digits, base64 from HdrHistogram.encode()) and the percentiles hold the good
    answers' latencies plus `censored` waits known only as lower bounds: timeouts at their
    timeout, starved users and (open loop) dropped slots at their wait when the window
    closed. A percentile at or above `censored_min_us` is itself a lower bound.
    """

    requests: int
    errors: ErrorCounts
    # Requests (warm-up ones too) still waiting for a reply when the window closed, and the
    # age of the oldest. In a closed loop every user has one in flight, so a healthy run
    # shows unfinished == users and a small age; a stalled server, an age of seconds.
    unfinished: int
    unfinished_max_us: int | None
    duration_s: float
    rps: float
    p50_us: int | None
    p90_us: int | None
    p99_us: int | None
    p999_us: int | None
    max_us: int | None
    mean_us: float | None
    histogram: str
    timeseries: tuple[SecondSample, ...]
    users: int
    keep_alive: bool
    driver_cpu_percent: float  # CPU used by the driver process in the window; 100 = one CPU
    interrupted: bool = False  # stopped early by SIGTERM/SIGINT
    background: BackgroundCounts = BackgroundCounts()
    # Users that got no answer at all during the window; the wait of each one still waiting
    # on a request sent before the window opened is a censored value of the histogram.
    starved_users: int = 0
    good_requests: int = 0  # 2xx/3xx answers among `requests`
    good_rps: float = 0.0  # goodput
    answers_by_class: dict[str, int] | None = None  # "2xx", "3xx", "4xx", "5xx", "other"
    censored: int = 0  # values in the histogram that are lower bounds
    censored_min_us: int | None = None  # the smallest of them
    # Open loop: slots that fell due in the window on a connection still busy with an
    # earlier request, not sent by its close (k6's dropped_iterations), and the longest wait.
    dropped: int = 0
    dropped_max_us: int | None = None
    # None: the driver does not see when each of its connections sends (wrk), so Little's
    # law cannot be checked.
    cycles: Cycles | None = Cycles()
    rate: float | None = None  # open loop: the offered rate; latencies are then corrected
    uncorrected: Uncorrected | None = None  # open loop: from the actual send instead
    # Distributed load (Locust master/worker): the worker processes that carried the users and
    # their hosts, one entry each; driver_cpu_percent is then the busiest worker's. None and
    # (): the users ran in the driver process itself.
    workers: int | None = None
    worker_hosts: tuple[str, ...] = ()
    version: int = RESULT_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DriverResult:
        if data.get("version") != RESULT_VERSION:
            raise ValueError(f"driver result version {data.get('version')!r}, expected {RESULT_VERSION}")
        return cls(
            **{
                **data,
                "errors": ErrorCounts(**data["errors"]),
                "timeseries": tuple(SecondSample(**s) for s in data["timeseries"]),
                "background": BackgroundCounts(**data["background"]),
                "uncorrected": Uncorrected(**data["uncorrected"]) if data.get("uncorrected") else None,
                "worker_hosts": tuple(data.get("worker_hosts", ())),
                "cycles": None if data.get("cycles", {}) is None else Cycles(**data.get("cycles") or {}),
            }
        )


def check_outputs(*, out: str | None, out_dir: str | None, specs: list[DriverSpec]) -> None:
    """A driver's --out (one spec, one window) or --out-dir (a file per window) must be
    writable before any load starts; SpecError says why not."""
    target = out or os.path.join(out_dir or ".", "x")
    if not os.path.isdir(os.path.dirname(os.path.abspath(target))):
        raise SpecError(f"--out: no such directory for {out or out_dir}")
    if out and (len(specs) > 1 or specs[0].repeat > 1):
        raise SpecError("--out takes one spec with repeat 1; use --out-dir for more")


def load_spec(path: str | os.PathLike[str]) -> DriverSpec:
    """Read and validate a spec file; every problem is a SpecError."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(f"spec: cannot read {path}: {exc.strerror}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SpecError(f"spec: {path} is not valid JSON: {exc}") from None
    return DriverSpec.from_dict(data)


def write_spec(path: str | os.PathLike[str], spec: DriverSpec) -> None:
    _write_json(Path(path), spec.to_dict())


def write_result(path: str | os.PathLike[str], result: DriverResult) -> None:
    _write_json(Path(path), result.to_dict())


def read_result(path: str | os.PathLike[str]) -> DriverResult:
    return DriverResult.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))


def _write_json(path: Path, data: Any) -> None:
    """Atomically: the reader (the orchestrator, polling) never sees half a file."""
    write_atomically(path, json.dumps(data, sort_keys=True, indent=1) + "\n")


def _request_from_dict(index: int, entry: Any) -> RequestSpec:
    where = f"requests[{index}]"
    if not isinstance(entry, dict):
        raise SpecError(f"spec: {where} must be an object")
    unknown = sorted(set(entry) - _REQUEST_KEYS)
    if unknown:
        raise SpecError(f"spec: {where}: unknown key {unknown[0]!r}")
    if not isinstance(entry.get("headers", {}), dict):
        raise SpecError(f"spec: {where}.headers must map header names to single-line Latin-1 strings")
    try:
        return RequestSpec(**entry)
    except SpecError as exc:
        raise SpecError(f"spec: {where}.{exc}") from None


def _int(data: Mapping[str, Any], key: str, *, low: int, high: int | None = None, default: int | None = None) -> int:
    value = data.get(key, default)
    ok = isinstance(value, int) and not isinstance(value, bool)
    if not ok or value < low or (high is not None and value > high):
        bounds = f">= {low}" if high is None else f"in {low}..{high}"
        raise SpecError(f"spec: {key!r} must be an int {bounds}, got {value!r}")
    return value


def _number(data: Mapping[str, Any], key: str, *, default: float | None = None, positive: bool = False) -> float:
    value = data.get(key, default)
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (positive and value == 0):
        raise SpecError(f"spec: {key!r} must be a number {'> 0' if positive else '>= 0'}, got {value!r}")
    return float(value)


def _bool(data: Mapping[str, Any], key: str, *, default: bool) -> bool:
    value = data.get(key, default)
    if not isinstance(value, bool):
        raise SpecError(f"spec: {key!r} must be true or false, got {value!r}")
    return value
