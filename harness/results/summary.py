"""The summary of a run: one row per backend and load level; printed as a table at the end
of a run and by `concurbench summary RUN_DIR [--markdown]` (harness.results.printed), and
written as summary.csv beside results.json.

How a row aggregates its repetitions (one rule, so that the numbers of a row belong together):
- rps, good_rps, the percentiles, censored, cpu_us_per_request: from ONE repetition, the one
  with the median good_rps (for an even count, the lower of the two middle ones; a step
  without good_rps is ranked by rps). Its percentiles are its
  own: never a median of percentiles, which no single window had.
- errors and dropped: SUMMED over the repetitions (a median turns 7, 31, 127 timeouts into 31
  and 0, 0, 127 into 0); error_share pools them: failed / attempted over every repetition.
- starved: the LARGEST over repetitions; steal_pct: the largest of server and driver steal,
  largest over repetitions; driver_share_pct (a server on a driver CPU): the largest;
  others_pct (other processes on the server's CPUs): the largest; flags: every flag any
  repetition carries.
A value a step does not carry (recorded by an older version, or not measured) is missing:
empty in summary.csv, "-" in the table; never a guess.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from harness.results.steps import DRIVER_BOUND, ERROR_KINDS, group_levels
from harness.results.metrics import PERCENTILE_KEYS, HistogramError, decode_histogram
from harness.results.model import Step, as_steps
from harness.results.store import write_atomically
from harness.results.words import counted

SUMMARY_FILE = "summary.csv"

# The columns of summary.csv, each with what it holds (also shown by `concurbench summary --help`).
COLUMN_NOTES: dict[str, str] = {
    "backend": "the server model (or external command) measured",
    "users": "closed loop: concurrent users; open loop: the connections the offered rate is spread across",
    "offered_rate": "open loop: offered requests/s (empty for closed loop)",
    "idle_connections": "idle connections held open beside the load (c10k sweeps it)",
    "reps": "how many good repetitions the level has",
    "repetition": "the repetition this row's rps, good_rps, percentiles and CPU cost come from: "
                  "the one with the median good_rps (the lower middle one for an even count)",
    "rps": "answers of any status per second",
    "good_rps": "goodput: 2xx/3xx answers per second",
    "p50_us": "latency percentiles, µs, of that repetition: good answers plus censored waits",
    "p90_us": "",
    "p99_us": "",
    "censored": "how many values in that repetition's latency record are censored waits (timeouts at "
                "their timeout, starved users and unsent open-loop requests at their wait so far)",
    "p50_lower_bound": "true when the censored waits reach the percentile (the smallest is at or below it, and "
                       "raised to their true waits they could move it by more than 1%): the true percentile is "
                       "at least this; the table shows >=",
    "p90_lower_bound": "",
    "p99_lower_bound": "",
    "errors": "failed requests of every kind (connect, timeout, reset, bad status), summed over repetitions",
    "error_share": "(bad answers + requests with no answer) / (answers + requests with no answer), "
                   "over all repetitions; 0..1",
    "starved": "users that got no answer in a window: the largest over repetitions",
    "dropped": "open loop: requests due but never sent before their window closed, summed over repetitions",
    "cpu_us_per_request": "server CPU (whole process tree) µs per answer, of that repetition",
    "steal_pct": "CPU steal %, the largest of server and driver CPUs, largest over repetitions",
    "driver_share_pct": "shared-cpu steps: the driver's CPU time on the server's CPUs, as a % of all the "
                        "server's CPUs, the largest over repetitions (over 5%: the figure may be low)",
    "others_pct": "CPU time other processes of the machine (not the server's tree, not the driver) used on the "
                  "server's CPUs, as a % of all of them, the largest over repetitions (over 5%: contended)",
    "driver_bound": "true when any repetition's driver CPU was over 90%: a floor, not the server's capacity",
    "flags": "every flag of any repetition, ';'-separated (driver-bound, high-spread, noisy, contended, "
             "littles-law, shared-cpu, gil-on)",
}
SUMMARY_COLUMNS = tuple(COLUMN_NOTES)
PERCENTILES = ("p50_us", "p90_us", "p99_us")
# c censored values can raise a percentile by at most c ranks: to the value c ranks above it.
# Where that is within this share of the percentile, it is shown as measured, not as ">=": 1% is
# about the last digit a table prints, and a tenth of the spread that flags repetitions
# (metrics.HIGH_SPREAD_LIMIT). Four unsent requests among 56,000 do not make a median a bound.
LOWER_BOUND_SLACK = 0.01
# Requests that got no answer at all (the contract's `failures`); bad_status ones did.
NO_ANSWER_KINDS = tuple(kind for kind in ERROR_KINDS if kind != "bad_status")


def pick_repetition(reps: Sequence[Step]) -> Step:
    """The repetition with the median good_rps (rps for a step without good_rps); for an even
    count the lower of the two middle ones; ties in run order."""
    if not reps:
        raise ValueError("pick_repetition() needs at least one repetition")
    ranked = sorted(range(len(reps)), key=lambda i: (_throughput(reps[i]), i))
    return reps[ranked[(len(reps) - 1) // 2]]


def _throughput(step: Step) -> float:
    return float(step.good_rps if step.good_rps is not None else step.rps or 0.0)


def lower_bound(step: Step, key: str) -> bool | None:
    """Whether the step's percentile `key` is a lower bound: the censored values reach it. They
    do when the smallest is at or below it (raised to their true waits, they could move it up)
    and, where the step keeps its histogram, the value `censored` ranks above the percentile is
    more than LOWER_BOUND_SLACK above it (the furthest they could move it). None when the step
    does not say (an older result) or has no such percentile."""
    value, censored = step.percentile(key), step.censored
    if value is None or censored is None:
        return None
    minimum = step.censored_min_us
    if not censored or minimum is None or value < minimum:
        return False
    reach = _reach(step.histogram, PERCENTILE_KEYS.get(key), censored)
    return reach is None or reach > value * (1 + LOWER_BOUND_SLACK)


@lru_cache(maxsize=512)
def _reach(histogram: str | None, percentile: float | None, censored: int) -> float | None:
    """The value `censored` ranks above `percentile` in the encoded histogram (which holds the
    censored values too), infinite past its top; None without a readable histogram (a trimmed
    or older step)."""
    if not histogram or percentile is None:
        return None
    try:
        decoded = decode_histogram(histogram)
    except HistogramError:
        return None
    total = decoded.get_total_count()
    reach = percentile + 100 * censored / total if total else math.inf
    # Fewer values above the percentile than censored ones: all of those could rise, unbounded.
    return math.inf if reach > 100 else decoded.get_value_at_percentile(reach)


def pooled_error_share(reps: Iterable[Step]) -> float:
    """(bad answers + requests with no answer) / (answers + requests with no answer), over
    every repetition; 0.0 when there was nothing at all."""
    failed = attempted = 0
    for step in reps:
        failed += step.errors.no_answer + step.errors.bad_status
        attempted += step.requests + step.errors.no_answer
    return failed / attempted if attempted else 0.0


def _max_of(values: Iterable[Any]) -> Any:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def _sum_of(values: Iterable[Any]) -> Any:
    present = [v for v in values if v is not None]
    return sum(present) if present else None


@dataclass(frozen=True)
class SummaryRow:
    """One backend at one load level, its repetitions aggregated (the module's docstring says how)."""

    backend: str  # the series: "threaded (2 CPUs)", "asyncio /sleep?ms=1"
    users: int
    rate: float | None  # offered req/s; None: closed loop
    idle: int  # idle connections beside the load
    reps: int
    repetition: int  # the repetition the figures below are of
    rps: float | None
    good_rps: float | None
    p50_us: float | None
    p90_us: float | None
    p99_us: float | None
    censored: int | None
    censored_min_us: float | None
    lower_bound: Mapping[str, bool | None]  # by percentile key: see lower_bound()
    errors: int
    error_share: float
    starved: int | None
    dropped: int | None
    cpu_us_per_request: float | None
    steal_pct: float | None
    driver_share_pct: float | None
    others_pct: float | None
    flags: tuple[str, ...]

    @property
    def driver_bound(self) -> bool:
        return DRIVER_BOUND in self.flags

    def percentile(self, key: str) -> float | None:
        return {"p50_us": self.p50_us, "p90_us": self.p90_us, "p99_us": self.p99_us}[key]

    def bound(self, key: str) -> bool:
        """Whether the percentile `key` is a lower bound (None, unknown, reads as not)."""
        return bool(self.lower_bound[key])

    @property
    def load(self) -> str:
        return load_label(self.users, self.rate, self.idle)


def summary_rows(steps: Iterable[Step | Mapping[str, Any]]) -> list[SummaryRow]:
    """One row per backend and load level (see the module's docstring for the aggregation).

    Backends in the order they ran; within one, by idle connections held (c10k's sweep),
    then closed-loop levels by users, then open-loop levels by offered rate. A window with no
    completed request has no percentiles (None). The printed table and summary.csv both come
    from these rows. `steps`: the model's, or the records the orchestrator is writing.
    """
    groups = group_levels(as_steps(steps))
    backends = list(dict.fromkeys(key[0] for key in groups))
    order = lambda key: (backends.index(key[0]), key[3], key[2] is not None, key[2] or 0, key[1])  # noqa: E731
    rows = []
    for backend, users, rate, idle in sorted(groups, key=order):
        reps = groups[backend, users, rate, idle]
        rep = pick_repetition(reps)
        rows.append(SummaryRow(
            backend=backend, users=users, rate=rate, idle=idle, reps=len(reps),
            repetition=rep.repetition, rps=rep.rps, good_rps=rep.good_rps,
            p50_us=rep.p50_us, p90_us=rep.p90_us, p99_us=rep.p99_us,
            censored=rep.censored, censored_min_us=rep.censored_min_us,
            lower_bound={key: lower_bound(rep, key) for key in PERCENTILES},
            errors=sum(step.errors.total for step in reps),
            error_share=pooled_error_share(reps),
            starved=_max_of(step.starved_users for step in reps),
            dropped=_sum_of(step.dropped for step in reps),
            cpu_us_per_request=rep.server.cpu_us_per_request,
            steal_pct=_max_of(step.steal_percent for step in reps),
            driver_share_pct=_max_of(step.driver.share_of_server_percent for step in reps),
            others_pct=_max_of(step.server.others_percent for step in reps),
            flags=tuple(sorted({flag for step in reps for flag in step.flags})),
        ))
    return rows


# --- a load level in words ----------------------------------------------------------------

def load_label(users: int, rate: float | None, idle: int = 0) -> str:
    """A load level in words: '8 users', '2,000/s offered', '1 user + 1,000 idle'."""
    load = counted(users, "user") if rate is None else f"{rate:,g}/s offered"
    if idle:
        load += f" + {idle:,} idle"
    return load


# --- summary.csv ---------------------------------------------------------------------------

def write_summary_csv(run_dir: Path, steps: Iterable[Step | Mapping[str, Any]]) -> Path:
    """run_dir/summary.csv: the summary rows, one column each of SUMMARY_COLUMNS (see
    COLUMN_NOTES); a missing value is an empty cell, booleans are true/false."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(SUMMARY_COLUMNS)
    for row in summary_rows(steps):
        values = {
            "backend": row.backend, "users": row.users, "reps": row.reps, "repetition": row.repetition,
            "rps": row.rps, "good_rps": row.good_rps, **{key: row.percentile(key) for key in PERCENTILES},
            "censored": row.censored, "errors": row.errors, "starved": row.starved, "dropped": row.dropped,
            "cpu_us_per_request": row.cpu_us_per_request, "driver_bound": row.driver_bound,
            "offered_rate": row.rate, "idle_connections": row.idle,
            **{f"{key[:-3]}_lower_bound": row.lower_bound[key] for key in PERCENTILES},
            "error_share": _decimal(row.error_share, 6), "steal_pct": _decimal(row.steal_pct, 2),
            "driver_share_pct": _decimal(row.driver_share_pct, 1), "others_pct": _decimal(row.others_pct, 1),
            "flags": ";".join(row.flags),
        }
        writer.writerow([_cell(values[column]) for column in SUMMARY_COLUMNS])
    path = Path(run_dir) / SUMMARY_FILE
    write_atomically(path, buffer.getvalue())
    return path


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float)):
        return _number(value)
    return str(value)


def _decimal(value: float | None, places: int) -> str | None:
    """A share or percentage to `places` decimals, without trailing zeros ("0.0125", "0")."""
    if value is None:
        return None
    return f"{value:.{places}f}".rstrip("0").rstrip(".")


def _number(value: float) -> str:
    """An integral value without ".0", anything else to one decimal."""
    return str(int(value)) if float(value).is_integer() else f"{value:.1f}"


def floor_line(floor: Mapping[str, Any] | None) -> str:
    """A run's latency floor (metadata "latency_floor", see harness/run/floor.py) as one
    line, for the terminal and the report."""
    if not floor:
        return "latency floor: not measured"
    gap = "" if floor.get("gap_us") is None else f", {floor['gap_us']:g} µs from an answer to the next send"
    return (f"latency floor: p50 {floor['p50_us']} µs, p99 {floor['p99_us']} µs at 1 user against a server that "
            f"does nothing (the machine and the driver, no model){gap}")
