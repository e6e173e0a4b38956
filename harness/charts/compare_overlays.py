"""compare's overlay charts: per backend, throughput against users with one line per run, so a
change between runs is seen at a glance (compare.py lines the runs up and judges them)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from harness.charts.levels import StepSummary, failed_backends, summarize_steps
from harness.charts.style import (backend_colour, backend_order, chart_title, new_figure, note_failed, run_style,
                                  save_figure, styled, thousands_format, users_axis)
from harness.results.model import Run
from harness.results.store import file_name


def measure_of(summaries: Sequence[StepSummary | None]) -> str:
    """"good_rps" when every run that has this level recorded goodput, else "rps"."""
    present = [summary for summary in summaries if summary is not None]
    return "good_rps" if present and all(summary.good_rps is not None for summary in present) else "rps"


def _spread(summary: StepSummary, measure: str) -> Any:
    return summary.good_rps if measure == "good_rps" and summary.good_rps is not None else summary.rps


@styled
def draw_overlays(runs: Sequence[Run], labels: Sequence[str], out_dir: Path, *, forced: bool = False) -> list[Path]:
    """Per backend, throughput vs users with one line per run: the backend's colour, a
    line style per run. Written as compare_<backend>.png/.svg; returns the paths. `forced`:
    the runs were compared although they do not match (the title names their machines)."""
    summaries = [summarize_steps(run) for run in runs]
    failed = [failed_backends(run) for run in runs]
    hosts = sorted({str(run.metadata.hostname) for run in runs})
    mixed = f" (forced: machines {', '.join(hosts)})" if forced else ""
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
        paths += save_figure(figure, out_dir, f"compare_{file_name(backend, fallback='backend')}")
    return paths
