"""One measured window: what it collected, tick by tick, and the DriverResult it becomes.

Shared by the single-process driver and the distributed master (whose MergedWindow is one,
merged over its workers). No gevent here: plain histograms and arithmetic.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any, NamedTuple

from hdrh.histogram import HdrHistogram

from harness.drivers.spec import (BackgroundCounts, Cycles, DriverResult, DriverSpec, ErrorCounts, SecondSample,
                                  Uncorrected)
from harness.results.metrics import HIGHEST_US, decode_histogram, encode_histogram, new_histogram
from harness.results.steps import ERROR_KINDS



def histogram_of(batch: list[int]) -> HdrHistogram:
    """Record a batch by distinct value: Counter + one record_value per value is ~10x
    cheaper than record_value per sample, and the hot loop only appends to a list."""
    hist = new_histogram()
    for value, count in Counter(batch).items():
        hist.record_value(min(value, HIGHEST_US), count)
    return hist


class Tally(NamedTuple):
    """What the users recorded between two cuts (see Recorder.cut in user.py)."""

    samples: list[int]  # latency (us) of each good (2xx/3xx) answer
    samples_sent: list[int]  # open loop: the same, from the actual send
    censored: list[int]  # timeouts' waits (us): lower bounds
    bad: list[int]  # the status of each answer that is not 2xx/3xx
    redirects: int  # 3xx answers
    errors: dict[str, int]
    latency_sum_us: int  # every completion's latency: answers of any status, failures
    completions: int
    gap_sum_ns: int  # the driver's own time from a completion to the next send
    gaps: int


class Waiting(NamedTuple):
    """What was still waiting when a window closed (see Recorder.waiting in user.py)."""

    starved: int
    censored: list[int]  # starved users' waits so far (us)
    dropped: list[int]  # open loop: waits so far (us) of the due slots not sent


class Window:
    """What one measured window collected, cut by cut (see Recorder.cut).

    `total` is the latency record: good (2xx/3xx) answers, plus censored waits (timeouts,
    and at the close the starved users' and dropped slots' waits so far), each a lower bound.
    """

    def __init__(self) -> None:
        self.total = new_histogram()
        self.sent = new_histogram()  # open loop: the same good answers timed from the actual send
        self.series: list[SecondSample] = []
        self.count = self.good = self.redirects = 0  # answers of any status; good ones; 3xx among them
        self.sum_us = self.max_us = self.sent_max_us = 0  # over good answers
        self.classes: Counter[str] = Counter()  # answers that are not 2xx/3xx, by status class
        self.errors = dict.fromkeys(ERROR_KINDS, 0)
        self.censored = 0
        self.censored_min_us: int | None = None
        self.dropped = 0
        self.dropped_max_us: int | None = None
        self.starved = 0
        self.latency_sum_us = self.completions = self.gap_sum_ns = self.gaps = 0

    def add(self, tally: Tally) -> HdrHistogram | None:
        """Fold one cut in; returns the histogram of its good answers (None if there were none)."""
        hist = histogram_of(tally.samples) if tally.samples else None
        return self._fold(counts_of(tally), hist, histogram_of(tally.samples_sent) if tally.samples_sent else None)

    def add_message(self, data: dict[str, Any]) -> HdrHistogram | None:
        """Fold in a cut another process made (see tally_message): what add() does."""
        hist = decode_histogram(data["histogram"]) if data["good"] else None
        sent = decode_histogram(data["sent_histogram"]) if data["sent_histogram"] else None
        return self._fold(data, hist, sent)

    def _fold(self, counts: Mapping[str, Any], hist: HdrHistogram | None,
              sent: HdrHistogram | None) -> HdrHistogram | None:
        """One cut's counts (counts_of) and histograms into the window."""
        if hist is not None:
            self.total.add(hist)
            self.good += counts["good"]
            self.sum_us += counts["sum_us"]
            self.max_us = max(self.max_us, counts["max_us"])
        if sent is not None:
            self.sent.add(sent)
            self.sent_max_us = max(self.sent_max_us, counts["sent_max_us"])
        self.count += counts["good"] + sum(counts["bad"].values())
        self.redirects += counts["redirects"]
        self.classes.update(counts["bad"])
        for kind, count in counts["errors"].items():
            self.errors[kind] += count
        self.censor(counts["censored"])
        self.latency_sum_us += counts["latency_sum_us"]
        self.completions += counts["completions"]
        self.gap_sum_ns += counts["gap_sum_ns"]
        self.gaps += counts["gaps"]
        return hist

    def censor(self, waits: list[int]) -> None:
        """Waits known only as lower bounds enter the latency record, counted as censored."""
        if waits:
            self.total.add(histogram_of(waits))
            self.censored += len(waits)
            low = min(waits)
            self.censored_min_us = low if self.censored_min_us is None else min(self.censored_min_us, low)

    def add_waiting(self, waiting: Waiting) -> None:
        """At the window's close: the starved users' and the dropped slots' waits so far."""
        self.starved += waiting.starved
        self.censor(waiting.censored)
        self.censor(waiting.dropped)
        self.dropped += len(waiting.dropped)
        if waiting.dropped:
            self.dropped_max_us = max(self.dropped_max_us or 0, max(waiting.dropped))

    def answers_by_class(self) -> dict[str, int]:
        return {"2xx": self.good - self.redirects, "3xx": self.redirects,
                **{key: self.classes[key] for key in ("4xx", "5xx", "other")}}


