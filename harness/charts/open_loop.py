"""Open-loop charts: latency and achieved rate against the offered rate.

Closed-loop charts put users on the x axis; an open-loop level is an offered rate, so
these two charts put that on x. Latency is the corrected one (from each request's
intended send time), with the uncorrected p99 dotted beside it: where they part, a
closed-loop tool would have hidden the queueing. Past capacity the corrected curve turns
up like a hockey stick.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from harness.charts.style import (backend_colour, backend_label, backend_order, chart_title, ms_format, new_figure,
                                 save_figure, styled, thousands_format)
from harness.charts.idle import at_fewest_idle
from harness.results.steps import group_levels, median_of


def open_loop_levels(results: Mapping[str, Any]) -> dict[str, dict[float, list[Mapping[str, Any]]]]:
    """backend -> offered rate -> its good open-loop steps."""
    levels: dict[str, dict[float, list[Mapping[str, Any]]]] = {}
    for (backend, _, rate, _), reps in group_levels(at_fewest_idle(results)).items():  # c10k's idle sweep:
        if rate:  # a chart of its own
            levels.setdefault(backend, {}).setdefault(rate, []).extend(reps)
    return {name: dict(sorted(levels[name].items())) for name in backend_order(list(levels))}


def _rate_axis(ax: Any, rates: list[float]) -> None:
    ax.set_xscale("log")
    ax.set_xticks(rates, labels=[f"{r:,.0f}" for r in rates])
    ax.minorticks_off()
    ax.set_xlabel("offered rate (requests/s, log scale)")


@styled
def latency_vs_rate(results: Mapping[str, Any], out_dir: Path) -> list[Path]:
    """Corrected p50 (solid) and p99 (dashed), uncorrected p99 (dotted), against offered rate."""
    levels = open_loop_levels(results)
    figure, ax = new_figure()
    for backend, by_rate in levels.items():
        rates, colour = list(by_rate), backend_colour(backend)
        ms = lambda key, nested=None: [(median_of(s, key, nested) or float("nan")) / 1000 for s in by_rate.values()]  # noqa: E731
        ax.plot(rates, ms("p50_us"), color=colour, marker="o", label=f"{backend_label(backend)} p50")
        ax.plot(rates, ms("p99_us"), color=colour, marker="o", linestyle="--", label=f"{backend_label(backend)} p99")
        ax.plot(rates, ms("p99_us", "uncorrected"), color=colour, linestyle=":", alpha=0.7,
                label=f"{backend_label(backend)} p99 uncorrected")
    _rate_axis(ax, sorted({r for by_rate in levels.values() for r in by_rate}))
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(ms_format())
    ax.set_ylabel("latency from intended send (ms, log)")
    ax.set_title(chart_title(results, "open loop: latency vs offered rate"))
    ax.legend(fontsize=7, ncols=2)
    return save_figure(figure, out_dir, "latency_vs_rate")


@styled
def achieved_vs_offered(results: Mapping[str, Any], out_dir: Path) -> list[Path]:
    """Achieved req/s against offered: on the diagonal until the server saturates."""
    levels = open_loop_levels(results)
    figure, ax = new_figure()
    rates = sorted({r for by_rate in levels.values() for r in by_rate})
    ax.plot(rates, rates, color="#999", linestyle=":", label="offered")
    for backend, by_rate in levels.items():
        ax.plot(list(by_rate), [median_of(s, "rps") for s in by_rate.values()], color=backend_colour(backend),
                marker="o", label=backend_label(backend))
    _rate_axis(ax, rates)
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(thousands_format())
    ax.set_ylabel("achieved requests/s (log)")
    ax.set_title(chart_title(results, "open loop: achieved vs offered rate"))
    ax.legend(fontsize=8)
    return save_figure(figure, out_dir, "achieved_vs_offered")


def draw_open_loop(results: Mapping[str, Any], out_dir: Path) -> list[Path]:
    if not open_loop_levels(results):
        return []
    return latency_vs_rate(results, out_dir) + achieved_vs_offered(results, out_dir)
