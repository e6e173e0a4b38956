"""What a step measured, beside its latencies: errors by kind, the server's and the driver's CPU and
memory, the background connections, Little's law, each second, the open loop's service time, and
what the server said of its interpreter. Each is built from its checked JSON object (checked.py);
None where a step did not record it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from harness.results.checked import Checked


@dataclass(frozen=True)
class Errors:
    """Failed requests by kind (steps.ERROR_KINDS)."""
    connect: int = 0
    timeout: int = 0
    reset: int = 0
    bad_status: int = 0

    @property
    def total(self) -> int:
        return self.connect + self.timeout + self.reset + self.bad_status

    def by_kind(self) -> dict[str, int]:
        return {"connect": self.connect, "timeout": self.timeout, "reset": self.reset, "bad_status": self.bad_status}

    @property
    def no_answer(self) -> int:
        """The requests that got no answer at all (bad_status ones did)."""
        return self.connect + self.timeout + self.reset


@dataclass(frozen=True)
class ServerFigures:
    """The server's process tree over a step; None where not measured."""
    cpu_percent: float | None = None
    rss_bytes: int | None = None
    pss_bytes: int | None = None
    cpu_seconds: float | None = None
    cpu_us_per_request: float | None = None
    steal_percent: float | None = None
    others_percent: float | None = None

    @property
    def memory(self) -> int | None:
        """The tree's PSS where measured (a page 500 forked children share counts once), else
        the RSS of the one process."""
        return self.pss_bytes if self.pss_bytes is not None else self.rss_bytes


@dataclass(frozen=True)
class DriverFigures:
    """The driver over a step: its busiest CPU (`cpu_percent`), its own figure, steal; the
    driver's share of the server's CPUs when they shared one."""
    cpu_percent: float | None = None
    self_cpu_percent: float | None = None
    cpu_percent_by_cpu: Mapping[str, float] | None = None
    steal_percent: float | None = None
    share_of_server_percent: float | None = None
    workers: int | None = None
    worker_hosts: tuple[str, ...] = ()


@dataclass(frozen=True)
class Background:
    """What the background connections beside the load did (idle and slow clients)."""
    idle_connected: int = 0
    idle_reconnects: int = 0
    slow_reconnects: int = 0
    slow_requests: int = 0


@dataclass(frozen=True)
class Cycles:
    """A closed-loop window's completions and the sums Little's law needs."""
    completions: int
    gaps: int
    gap_sum_us: float
    latency_sum_us: float


@dataclass(frozen=True)
class Littles:
    """Users against throughput x mean cycle time (steps.littles_law)."""
    users: int
    predicted: float
    ratio: float
    gap_us: float
    cycle_us: float
    tolerance: float


@dataclass(frozen=True)
class Second:
    """One second of a window."""
    second: int
    requests: int
    errors: int
    p50_us: float | None
    p99_us: float | None


@dataclass(frozen=True)
class Uncorrected:
    """Open loop: service time (actual send -> answer), beside the corrected response time."""
    p50_us: float | None = None
    p90_us: float | None = None
    p99_us: float | None = None
    p999_us: float | None = None
    max_us: float | None = None
    histogram: str | None = None


@dataclass(frozen=True)
class Runtime:
    """What our server said of its interpreter after a step (GET /runtime), or its error."""
    python: str | None = None
    free_threaded: bool | None = None
    gil_enabled: bool | None = None
    error: str | None = None


# The percentiles a step (and its uncorrected record) holds, by their results.json key.
PERCENTILE_FIELDS = ("p50_us", "p90_us", "p99_us", "p999_us", "max_us")


def uncorrected_of(c: Checked) -> Uncorrected:
    return Uncorrected(**{k: c.opt_num(k) for k in PERCENTILE_FIELDS}, histogram=c.opt_str("histogram"))


