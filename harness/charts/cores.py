"""Good req/s and p99 against the server's cores, one line per backend: whether a model turns
more CPUs into more answers. Pre-fork workers (and threads on a free-threaded Python) should
climb with cores; one event loop, or threads under the GIL, should stay flat.

Drawn at the run's highest closed-loop user level only: a closed-loop user has one request in
flight, so a low level cannot keep several cores busy and shows every model flat; the highest
level is the one that can saturate the server, and one chart reads better than one per level.
An open-loop-only sweep is not drawn: below saturation an offered rate measures the schedule,
not the server (open_loop.py draws those levels against the rate). There is a chart only when
the run sweeps two or more core counts. Steps are grouped by step["backend"] and step["cores"]
here, not by the level key's series name; good req/s and p99 are medians over the repetitions.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from matplotlib.lines import Line2D

from harness.charts.idle import at_fewest_idle
from harness.charts.levels import failed_backends
from harness.charts.notes import draw_notes
from harness.charts.style import (LATENCY, LOWER_BOUND_LABEL, LOWER_BOUND_MARKER, backend_colour, backend_label,
                                  backend_order, chart_title, ms_format, new_figure, note_failed, save_figure,
                                  styled, thousands_format)
from harness.results.steps import DRIVER_BOUND, median_of
from harness.results.summary import lower_bound


@dataclass(frozen=True)
class CorePoint:
    """One backend on `cores` server CPUs at the chart's user level, over its good repetitions."""

    cores: int
    good_rps: float  # median; req/s for results recorded before goodput
    p99_us: float | None  # median; None: no repetition completed a request
    p99_lower_bound: bool  # the median reaches censored waits: the truth is at least this
    driver_bound: bool  # some repetition measured the driver: a floor, not capacity
    pinned: int | None  # the fewest CPUs a repetition's server was pinned to; None: not recorded


