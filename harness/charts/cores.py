"""Good req/s and p99 against the server's cores, one line per series (a backend under one
interpreter, and one request when the scenario sends each alone): whether a model turns more
CPUs into more answers. Beside each, dotted, its ideal: linear from its own one-core point.
Pre-fork workers, sub-interpreters and threads on a free-threaded Python should climb near
their ideal; one event loop, or threads under the GIL, should stay flat.

Drawn at the run's highest closed-loop user level only, from the steps harness.charts.sweep
picks (open_loop.py draws open-loop levels against the rate). There is a chart only when the
run sweeps two or more core counts. Steps are grouped by their series without the core count
and their cores; good req/s and p99 are medians over the repetitions. A request's series share its backend's colour and differ by marker and line style.
A count at which the server shared the driver's CPU ([server] share_driver_cpus) is noted,
with the driver's largest share of the server's CPUs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from matplotlib.lines import Line2D

from harness.charts.levels import failed_backends
from harness.charts.notes import draw_notes
from harness.charts.sweep import by_series, has_sweep, measured, top_users
from harness.charts.style import (LATENCY, LOWER_BOUND_LABEL, LOWER_BOUND_MARKER, backend_label,
                                  chart_title, distinct_colours, ms_format, new_figure, note_failed, save_figure,
                                  styled, thousands_format)
from harness.results.model import Run, Step
from harness.results.steps import DRIVER_BOUND, SHARED_CPU, SHARED_CPU_LOW_PERCENT
from harness.results.units import ms
from harness.results.words import counted

# A legend of up to this many lines fits inside the throughput axes; a longer one (six backends
# on two interpreters and two requests: 24 lines) goes beside them.
INSIDE_LEGEND_MAX = 8
# One (marker, line style) per request of a mix = "each" run, in the scenario's order.
ROUTE_STYLES = (("o", "-"), ("s", "-."), ("D", (0, (5, 1, 1, 1))), ("v", (0, (3, 1))))


@dataclass(frozen=True)
class CorePoint:
    """One series on `cores` server CPUs at the chart's user level, over its good repetitions."""

    cores: int
    good_rps: float  # median; req/s for steps without goodput (an older version)
    p99_us: float | None  # median; None: no repetition completed a request
    p99_lower_bound: bool  # the median reaches censored waits: the truth is at least this
    driver_bound: bool  # some repetition measured the driver: a floor, not capacity
    pinned: int | None  # the fewest CPUs a repetition's server was pinned to; None: not recorded
    backend: str = ""  # the backend's label ("threaded@3.13t"): its colour
    route: str | None = None  # the one request the series sent (mix "each"): its marker
    driver_share: float | None = None  # shared-cpu: the driver's largest share of the server's CPUs (%)


def _cores(step: Step) -> int | None:
    return step.cores


def has_core_sweep(results: Run) -> bool:
    """Whether the run's closed-loop steps ran the server on two or more core counts."""
    return has_sweep(results, _cores)


def chart_users(results: Run) -> int | None:
    """The user level the chart shows: the highest closed-loop one of the sweep."""
    return top_users(results, _cores)


def core_points(results: Run) -> dict[str, list[CorePoint]]:
    """series -> its points at the chart's user level, by cores; our backends in the usual order."""
    return {name: [_point(cores, reps) for cores, reps in line.items()]
            for name, line in by_series(results, _cores, lambda step: step.without_cores).items()}


def _point(cores: int, reps: Sequence[Step]) -> CorePoint:
    pinned = [len(rep.server_cpus) for rep in reps if rep.server_cpus is not None]
    shares = [rep.driver.share_of_server_percent or 0.0 for rep in reps if SHARED_CPU in rep.flags]
    return CorePoint(cores, **vars(measured(reps)), pinned=min(pinned, default=None), backend=reps[0].backend,
                     route=reps[0].route, driver_share=max(shares, default=None))


def ideal(line: Sequence[CorePoint]) -> list[tuple[int, float]]:
    """The series' ideal: its one-core goodput times each core count; [] without a one-core point."""
    one = next((point.good_rps for point in line if point.cores == 1), None)
    return [] if one is None else [(point.cores, one * point.cores) for point in line]


def route_style(points: Mapping[str, Sequence[CorePoint]], line: Sequence[CorePoint]) -> tuple[str, Any]:
    """(marker, line style) of a series: by its request's place among the chart's requests."""
    routes = list(dict.fromkeys(point.route for each in points.values() for point in each))
    return ROUTE_STYLES[routes.index(line[0].route) % len(ROUTE_STYLES)]


