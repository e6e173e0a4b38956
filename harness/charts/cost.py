"""What an answer costs: server CPU µs per request (the whole process tree) per backend at
every load level, drawn from stored results only (measurement rule 12). It separates "fast
because idle" from "fast because cheap"; a run recorded by an older version may lack it.
"""

from __future__ import annotations

from pathlib import Path
from dataclasses import dataclass

from harness.charts.levels import failed_backends
from harness.charts.style import (backend_colour, backend_label, backend_order, chart_title, ms_format, new_figure,
                                  note_failed, save_figure, styled, thousands_format)
from harness.results.model import Run
from harness.results.steps import group_levels
from harness.results.summary import SummaryRow, summary_rows


@dataclass(frozen=True)
class CostLevel:
    """A summary row (closed, open loop, idle connections) with the min..max of server CPU µs
    per request over its repetitions."""

    row: SummaryRow
    cpu_min: float | None
    cpu_max: float | None


def cpu_levels(results: Run) -> list[CostLevel]:
    """Every load level's summary row, with its repetitions' range of CPU per request."""
    levels = group_levels(results.steps)
    rows = []
    for row in summary_rows(results.steps):
        reps = levels[row.backend, row.users, row.rate, row.idle]
        values = [v for v in (rep.server.cpu_us_per_request for rep in reps) if v is not None]
        rows.append(CostLevel(row, min(values, default=None), max(values, default=None)))
    return rows


@styled
def cpu_per_request(results: Run, out_dir: Path) -> list[Path]:
    """Server CPU µs per request (the whole process tree) per backend at every load level:
    what an answer costs, which separates "fast because idle" from "fast because cheap".
    A bar is the repetition summary.csv shows; the whisker spans the repetitions."""
    levels = cpu_levels(results)
    loads = list(dict.fromkeys(level.row.load for level in sorted(
        levels, key=lambda level: (level.row.idle, level.row.rate is not None, level.row.rate or 0, level.row.users))))
    backends = backend_order([level.row.backend for level in levels])
    figure, ax = new_figure()
    width = 0.8 / max(len(backends), 1)
    for index, backend in enumerate(backends):
        mine = {level.row.load: level for level in levels if level.row.backend == backend
                and level.row.cpu_us_per_request is not None}
        xs = [i + (index - (len(backends) - 1) / 2) * width for i, load in enumerate(loads) if load in mine]
        drawn = [mine[load] for load in loads if load in mine]
        cost = [level.row.cpu_us_per_request or 0.0 for level in drawn]
        ax.bar(xs, cost, width=width * 0.9, color=backend_colour(backend), label=backend_label(backend),
               yerr=[[c - level.cpu_min if level.cpu_min is not None else 0.0 for c, level in zip(cost, drawn)],
                     [level.cpu_max - c if level.cpu_max is not None else 0.0 for c, level in zip(cost, drawn)]],
               error_kw={"elinewidth": 0.8, "capsize": 2, "ecolor": "#333"})
    ax.set_xticks(range(len(loads)), labels=[load.replace(" + ", "\n+ ") for load in loads],
                  fontsize=8 if len(loads) < 8 else 6)
    values = [level.row.cpu_us_per_request for level in levels if level.row.cpu_us_per_request]
    if values and max(values) / min(values) > 50:  # a process per request beside a callback: log
        ax.set_yscale("log")
    else:
        ax.set_ylim(bottom=0)
    ax.yaxis.set_major_formatter(thousands_format() if max(values, default=0) >= 10 else ms_format())
    ax.set_ylabel("server CPU µs per request\n(whole process tree, lower is cheaper)")
    ax.set_xlabel("load level")
    ax.set_title(chart_title(results, "server CPU per request"))
    if backends:
        ax.legend(fontsize=8)
    note_failed(figure, failed_backends(results))
    return save_figure(figure, out_dir, "cpu_per_request")


def has_cpu_per_request(results: Run) -> bool:
    """Whether any good step recorded its server CPU per request (an older version did not)."""
    return any(step.server.cpu_us_per_request is not None for step in results.ok_steps)


def draw_cost(results: Run, out_dir: Path) -> list[Path]:
    """The cost chart, when the run recorded CPU per request (none otherwise)."""
    return cpu_per_request(results, out_dir) if has_cpu_per_request(results) else []
