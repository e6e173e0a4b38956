"""Compare runs of one scenario on one machine: a table of ratios, and overlay charts.

As pyperf's compare does, a difference only counts when the repetitions say it is real.
What is compared is goodput (good req/s: 2xx/3xx answers per second) wherever every run has
it, else req/s (results from before goodput was recorded): a server that answers faster with
refusals is not faster. The verdict is Welch's t-test (unequal variances) on the repetitions' values, two-sided at
95%, with critical values from a t table: the stdlib has no t distribution. Fewer than two
repetitions on either side cannot be tested, and say so. Runs from different machines or
of different scenarios are refused unless forced: their ratios would measure the change
of machine or workload, not of the code.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from harness.charts.style import (backend_colour, backend_order, chart_title,
                                 machine_line, new_figure, note_failed, run_style, save_figure,
                                 short_cpu_model, slug, styled, thousands_format, users_axis)
from harness.charts.levels import StepSummary, failed_backends, summarize_steps
from harness.results.store import read_results

# Two-sided 95% critical values of Student's t by degrees of freedom.
T_95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
        9: 2.262, 10: 2.228, 11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131,
        16: 2.120, 17: 2.110, 18: 2.101, 19: 2.093, 20: 2.086, 21: 2.080, 22: 2.074,
        23: 2.069, 24: 2.064, 25: 2.060, 26: 2.056, 27: 2.052, 28: 2.048, 29: 2.045,
        30: 2.042, 40: 2.021, 60: 2.000, 120: 1.980}
T_95_INFINITE_DF = 1.960
NOT_SIGNIFICANT = "not significant"


class CompareError(Exception):
    """Runs that cannot be compared: too few, or from different machines or scenarios."""


def t_critical_95(df: float) -> float:
    """The two-sided 95% critical t for df degrees of freedom (df may be fractional).

    Welch's df is fractional; rounding it down to the table's next entry is conservative
    (a larger critical value), so noise is never called a difference."""
    if df < 1:
        return T_95[1]
    floor = max(key for key in T_95 if key <= df)
    return T_95_INFINITE_DF if df > 1000 else T_95[floor]


def welch_significant(a: Sequence[float], b: Sequence[float]) -> bool | None:
    """Whether the means of a and b differ at 95% (Welch); None if either has < 2 values."""
    if len(a) < 2 or len(b) < 2:
        return None
    mean_a, mean_b = statistics.fmean(a), statistics.fmean(b)
    var_a, var_b = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    if var_a + var_b == 0:  # identical repetitions on both sides: any difference is real
        return mean_a != mean_b
    t = abs(mean_a - mean_b) / math.sqrt(var_a + var_b)
    df = (var_a + var_b) ** 2 / (var_a ** 2 / (len(a) - 1) + var_b ** 2 / (len(b) - 1))
    return t > t_critical_95(df)


# What a row compares: goodput where every run has it, else all answers.
MEASURE_NAMES = {"good_rps": "good req/s", "rps": "req/s"}


@dataclass(frozen=True)
class Verdict:
    """How one run's good req/s (or req/s) at one step compares with the first run's."""

    ratio: float | None  # median of this run / of the first run
    significant: bool | None  # None: not testable (a side is missing or has 1 repetition)
    text: str


def measure_of(summaries: Sequence[StepSummary | None]) -> str:
    """"good_rps" when every run that has this level recorded goodput, else "rps"."""
    present = [summary for summary in summaries if summary is not None]
    return "good_rps" if present and all(summary.good_rps is not None for summary in present) else "rps"


def _spread(summary: StepSummary, measure: str) -> Any:
    return summary.good_rps if measure == "good_rps" and summary.good_rps is not None else summary.rps


def verdict(base: StepSummary | None, other: StepSummary | None, measure: str = "rps") -> Verdict:
    """The ratio of medians and its verdict: "1.15x faster", "not significant"..."""
    if base is None or other is None:
        return Verdict(None, None, "missing")
    base_median, other_median = _spread(base, measure).median, _spread(other, measure).median
    ratio = other_median / base_median if base_median else None  # base stalled
    significant = welch_significant([s[measure] for s in base.steps], [s[measure] for s in other.steps])
    if significant is None:
        return Verdict(ratio, None, "untested: 1 repetition")
    if not significant:
        return Verdict(ratio, False, NOT_SIGNIFICANT)
    if ratio is None or ratio == 0:
        unit = MEASURE_NAMES[measure]
        return Verdict(ratio, True, f"from 0 {unit}" if ratio is None else f"down to 0 {unit}")
    faster = ratio >= 1
    return Verdict(ratio, True, f"{ratio if faster else 1 / ratio:.2f}x {'faster' if faster else 'slower'}")


def run_label(path: Path) -> str:
    """A run's name in tables and legends: its directory's name."""
    path = Path(path)
    return (path.parent if path.name == "results.json" else path).name


def mismatches(runs: Sequence[Mapping[str, Any]], labels: Sequence[str]) -> list[str]:
    """Why these runs should not be compared: each a sentence naming both runs."""
    problems = []
    first, first_label = runs[0], labels[0]
    for run, label in zip(runs[1:], labels[1:]):
        meta, base = run.get("metadata") or {}, first.get("metadata") or {}
        for key in ("hostname", "cpu_model"):
            if meta.get(key) != base.get(key):
                problems.append(
                    f"{label} ran on {meta.get('hostname')} ({short_cpu_model(meta.get('cpu_model'))}) "
                    f"but {first_label} on {base.get('hostname')} "
                    f"({short_cpu_model(base.get('cpu_model'))}): different machines")
                break
        name, base_name = (run.get("scenario") or {}).get("name"), (first.get("scenario") or {}).get("name")
        digest = (meta.get("scenario") or {}).get("sha256")
        base_digest = (base.get("scenario") or {}).get("sha256")
        if name != base_name:
            problems.append(f"{label} ran scenario {name!r} but {first_label} ran {base_name!r}")
        elif digest != base_digest:
            problems.append(f"{label} and {first_label} both ran {name!r}, but from different "
                            f"scenario files (sha256 {str(digest)[:12]} vs {str(base_digest)[:12]})")
    return problems


# From this results schema on, a window counts every request that completes in it; before,
# the requests in flight at each window boundary were lost, so req/s read low by about
# users / window (store.py's schema history).
COUNTS_EVERY_REQUEST = 3


def schema_gaps(runs: Sequence[Mapping[str, Any]], labels: Sequence[str]) -> list[str]:
    """Runs recorded before every request was counted, when compared with runs after."""
    versions = [run.get("version") or 0 for run in runs]
    if all(v >= COUNTS_EVERY_REQUEST for v in versions) or all(v < COUNTS_EVERY_REQUEST for v in versions):
        return []
    return [f"{label} was recorded with results schema {version}, whose windows lost the requests in flight "
            f"at each boundary (and counted refusals as throughput): its ratios against later runs are not like "
            f"for like" for label, version in zip(labels, versions) if version < COUNTS_EVERY_REQUEST]


def compare_runs(paths: Sequence[Path], *, force: bool = False,
                 chart_dir: Path | None = None) -> str:
    """A printable table comparing the runs' req/s with the first run's.

    Raises CompareError for fewer than two runs, or for runs of different machines or
    scenarios unless force is true. With chart_dir, also draws one overlay per backend."""
    if len(paths) < 2:
        raise CompareError("compare needs at least two runs")
    runs = [read_results(Path(path)) for path in paths]
    labels = [run_label(Path(path)) for path in paths]
    if len(set(labels)) < len(labels):
        labels = [str(path) for path in paths]
    problems = mismatches(runs, labels)
    if problems and not force:
        raise CompareError("refusing to compare: " + "; ".join(problems)
                           + ". Pass force=True (--force) to compare anyway.")
    lines = [f"comparing {len(runs)} runs of {(runs[0].get('scenario') or {}).get('name')!r} on "
             f"{machine_line(runs[0].get('metadata') or {})}"]
    lines += [f"WARNING (forced): {problem}" for problem in problems]
    lines += [f"WARNING: {problem}" for problem in schema_gaps(runs, labels)]
    for label, run in zip(labels, runs):
        git = (run.get("metadata") or {}).get("git") or {}
        commit = (git.get("commit") or "")[:10] + ("+dirty" if git.get("dirty") else "")
        lines.append(f"  {label}: {(run.get('metadata') or {}).get('date', '?')}  "
                     f"commit {commit or 'unknown'}  status {run.get('status', '?')}")
    table, measures = _table(runs, labels)
    if measures == {"rps"}:
        what = "req/s (answers of any status: these runs did not record goodput)"
    elif measures == {"good_rps"}:
        what = "good req/s (2xx/3xx answers per second)"
    else:
        what = "good req/s (2xx/3xx answers) where every run recorded it; rows marked * compare req/s (any status)"
    lines += [f"verdict: Welch's t-test on the repetitions' {what}, two-sided 95%", ""]
    lines += table
    if chart_dir is not None:
        written = draw_overlays(runs, labels, Path(chart_dir))
        lines += ["", f"overlay charts: {len(written) // 2} written to {chart_dir}"]
    return "\n".join(lines)


def _table(runs: Sequence[Mapping[str, Any]], labels: Sequence[str]) -> tuple[list[str], set[str]]:
    """One row per backend and load level; per later run: good req/s (or req/s), ratio,
    verdict. Also the measures the rows compared."""
    summaries = [summarize_steps(run) for run in runs]
    failed = [failed_backends(run) for run in runs]
    rows, measures = [], []
    for backend in backend_order([b for s in summaries for b in s] + [b for f in failed for b in f]):
        levels = sorted({u for s in summaries for u in s.get(backend, {})})
        for users in levels or [0]:
            level = [summary.get(backend, {}).get(users) for summary in summaries]
            measure = measure_of(level)
            measures.append(measure)
            base = level[0]
            cells = [backend, str(users or ""), _rps(base, backend in failed[0], measure)]
            for label, other, failures in zip(labels[1:], level[1:], failed[1:]):
                result = verdict(base, other, measure)
                text = result.text
                if base is None and backend in failed[0]:
                    text = f"failed in {labels[0]}"
                elif other is None and backend in failures:
                    text = f"failed in {label}"
                cells += [_rps(other, backend in failures, measure),
                          "—" if result.ratio is None else f"{result.ratio:.2f}x", text]
            rows.append(cells)
    unit = MEASURE_NAMES[measures[0]] if len(set(measures)) == 1 else "good req/s"
    if len(set(measures)) > 1:  # mark the rows that fell back to all answers
        for cells, measure in zip(rows, measures):
            if measure == "rps":
                cells[0] += " *"
    header = ["backend", "users", f"{labels[0]} {unit}"]
    for label in labels[1:]:
        header += [f"{label} {unit}", "ratio", "verdict"]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    left = {i for i, name in enumerate(header) if name in ("backend", "verdict")}

    def line(cells: list[str]) -> str:
        return "  ".join(cell.ljust(width) if i in left else cell.rjust(width)
                         for i, (cell, width) in enumerate(zip(cells, widths))).rstrip()
    return [line(header), line(["-" * width for width in widths]), *map(line, rows)], set(measures)


def _rps(summary: StepSummary | None, failed: bool, measure: str = "rps") -> str:
    if summary is None:
        return "failed" if failed else "—"
    return f"{_spread(summary, measure).median:,.0f}"


@styled
def draw_overlays(runs: Sequence[Mapping[str, Any]], labels: Sequence[str],
                  out_dir: Path) -> list[Path]:
    """Per backend, throughput vs users with one line per run: the backend's colour, a
    line style per run. Written as compare_<backend>.png/.svg; returns the paths."""
    summaries = [summarize_steps(run) for run in runs]
    failed = [failed_backends(run) for run in runs]
    hosts = sorted({str((run.get("metadata") or {}).get("hostname")) for run in runs})
    mixed = f" (forced: machines {', '.join(hosts)})" if mismatches(runs, labels) else ""
    paths: list[Path] = []
    for backend in backend_order([b for s in summaries for b in s]):
        figure, ax = new_figure()
        colour = backend_colour(backend)
        points_of_runs = [p for summary in summaries for p in summary.get(backend, {}).values()]
        measure = measure_of(points_of_runs)
        levels: set[int] = set()
        bound: dict[int, list[tuple[str, float]]] = {}
        for index, (label, summary) in enumerate(zip(labels, summaries)):
            points = list(summary.get(backend, {}).values())
            if not points:
                continue
            style, marker = run_style(index)
            levels.update(p.users for p in points)
            spreads = [_spread(p, measure) for p in points]
            ax.errorbar([p.users for p in points], [v.median for v in spreads],
                        yerr=[[v.median - v.min for v in spreads], [v.max - v.median for v in spreads]],
                        color=colour, linestyle=style, marker=marker, capsize=3, label=label)
            for point, value in zip(points, spreads):  # hollow where driver-bound, as in one run's chart
                if not point.driver_bound:
                    continue
                ax.plot(point.users, value.median, marker=marker, markersize=9, color=colour,
                        markerfacecolor="white", markeredgewidth=2, zorder=4)
                bound.setdefault(point.users, []).append((label, value.median))
        for users, marks in bound.items():  # one label per load level, naming the runs
            ax.annotate(f"driver-bound: {', '.join(label for label, _ in marks)}",
                        (users, max(rps for _, rps in marks)), xytext=(-6, 8),
                        textcoords="offset points", fontsize=8, color=colour, ha="right")
        users_axis(ax, sorted(levels))
        ax.set_ylim(0, ax.get_ylim()[1] * 1.08)  # headroom for the driver-bound labels
        ax.yaxis.set_major_formatter(thousands_format())
        ax.set_ylabel(("good requests/s (2xx/3xx answers)" if measure == "good_rps" else "requests/s")
                      + " (median, min..max)")
        ax.set_title(chart_title(runs[0], f"{backend} {'goodput' if measure == 'good_rps' else 'throughput'}, "
                                          f"run by run{mixed}"))
        ax.legend(fontsize=8, title="run", title_fontsize=8)
        note_failed(figure, {label: f[backend] for label, f in zip(labels, failed) if backend in f})
        paths += save_figure(figure, out_dir, f"compare_{slug(backend)}")
    return paths