@styled
def throughput_latency_vs_cores(results: Run, out_dir: Path) -> list[Path]:
    """Good req/s (top, with each series' ideal) and p99 (bottom, log) against server cores."""
    points = core_points(results)
    colours = distinct_colours([line[0].backend for line in points.values()])
    figure, (rps_ax, p99_ax) = new_figure(height=6.5, nrows=2, sharex=True)
    for name, line in points.items():
        _draw_series(rps_ax, p99_ax, line, (colours[line[0].backend], *route_style(points, line)))
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
    rps_ax.set_title(chart_title(results, f"good req/s and p99 vs server cores at {counted(chart_users(results) or 0, 'user')}"))
    handles = _handles(points, colours)
    if len(handles) > INSIDE_LEGEND_MAX:  # beside the axes: inside, it would hide the lines and the notes
        figure.legend(handles=handles, fontsize=7, loc="outside right upper")
    else:
        rps_ax.legend(handles=handles, fontsize=7)
    draw_notes(rps_ax, pinning_notes(points) + shared_notes(points))
    note_failed(figure, failed_backends(results))
    return save_figure(figure, out_dir, "server_cores")


def _draw_series(rps_ax: Any, p99_ax: Any, line: Sequence[CorePoint], style: tuple[str, str, Any]) -> None:
    colour, marker, linestyle = style
    cores = [point.cores for point in line]
    rps_ax.plot(cores, [point.good_rps for point in line], color=colour, marker=marker, linestyle=linestyle)
    perfect = ideal(line)
    if len(perfect) > 1:
        rps_ax.plot(*zip(*perfect), color=colour, linestyle=":", linewidth=1, alpha=0.7)
    for point in (p for p in line if p.driver_bound):  # hollow: a floor, not capacity
        rps_ax.plot(point.cores, point.good_rps, marker=marker, markersize=9, color=colour, markerfacecolor="white",
                    markeredgewidth=2, zorder=4)
        rps_ax.annotate(DRIVER_BOUND, (point.cores, point.good_rps), xytext=(-6, 8), textcoords="offset points",
                        fontsize=8, color=colour, ha="right")
    drawn = [p for p in line if p.p99_us is not None]
    p99_ax.plot([p.cores for p in drawn], [ms(p.p99_us) for p in drawn], color=colour, marker=marker,
                linestyle="--")
    bounded = [(p.cores, ms(p.p99_us)) for p in drawn if p.p99_lower_bound]
    if bounded:
        p99_ax.plot(*zip(*bounded), linestyle="", marker=LOWER_BOUND_MARKER, markersize=9, color=colour, zorder=5)


def _handles(points: Mapping[str, Sequence[CorePoint]], colours: Mapping[str, str]) -> list[Line2D]:
    every = [point for line in points.values() for point in line]
    handles = []
    for name, line in points.items():
        marker, linestyle = route_style(points, line)
        handles.append(Line2D([], [], color=colours[line[0].backend], marker=marker, linestyle=linestyle,
                              label=backend_label(name) if line[0].route is None else name))
    if any(len(ideal(line)) > 1 for line in points.values()):
        handles.append(Line2D([], [], color="black", linestyle=":", linewidth=1,
                              label="ideal: linear from its one-core point"))
    if any(point.driver_bound for point in every):
        handles.append(Line2D([], [], color="black", marker="o", markerfacecolor="white", linestyle="",
                              label="driver-bound: a floor, not capacity"))
    if any(point.p99_lower_bound for point in every):
        handles.append(Line2D([], [], color="black", linestyle="", marker=LOWER_BOUND_MARKER, label=LOWER_BOUND_LABEL))
    return handles


def pinning_notes(points: Mapping[str, Sequence[CorePoint]]) -> list[str]:
    """One line per point whose server got fewer (or more) CPUs than its core count asked."""
    return [f"{backend_label(backend)} at {counted(point.cores, 'core')}: pinned to {counted(point.pinned, 'CPU')}"
            for backend, line in points.items() for point in line
            if point.pinned is not None and point.pinned != point.cores]


def shared_notes(points: Mapping[str, Sequence[CorePoint]]) -> list[str]:
    """One line per core count at which the server shared the driver's CPU, with the driver's
    largest share of the server's CPUs there."""
    by_cores: dict[int, float] = {}
    for line in points.values():
        for point in line:
            if point.driver_share is not None:
                by_cores[point.cores] = max(by_cores.get(point.cores, 0.0), point.driver_share)
    return [f"{cores} cores: shared the driver's CPU (driver up to {share:.1f}% of the server's CPUs"
            + (": figures may be low)" if share > SHARED_CPU_LOW_PERCENT else ")")
            for cores, share in sorted(by_cores.items())]


def draw_cores(results: Run, out_dir: Path) -> list[Path]:
    """The cores chart, when the run sweeps two or more core counts (none otherwise)."""
    return throughput_latency_vs_cores(results, out_dir) if has_core_sweep(results) else []
