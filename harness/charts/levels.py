"""The closed-loop levels of a run as the charts, the report and compare see them: one
StepSummary per backend and user count, from the stored results only.

Throughput is summarised over the repetitions (median and range, summarize); percentiles
and CPU cost are those of the repetition summary.csv shows (the median by goodput).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from harness.charts.idle import at_fewest_idle
from harness.charts.notes import starved_text
from harness.charts.style import backend_label, backend_order
from harness.results.metrics import Spread, summarize
from harness.results.model import Run, Step
from harness.results.steps import DRIVER_BOUND, ERROR_KINDS, HIGH_SPREAD, group_levels, median_of
from harness.results.summary import lower_bound, pick_repetition
from harness.results.words import counted


@dataclass(frozen=True)
class StepSummary:
    """The good repetitions of one backend at one load level, summarised."""

    backend: str
    users: int
    steps: tuple[Step, ...]
    rps: Spread
    p50_us: float | None  # of the repetition with the median goodput; None: no completed request
    p99_us: float | None
    errors: dict[str, int]  # by kind, summed over the repetitions
    driver_bound: bool
    high_spread: bool
    cpu_percent: float | None
    rss_bytes: float | None  # median memory: PSS of a process tree, else RSS (ServerFigures.memory)
    starved: int = 0  # the most users with no answer in a window, over the repetitions
    good_rps: Spread | None = None  # 2xx/3xx answers/s; None where not recorded (an older version)
    p50_lower_bound: bool = False  # the percentile reaches censored waits: the truth is at least this
    p99_lower_bound: bool = False
    recorded: bool = False  # the steps record censored waits (a starved user's wait is in the percentiles)
    cpu_us_per_request: float | None = None  # of the median-goodput repetition
    repetition: Step | None = None  # that repetition

    def good_differs(self) -> bool:
        """Whether goodput is not simply throughput (some answer was not 2xx/3xx)."""
        return self.good_rps is not None and abs(self.good_rps.median - self.rps.median) > 0.005 * max(
            self.rps.median, 1e-9)


def starved_notes(summaries: Mapping[str, Mapping[int, StepSummary]], users: int | None = None) -> list[str]:
    """One line per backend and level (at `users`, or all) where some user got no answer."""
    return [f"{backend_label(backend)} at {counted(level, 'user')}: {starved_text(level, summary.starved, summary.recorded)}"
            for backend, by_users in summaries.items() for level, summary in by_users.items()
            if summary.starved and (users is None or level == users)]


def summarize_steps(results: Run) -> dict[str, dict[int, StepSummary]]:
    """backend -> users -> summary of its closed-loop levels' good steps, backends in the
    usual order. 0 requests is a result too (a stalled server). Open-loop levels have charts
    of their own (open_loop.py), against offered rate instead of users, and so do c10k's
    levels above the fewest idle connections (idle.py)."""
    levels = group_levels(at_fewest_idle(results))
    groups = {(backend, users): reps for (backend, users, rate, _), reps in levels.items() if rate is None}
    summaries: dict[str, dict[int, StepSummary]] = {}
    for backend in backend_order([name for name, _ in groups]):
        for users in sorted(u for name, u in groups if name == backend):
            summaries.setdefault(backend, {})[users] = _summary(backend, users, groups[backend, users])
    return summaries


def _summary(backend: str, users: int, reps: list[Step]) -> StepSummary:
    rps = summarize([rep.rps or 0.0 for rep in reps])
    good = [rep.good_rps for rep in reps]
    flags = {flag for rep in reps for flag in rep.flags}
    chosen = pick_repetition(reps)
    return StepSummary(
        backend=backend, users=users, steps=tuple(reps), rps=rps,
        p50_us=chosen.p50_us, p99_us=chosen.p99_us,
        errors={kind: sum(rep.errors.by_kind()[kind] for rep in reps) for kind in ERROR_KINDS},
        driver_bound=DRIVER_BOUND in flags,
        high_spread=rps.high_spread or HIGH_SPREAD in flags,
        cpu_percent=median_of(rep.server.cpu_percent for rep in reps),
        rss_bytes=median_of(rep.server.memory for rep in reps),
        starved=max(rep.starved_users or 0 for rep in reps),
        good_rps=summarize([g for g in good if g is not None]) if None not in good else None,
        p50_lower_bound=bool(lower_bound(chosen, "p50_us")), p99_lower_bound=bool(lower_bound(chosen, "p99_us")),
        recorded=any(rep.censored is not None for rep in reps),
        cpu_us_per_request=chosen.server.cpu_us_per_request,
        repetition=chosen,
    )


def failed_backends(results: Run) -> dict[str, str]:
    """Backends with nothing to draw, and why: failed to run, or no good step at all."""
    drawn = summarize_steps(results)
    failed = {name: entry.error or "failed" for name, entry in results.backends.items() if entry.status == "failed"}
    good = {step.backend for step in results.ok_steps}
    for step in results.steps:
        if step.backend not in drawn and step.backend not in good and step.backend not in failed:
            failed[step.backend] = step.error or "no successful step"
    return failed


def all_users(summaries: Mapping[str, Mapping[int, StepSummary]]) -> list[int]:
    return sorted({users for by_users in summaries.values() for users in by_users})
