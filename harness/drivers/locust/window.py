"""One measured window: what it collected, tick by tick, and the DriverResult it becomes.

Shared by the single-process driver and the distributed master (whose MergedWindow is one,
merged over its workers). No gevent here: plain histograms and arithmetic.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

from hdrh.histogram import HdrHistogram

from harness.drivers.spec import BackgroundCounts, DriverResult, DriverSpec, ErrorCounts, SecondSample, Uncorrected
from harness.results.metrics import HIGHEST_US, new_histogram


def histogram_of(batch: list[int]) -> HdrHistogram:
    """Record a batch by distinct value: Counter + one record_value per value is ~10x
    cheaper than record_value per sample, and the hot loop only appends to a list."""
    hist = new_histogram()
    for value, count in Counter(batch).items():
        hist.record_value(min(value, HIGHEST_US), count)
    return hist


class Window:
    """What one measured window collected, tick by tick."""

    def __init__(self) -> None:
        self.total = new_histogram()
        self.sent = new_histogram()  # open loop: the same responses timed from the actual send
        self.series: list[SecondSample] = []
        self.count = self.sum_us = self.max_us = self.sent_max_us = 0


def result_of(spec: DriverSpec, window: Window, *, errors: Mapping[str, int], unfinished: int,
              unfinished_max_us: int | None, starved: int, background: BackgroundCounts, window_s: float,
              cpu_percent: float, stopped: bool, worker_hosts: list[str] | None = None) -> DriverResult:
    count, total = window.count, window.total
    pct = (lambda q: total.get_value_at_percentile(q)) if count else (lambda q: None)
    return DriverResult(
        requests=count,
        errors=ErrorCounts(**errors),
        unfinished=unfinished,
        unfinished_max_us=unfinished_max_us,
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
        driver_cpu_percent=cpu_percent,
        interrupted=stopped,
        background=background,
        starved_users=starved,
        rate=spec.rate,
        uncorrected=uncorrected_of(window) if spec.rate else None,
        workers=None if worker_hosts is None else len(worker_hosts),
        worker_hosts=tuple(worker_hosts or ()),
    )


def uncorrected_of(window: Window) -> Uncorrected:
    sent = window.sent
    has = sent.get_total_count() > 0
    return Uncorrected(
        **{key: sent.get_value_at_percentile(q) if has else None
           for key, q in (("p50_us", 50), ("p90_us", 90), ("p99_us", 99), ("p999_us", 99.9))},
        max_us=window.sent_max_us if has else None,
        histogram=sent.encode().decode("ascii"),
    )
