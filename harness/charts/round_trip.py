"""Good req/s and p99 against the round trip of an emulated link ([network] rtt_ms), one line
per series (a backend, under one interpreter): which models keep their throughput as the
clients move away, and which hit a cap.

By Little's law N closed-loop users, each waiting a round trip per request, can ask for at
most N / RTT requests a second: the dashed line. A model that keeps a connection per thread,
process or greenlet, or an event loop, follows it down; one that serves a connection at a
time, or a pool's few, falls below it to connections / RTT. Drawn at the run's highest
closed-loop user level, from the steps harness.charts.sweep picks, with good req/s and p99 the
medians over the repetitions. The round trip is the
configured one; each step's measured one is in its record, flagged link-off past 10%.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from matplotlib.lines import Line2D

from harness.charts.levels import failed_backends
from harness.charts.sweep import by_series, has_sweep, measured, top_users
from harness.charts.style import (LATENCY, LOWER_BOUND_LABEL, LOWER_BOUND_MARKER, backend_label, chart_title,
                                  distinct_colours, ms_format, new_figure, note_failed, save_figure,
                                  styled, thousands_format)
from harness.results.model import Run, Step
from harness.results.units import ms
from harness.results.words import counted


@dataclass(frozen=True)
class RttPoint:
    """One series at one round trip, at the chart's user level, over its good repetitions."""

    rtt_ms: float
    good_rps: float
    p99_us: float | None
    p99_lower_bound: bool
    driver_bound: bool
    backend: str


def _rtt(step: Step) -> float | None:
    return step.rtt_ms


def has_rtt_sweep(results: Run) -> bool:
    """Whether the run's closed-loop steps ran over two or more round trips."""
    return has_sweep(results, _rtt)


def chart_users(results: Run) -> int | None:
    return top_users(results, _rtt)


def rtt_points(results: Run) -> dict[str, list[RttPoint]]:
    """series (without its round trip) -> its points by round trip; our backends in the usual order."""
    return {name: [_point(rtt, reps) for rtt, reps in line.items()]
            for name, line in by_series(results, _rtt, lambda step: step.without_rtt).items()}


def _point(rtt: float, reps: Sequence[Step]) -> RttPoint:
    return RttPoint(rtt, **vars(measured(reps)), backend=reps[0].backend)


def littles_bound(users: int, rtt_ms: float) -> float | None:
    """The most `users` closed-loop users a round trip away can ask for, per second (None at 0 ms)."""
    return users / (rtt_ms / 1000) if rtt_ms > 0 else None


@styled
def throughput_latency_vs_rtt(results: Run, out_dir: Path) -> list[Path]:
    """Good req/s (top, log, with users / RTT dashed) and p99 (bottom, log) against the round trip."""
    points = rtt_points(results)
    users = chart_users(results) or 0
    colours = distinct_colours([line[0].backend for line in points.values()])
    figure, (rps_ax, p99_ax) = new_figure(height=6.5, nrows=2, sharex=True)
    for line in points.values():
        _draw_series(rps_ax, p99_ax, line, colours[line[0].backend])
    rtts = sorted({point.rtt_ms for line in points.values() for point in line})
    bound = [(rtt, littles_bound(users, rtt)) for rtt in rtts if rtt > 0]
    rps_ax.plot([rtt for rtt, _ in bound], [rps for _, rps in bound], color="black", linestyle="--", linewidth=1)
    p99_ax.set_xticks(rtts, labels=[f"{rtt:g}" for rtt in rtts])
    p99_ax.set_xlabel("round trip of the emulated link, ms (as configured)")
    rps_ax.set_yscale("log")
    rps_ax.yaxis.set_major_formatter(thousands_format())
    rps_ax.set_ylabel("good requests/s (median, log scale)")
    p99_ax.set_yscale("log")
    p99_ax.yaxis.set_major_formatter(ms_format())
    p99_ax.set_ylabel(f"p99 {LATENCY}, ms\n(median, log scale)")
    rps_ax.set_title(chart_title(results, f"good req/s and p99 vs round trip at {counted(users, 'user')}"))
    rps_ax.legend(handles=_handles(points, colours, users), fontsize=7)
    note_failed(figure, failed_backends(results))
    return save_figure(figure, out_dir, "round_trip")


def _draw_series(rps_ax: Any, p99_ax: Any, line: Sequence[RttPoint], colour: str) -> None:
    rtts = [point.rtt_ms for point in line]
    rps_ax.plot(rtts, [point.good_rps for point in line], color=colour, marker="o")
    for point in (p for p in line if p.driver_bound):  # hollow: a floor, not capacity
        rps_ax.plot(point.rtt_ms, point.good_rps, marker="o", markersize=9, color=colour, markerfacecolor="white",
                    markeredgewidth=2, zorder=4)
    drawn = [p for p in line if p.p99_us is not None]
    p99_ax.plot([p.rtt_ms for p in drawn], [ms(p.p99_us) for p in drawn], color=colour, marker="o", linestyle="--")
    bounded = [(p.rtt_ms, ms(p.p99_us)) for p in drawn if p.p99_lower_bound]
    if bounded:
        p99_ax.plot(*zip(*bounded), linestyle="", marker=LOWER_BOUND_MARKER, markersize=9, color=colour, zorder=5)


def _handles(points: dict[str, list[RttPoint]], colours: dict[str, str], users: int) -> list[Line2D]:
    every = [point for line in points.values() for point in line]
    handles = [Line2D([], [], color=colours[line[0].backend], marker="o", label=backend_label(name))
               for name, line in points.items()]
    handles.append(Line2D([], [], color="black", linestyle="--", linewidth=1,
                          label=f"{counted(users, 'user')} / round trip: the most they can ask (Little's law)"))
    if any(point.driver_bound for point in every):
        handles.append(Line2D([], [], color="black", marker="o", markerfacecolor="white", linestyle="",
                              label="driver-bound: a floor, not capacity"))
    if any(point.p99_lower_bound for point in every):
        handles.append(Line2D([], [], color="black", linestyle="", marker=LOWER_BOUND_MARKER, label=LOWER_BOUND_LABEL))
    return handles


def draw_round_trip(results: Run, out_dir: Path) -> list[Path]:
    """The round-trip chart, when the run sweeps two or more round trips (none otherwise)."""
    return throughput_latency_vs_rtt(results, out_dir) if has_rtt_sweep(results) else []
