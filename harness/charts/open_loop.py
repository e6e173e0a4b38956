"""Open-loop charts: latency and achieved rate against the offered rate.

Closed-loop charts put users on the x axis; an open-loop level is an offered rate, so
these two charts put that on x. Latency is response time (from each request's intended send
time: coordinated omission corrected), with the service time p99 (from the actual send, what a
closed-loop tool reports) dotted beside it: where they part, a closed-loop tool would have
hidden the queueing. Past capacity the response time turns up like a hockey stick. Percentiles
are the repetition summary.csv shows (the median by goodput); a triangle marks a lower bound.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import math

from matplotlib.lines import Line2D

from harness.charts.notes import draw_notes
from harness.charts.style import (LOWER_BOUND_LABEL, LOWER_BOUND_MARKER, RESPONSE_TIME, SERVICE_TIME, backend_colour,
                                  backend_label, backend_order, chart_title, ms_format, new_figure, save_figure,
                                  styled, thousands_format)
from harness.charts.idle import at_fewest_idle
from harness.results.model import Run, Step
from harness.results.units import ms
from harness.results.steps import group_levels, median_of
from harness.results.summary import load_label, lower_bound, pick_repetition


def open_loop_levels(results: Run) -> dict[str, dict[float, list[Step]]]:
    """backend -> offered rate -> its good open-loop steps."""
    levels: dict[str, dict[float, list[Step]]] = {}
    for (backend, _, rate, _), reps in group_levels(at_fewest_idle(results)).items():  # c10k's idle sweep:
        if rate:  # a chart of its own
            levels.setdefault(backend, {}).setdefault(rate, []).extend(reps)
    return {name: dict(sorted(levels[name].items())) for name in backend_order(list(levels))}


def _rate_axis(ax: Any, rates: list[float]) -> None:
    ax.set_xscale("log")
    ax.set_xticks(rates, labels=[f"{r:,.0f}" for r in rates])
    ax.minorticks_off()
    ax.set_xlabel("offered rate (requests/s, log scale)")


def dropped_notes(levels: Mapping[str, Mapping[float, list[Step]]]) -> list[str]:
    """One line per backend and rate whose requests were due but never sent: their wait is
    only a lower bound in the response time, and they are in no throughput."""
    lines = []
    for backend, by_rate in levels.items():
        for rate, steps in by_rate.items():
            dropped = sum(step.dropped or 0 for step in steps)
            if dropped:
                lines.append(f"{backend_label(backend)} at {load_label(0, rate)}: {dropped:,} requests due were "
                             f"never sent (over {len(steps)} repetitions)")
    return lines


@styled
def latency_vs_rate(results: Run, out_dir: Path) -> list[Path]:
    """Response time p50 (solid) and p99 (dashed), service time p99 (dotted), against offered rate."""
    levels = open_loop_levels(results)
    figure, ax = new_figure()
    bounded = False
    for backend, by_rate in levels.items():
        rates, colour = list(by_rate), backend_colour(backend)
        chosen = [pick_repetition(steps) for steps in by_rate.values()]
        for key, style in (("p50_us", "-"), ("p99_us", "--")):
            ys = [ms(step.percentile(key)) for step in chosen]
            ax.plot(rates, ys, color=colour, marker="o", linestyle=style,
                    label=f"{backend_label(backend)} {key[:3]}")
            marked = [(r, y) for r, y, step in zip(rates, ys, chosen) if lower_bound(step, key) and not math.isnan(y)]
            if marked:
                ax.plot(*zip(*marked), linestyle="", marker=LOWER_BOUND_MARKER, markersize=9, color=colour, zorder=5)
                bounded = True
        ax.plot(rates, [ms(step.uncorrected.p99_us if step.uncorrected else None) for step in chosen], color=colour,
                linestyle=":", alpha=0.7, label=f"{backend_label(backend)} p99 service time")
    _rate_axis(ax, sorted({r for by_rate in levels.values() for r in by_rate}))
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(ms_format())
    ax.set_ylabel(f"{RESPONSE_TIME}, ms (log)")
    ax.set_title(chart_title(results, f"open loop: {RESPONSE_TIME} vs offered rate"))
    handles, _ = ax.get_legend_handles_labels()
    handles.append(Line2D([], [], color="black", linestyle=":", label=f"dotted: p99 {SERVICE_TIME}"))
    if bounded:
        handles.append(Line2D([], [], color="black", linestyle="", marker=LOWER_BOUND_MARKER, label=LOWER_BOUND_LABEL))
    ax.legend(handles=handles, fontsize=7, ncols=2)
    draw_notes(ax, dropped_notes(levels))
    return save_figure(figure, out_dir, "latency_vs_rate")


@styled
def achieved_vs_offered(results: Run, out_dir: Path) -> list[Path]:
    """Achieved req/s against offered: on the diagonal until the server saturates; goodput
    dashed beside it where some answers were not 2xx/3xx."""
    levels = open_loop_levels(results)
    figure, ax = new_figure()
    rates = sorted({r for by_rate in levels.values() for r in by_rate})
    ax.plot(rates, rates, color="#999", linestyle=":", label="offered")
    any_good = False
    for backend, by_rate in levels.items():
        achieved = [median_of(step.rps for step in s) for s in by_rate.values()]
        ax.plot(list(by_rate), achieved, color=backend_colour(backend), marker="o", label=backend_label(backend))
        good = [median_of(step.good_rps for step in s) for s in by_rate.values()]
        measured = [g for g in good if g is not None]  # drawn only where every rate has a goodput
        if len(measured) == len(good) and any(abs(g - (a or 0)) > 0.005 * max(a or 0, 1e-9)
                                              for g, a in zip(measured, achieved)):
            ax.plot(list(by_rate), [max(g, 0.1) for g in measured], color=backend_colour(backend), marker="o",
                    linestyle="--", markerfacecolor="white", markersize=5)  # log axis: 0 drawn at its floor
            any_good = True
    _rate_axis(ax, rates)
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(thousands_format())
    ax.set_ylabel("achieved requests/s (median, log)")
    ax.set_title(chart_title(results, "open loop: achieved vs offered rate"))
    handles, _ = ax.get_legend_handles_labels()
    if any_good:
        handles.append(Line2D([], [], color="black", marker="o", markerfacecolor="white", markersize=5,
                              linestyle="--", label="good req/s (2xx/3xx answers)"))
    ax.legend(handles=handles, fontsize=8)
    draw_notes(ax, dropped_notes(levels))
    return save_figure(figure, out_dir, "achieved_vs_offered")


def draw_open_loop(results: Run, out_dir: Path) -> list[Path]:
    if not open_loop_levels(results):
        return []
    return latency_vs_rate(results, out_dir) + achieved_vs_offered(results, out_dir)