def _swept(results: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The good closed-loop steps that carry a core count, at the run's fewest idle connections."""
    return [step for step in at_fewest_idle(results) if step.get("status") == "ok"
            and step.get("cores") is not None and step.get("rate") is None]


def has_core_sweep(results: Mapping[str, Any]) -> bool:
    """Whether the run's closed-loop steps ran the server on two or more core counts."""
    return len({step["cores"] for step in _swept(results)}) >= 2


def chart_users(results: Mapping[str, Any]) -> int | None:
    """The user level the chart shows: the highest closed-loop one of the sweep."""
    return max((step["users"] for step in _swept(results)), default=None)


def core_points(results: Mapping[str, Any]) -> dict[str, list[CorePoint]]:
    """backend -> its points at the chart's user level, by cores; backends in the usual order."""
    users = chart_users(results)
    groups: dict[tuple[str, int], list[Mapping[str, Any]]] = {}
    for step in _swept(results):
        if step["users"] == users:
            groups.setdefault((step["backend"], step["cores"]), []).append(step)
    return {backend: [_point(cores, groups[backend, cores]) for cores in sorted(c for b, c in groups if b == backend)]
            for backend in backend_order([backend for backend, _ in groups])}


def _point(cores: int, reps: Sequence[Mapping[str, Any]]) -> CorePoint:
    good = median_of(reps, "good_rps")
    p99, bound = median_p99(reps)
    pinned = [len(rep["server_cpus"]) for rep in reps if rep.get("server_cpus") is not None]
    return CorePoint(cores=cores, good_rps=good if good is not None else median_of(reps, "rps") or 0.0,
                     p99_us=p99, p99_lower_bound=bound, pinned=min(pinned, default=None),
                     driver_bound=any(DRIVER_BOUND in (rep.get("flags") or ()) for rep in reps))


def median_p99(reps: Sequence[Mapping[str, Any]]) -> tuple[float | None, bool]:
    """The repetitions' median p99, and whether it is a lower bound: it is when a repetition at
    or below the (upper) middle one is, since that one's truth could lift the median."""
    ranked = sorted((rep for rep in reps if rep.get("p99_us") is not None), key=lambda rep: rep["p99_us"])
    if not ranked:
        return None, False
    middle = ranked[len(ranked) // 2]["p99_us"]
    return median_of(ranked, "p99_us"), any(lower_bound(rep, "p99_us") for rep in ranked if rep["p99_us"] <= middle)


@styled
def throughput_latency_vs_cores(results: Mapping[str, Any], out_dir: Path) -> list[Path]:
    """Good req/s (top) and p99 (bottom, log) against server cores, one line per backend."""
    points = core_points(results)
    figure, (rps_ax, p99_ax) = new_figure(height=6.5, nrows=2, sharex=True)
    for backend, line in points.items():
        _draw_backend(rps_ax, p99_ax, backend, line)
    counts = sorted({point.cores for line in points.values() for point in line})
    p99_ax.set_xticks(counts, labels=[str(count) for count in counts])
    p99_ax.set_xlabel("server cores (CPUs the server is pinned to)")
    rps_ax.set_ylim(0, rps_ax.get_ylim()[1] * 1.1)  # from 0: linear scaling is a line from the origin
    rps_ax.yaxis.set_major_formatter(thousands_format())
    rps_ax.set_ylabel("good requests/s (median)")
    p99_ax.set_yscale("log")
    p99_ax.yaxis.set_major_formatter(ms_format())
    low, high = p99_ax.get_ylim()
    if high < 10 * low:  # under a decade there is at most one major tick to read: label the minor ones
        p99_ax.yaxis.set_minor_formatter(ms_format())
    p99_ax.set_ylabel(f"p99 {LATENCY}, ms\n(median, log scale)")
    rps_ax.set_title(chart_title(results, f"good req/s and p99 vs server cores at {chart_users(results)} users"))
    rps_ax.legend(handles=_handles(points), fontsize=8)
    draw_notes(rps_ax, pinning_notes(points))
    note_failed(figure, failed_backends(results))
    return save_figure(figure, out_dir, "server_cores")


def _draw_backend(rps_ax: Any, p99_ax: Any, backend: str, line: Sequence[CorePoint]) -> None:
    colour, cores = backend_colour(backend), [point.cores for point in line]
    rps_ax.plot(cores, [point.good_rps for point in line], color=colour, marker="o")
    for point in (p for p in line if p.driver_bound):  # hollow: a floor, not capacity
        rps_ax.plot(point.cores, point.good_rps, marker="o", markersize=9, color=colour, markerfacecolor="white",
                    markeredgewidth=2, zorder=4)
        rps_ax.annotate(DRIVER_BOUND, (point.cores, point.good_rps), xytext=(-6, 8), textcoords="offset points",
                        fontsize=8, color=colour, ha="right")
    drawn = [p for p in line if p.p99_us is not None]
    p99_ax.plot([p.cores for p in drawn], [p.p99_us / 1000 for p in drawn], color=colour, marker="o", linestyle="--")
    bounded = [(p.cores, p.p99_us / 1000) for p in drawn if p.p99_lower_bound]
    if bounded:
        p99_ax.plot(*zip(*bounded), linestyle="", marker=LOWER_BOUND_MARKER, markersize=9, color=colour, zorder=5)


def _handles(points: Mapping[str, Sequence[CorePoint]]) -> list[Line2D]:
    every = [point for line in points.values() for point in line]
    handles = [Line2D([], [], color=backend_colour(backend), marker="o", label=backend_label(backend))
               for backend in points]
    if any(point.driver_bound for point in every):
        handles.append(Line2D([], [], color="black", marker="o", markerfacecolor="white", linestyle="",
                              label="driver-bound: a floor, not capacity"))
    if any(point.p99_lower_bound for point in every):
        handles.append(Line2D([], [], color="black", linestyle="", marker=LOWER_BOUND_MARKER, label=LOWER_BOUND_LABEL))
    return handles


def pinning_notes(points: Mapping[str, Sequence[CorePoint]]) -> list[str]:
    """One line per point whose server got fewer (or more) CPUs than its core count asked."""
    return [f"{backend_label(backend)} at {point.cores} cores: pinned to {point.pinned} CPUs"
            for backend, line in points.items() for point in line
            if point.pinned is not None and point.pinned != point.cores]


def draw_cores(results: Mapping[str, Any], out_dir: Path) -> list[Path]:
    """The cores chart, when the run sweeps two or more core counts (none otherwise)."""
    return throughput_latency_vs_cores(results, out_dir) if has_core_sweep(results) else []