def counts_of(tally: Tally) -> dict[str, Any]:
    """A cut's figures other than its latencies: what Window._fold adds up."""
    samples, sent = tally.samples, tally.samples_sent
    return {
        "good": len(samples), "sum_us": sum(samples), "max_us": max(samples, default=0),
        "sent_max_us": max(sent, default=0),
        "bad": dict(Counter(status_class(status) for status in tally.bad)), "redirects": tally.redirects,
        "errors": tally.errors, "censored": tally.censored, "latency_sum_us": tally.latency_sum_us,
        "completions": tally.completions, "gap_sum_ns": tally.gap_sum_ns, "gaps": tally.gaps,
    }


def tally_message(tally: Tally, *, open_loop: bool) -> dict[str, Any]:
    """A cut as a message for another process (a distributed worker's batch): its counts,
    and its latencies as encoded histograms; Window.add_message reads it."""
    samples, sent = tally.samples, tally.samples_sent
    return {**counts_of(tally),
            "histogram": encode_histogram(histogram_of(samples)) if samples else None,
            "sent_histogram": encode_histogram(histogram_of(sent)) if open_loop and sent else None}


def status_class(status: int) -> str:
    return f"{status // 100}xx" if 400 <= status < 600 else "other"


def result_of(spec: DriverSpec, window: Window, *, unfinished: int, unfinished_max_us: int | None,
              background: BackgroundCounts, window_s: float, cpu_percent: float, stopped: bool,
              worker_hosts: list[str] | None = None, rates: tuple[float, float] | None = None) -> DriverResult:
    """The DriverResult of a window. `rates`: (rps, good_rps) when they are not simply the
    counts over window_s (a distributed window: each worker's counts over its own span)."""
    count, total = window.count, window.total
    recorded = total.get_total_count()
    pct = (lambda q: total.get_value_at_percentile(q)) if recorded else (lambda q: None)
    rps, good_rps = rates or ((count / window_s, window.good / window_s) if window_s else (0.0, 0.0))
    return DriverResult(
        requests=count,
        good_requests=window.good,
        answers_by_class=window.answers_by_class(),
        errors=ErrorCounts(**window.errors),
        unfinished=unfinished,
        unfinished_max_us=unfinished_max_us,
        duration_s=round(window_s, 6),
        rps=round(rps, 3),
        good_rps=round(good_rps, 3),
        p50_us=pct(50),
        p90_us=pct(90),
        p99_us=pct(99),
        p999_us=pct(99.9),
        max_us=max(window.max_us, total.get_max_value()) if recorded else None,
        mean_us=round(window.sum_us / window.good, 3) if window.good else None,
        histogram=total.encode().decode("ascii"),
        timeseries=tuple(window.series),
        users=spec.users,
        keep_alive=spec.keep_alive,
        driver_cpu_percent=cpu_percent,
        interrupted=stopped,
        background=background,
        starved_users=window.starved,
        censored=window.censored,
        censored_min_us=window.censored_min_us,
        dropped=window.dropped,
        dropped_max_us=window.dropped_max_us,
        cycles=Cycles(window.completions, window.latency_sum_us, window.gaps, window.gap_sum_ns // 1000),
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