def second_of(c: Checked) -> Second:
    return Second(second=c.integer("second"), requests=c.opt_int("requests") or 0, errors=c.opt_int("errors") or 0,
                  p50_us=c.opt_num("p50_us"), p99_us=c.opt_num("p99_us"))


@dataclass(frozen=True)
class LinkFigures:
    """The emulated link of a step ([network]): as configured, and as a probe measured it
    just before the step's driver started (None where not measured)."""
    rtt_ms: float
    jitter_ms: float = 0.0
    loss: float = 0.0
    bandwidth_bps: int | None = None
    measured_rtt_ms: float | None = None  # a 1-user GET / across the link, less the server's own time
    measured_bandwidth_bps: float | None = None  # where a bandwidth is set
    relay_cpu_percent: float | None = None  # the relay process, over the step's window

    @property
    def rtt_error(self) -> float | None:
        """How far the measured round trip is off the configured one, as a share of it (None
        for a 0 ms link, whose measured round trip is all overhead)."""
        if self.measured_rtt_ms is None or not self.rtt_ms:
            return None
        return abs(self.measured_rtt_ms - self.rtt_ms) / self.rtt_ms


def link_of(c: Checked) -> LinkFigures:
    return LinkFigures(rtt_ms=c.number("rtt_ms"), jitter_ms=c.opt_num("jitter_ms") or 0.0,
                       loss=c.opt_num("loss") or 0.0, bandwidth_bps=c.opt_int("bandwidth_bps"),
                       measured_rtt_ms=c.opt_num("measured_rtt_ms"),
                       measured_bandwidth_bps=c.opt_num("measured_bandwidth_bps"),
                       relay_cpu_percent=c.opt_num("relay_cpu_percent"))


def server_of(c: Checked) -> ServerFigures:
    return ServerFigures(
        cpu_percent=c.opt_num("cpu_percent"), rss_bytes=c.opt_int("rss_bytes"), pss_bytes=c.opt_int("pss_bytes"),
        cpu_seconds=c.opt_num("cpu_seconds"), cpu_us_per_request=c.opt_num("cpu_us_per_request"),
        steal_percent=c.opt_num("steal_percent"), others_percent=c.opt_num("others_percent"))


def driver_of(c: Checked) -> DriverFigures:
    by_cpu = c.opt_sub("cpu_percent_by_cpu")
    return DriverFigures(
        cpu_percent=c.opt_num("cpu_percent"), self_cpu_percent=c.opt_num("self_cpu_percent"),
        cpu_percent_by_cpu=None if by_cpu is None else {k: by_cpu.number(k) for k in by_cpu.keys()},
        steal_percent=c.opt_num("steal_percent"), share_of_server_percent=c.opt_num("share_of_server_percent"),
        workers=c.opt_int("workers"), worker_hosts=tuple(c.strs("worker_hosts")))


def errors_of(c: Checked) -> Errors:
    return Errors(**c.counts("errors", ("connect", "timeout", "reset", "bad_status")))


def background_of(c: Checked) -> Background:
    return Background(**{k: c.opt_int(k) or 0 for k in ("idle_connected", "idle_reconnects", "slow_reconnects",
                                                         "slow_requests")})


def cycles_of(c: Checked) -> Cycles:
    return Cycles(completions=c.integer("completions"), gaps=c.integer("gaps"), gap_sum_us=c.number("gap_sum_us"),
                  latency_sum_us=c.number("latency_sum_us"))


def littles_of(c: Checked) -> Littles:
    return Littles(users=c.integer("users"), predicted=c.number("predicted"), ratio=c.number("ratio"),
                   gap_us=c.number("gap_us"), cycle_us=c.number("cycle_us"), tolerance=c.number("tolerance"))


def runtime_of(c: Checked) -> Runtime:
    return Runtime(python=c.opt_str("python"), free_threaded=c.opt_bool("free_threaded"),
                   gil_enabled=c.opt_bool("gil_enabled"), error=c.opt_str("error"))
