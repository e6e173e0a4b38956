"""Charts of one run against users, drawn from its stored results only (measurement rule 7).

Every chart function takes the results document and a directory, writes NAME.png and
NAME.svg there, and returns the paths. Repetitions are summarised as the report and
summary.csv do: the median, with the min..max range as the error bar.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from matplotlib.lines import Line2D
from matplotlib.ticker import NullLocator

from harness.charts.style import (ERROR_COLOURS, backend_colour, backend_label, backend_order,
                                 chart_title, ms_format, new_figure, note_failed, save_figure,
                                 styled, thousands_format, users_axis)
from harness.results.metrics import Spread, merge_histograms, summarize
from harness.charts.idle import at_fewest_idle
from harness.results.steps import DRIVER_BOUND, ERROR_KINDS, HIGH_SPREAD, group_levels, median_of

# The spectrum's x axis: 0 .. 99.99%, i.e. 1/(1-q) from 1 to 10^4, sampled evenly in nines.
SPECTRUM_NINES = 4
SPECTRUM_POINTS_PER_NINE = 50
NINES_TICKS = {1: "0%", 10: "90%", 100: "99%", 1000: "99.9%", 10000: "99.99%"}


@dataclass(frozen=True)
class StepSummary:
    """The good repetitions of one backend at one load level, summarised."""

    backend: str
    users: int
    steps: tuple[Mapping[str, Any], ...]
    rps: Spread
    p50_us: float | None  # None when no repetition completed a request
    p99_us: float | None
    errors: dict[str, int]  # by kind, summed over the repetitions
    driver_bound: bool
    high_spread: bool
    cpu_percent: float | None
    rss_bytes: float | None
    starved: int = 0  # median users with no answer in a window: in no percentile


def note_starved(ax: Any, summaries: Mapping[str, Mapping[int, StepSummary]], users: int | None = None) -> None:
    """Say on the chart which backends left clients unanswered: a closed-loop latency
    counts only the answers, so a server serving one client while the rest wait looks
    fast. The count is the honest part of the picture."""
    lines = []
    for backend, by_users in summaries.items():
        for level, summary in by_users.items():
            if summary.starved and (users is None or level == users):
                lines.append(f"{backend_label(backend)} at {level} users: {summary.starved} of {level} "
                             "got no answer in a window (not in these latencies)")
    if lines:
        ax.text(0.99, 0.02, "\n".join(lines[:4]) + ("\n..." if len(lines) > 4 else ""), transform=ax.transAxes,
                ha="right", va="bottom", fontsize=7, color="#a00",
                bbox={"facecolor": "white", "alpha": 0.85, "edgecolor": "#a00", "linewidth": 0.5})


def summarize_steps(results: Mapping[str, Any]) -> dict[str, dict[int, StepSummary]]:
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


def _summary(backend: str, users: int, reps: list[Mapping[str, Any]]) -> StepSummary:
    rps = summarize([rep["rps"] for rep in reps])
    flags = {flag for rep in reps for flag in rep.get("flags") or ()}
    return StepSummary(
        backend=backend, users=users, steps=tuple(reps), rps=rps,
        p50_us=median_of(reps, "p50_us"), p99_us=median_of(reps, "p99_us"),
        errors={kind: sum((rep.get("errors") or {}).get(kind, 0) for rep in reps)
                for kind in ERROR_KINDS},
        driver_bound=DRIVER_BOUND in flags,
        high_spread=rps.high_spread or HIGH_SPREAD in flags,
        cpu_percent=median_of(reps, "cpu_percent", "server"),
        rss_bytes=median_of(reps, "rss_bytes", "server"),
        starved=int(median_of(reps, "starved_users") or 0),
    )


def failed_backends(results: Mapping[str, Any]) -> dict[str, str]:
    """Backends with nothing to draw, and why: failed to run, or no good step at all."""
    drawn = summarize_steps(results)
    failed = {name: (entry or {}).get("error") or "failed"
              for name, entry in (results.get("backends") or {}).items()
              if (entry or {}).get("status") == "failed"}
    good = {step["backend"] for step in results.get("steps", ()) if step.get("status") == "ok"}
    for step in results.get("steps", ()):
        if step["backend"] not in drawn and step["backend"] not in good and step["backend"] not in failed:
            failed[step["backend"]] = step.get("error") or "no successful step"
    return failed


def _all_users(summaries: Mapping[str, Mapping[int, StepSummary]]) -> list[int]:
    return sorted({users for by_users in summaries.values() for users in by_users})


@styled
def throughput_vs_users(results: Mapping[str, Any], out_dir: Path) -> list[Path]:
    """Median req/s per backend against users; bars span the repetitions' min..max."""
    summaries = summarize_steps(results)
    figure, ax = new_figure()
    for backend, by_users in summaries.items():
        colour, points = backend_colour(backend), list(by_users.values())
        medians = [p.rps.median for p in points]
        ax.errorbar([p.users for p in points], medians, color=colour, marker="o", capsize=3,
                    yerr=[[p.rps.median - p.rps.min for p in points],
                          [p.rps.max - p.rps.median for p in points]],
                    label=backend_label(backend))
        for point in (p for p in points if p.driver_bound):  # hollow: a floor, not capacity
            ax.plot(point.users, point.rps.median, marker="o", markersize=9, color=colour,
                    markerfacecolor="white", markeredgewidth=2, zorder=4)
            ax.annotate(DRIVER_BOUND, (point.users, point.rps.median), xytext=(-6, 8),
                        textcoords="offset points", fontsize=8, color=colour, ha="right")
    handles, _ = ax.get_legend_handles_labels()
    if any(p.driver_bound for by_users in summaries.values() for p in by_users.values()):
        handles.append(Line2D([], [], color="black", marker="o", markerfacecolor="white",
                              linestyle="", label="driver-bound: a floor, not capacity"))
    users_axis(ax, _all_users(summaries))
    ax.set_ylim(0, ax.get_ylim()[1] * 1.08)  # headroom for the driver-bound labels
    ax.yaxis.set_major_formatter(thousands_format())
    ax.set_ylabel("requests/s (median, min..max)")
    ax.set_title(chart_title(results, "throughput vs users"))
    if handles:
        ax.legend(handles=handles, fontsize=8)
    note_failed(figure, failed_backends(results))
    return save_figure(figure, out_dir, "throughput_vs_users")


@styled
def latency_vs_users(results: Mapping[str, Any], out_dir: Path) -> list[Path]:
    """Median p50 (solid) and p99 (dashed) per backend against users, log ms."""
    summaries = summarize_steps(results)
    figure, ax = new_figure()
    handles = []
    for backend, by_users in summaries.items():
        colour, points = backend_colour(backend), list(by_users.values())
        users = [p.users for p in points]
        ax.plot(users, [_ms(p.p50_us) for p in points], color=colour, marker="o")
        ax.plot(users, [_ms(p.p99_us) for p in points], color=colour, marker="o",
                linestyle="--", markerfacecolor="white")
        handles.append(Line2D([], [], color=colour, label=backend_label(backend)))
    handles += [Line2D([], [], color="black", label="p50"),
                Line2D([], [], color="black", linestyle="--", label="p99")]
    users_axis(ax, _all_users(summaries))
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(ms_format())
    ax.set_ylabel("latency, ms (log scale)")
    ax.set_title(chart_title(results, "latency vs users (p50 solid, p99 dashed)"))
    ax.legend(handles=handles, fontsize=8, ncols=2)
    note_starved(ax, summaries)
    note_failed(figure, failed_backends(results))
    return save_figure(figure, out_dir, "latency_vs_users")


def _ms(micros: float | None) -> float:
    """µs to ms for plotting; a missing value is NaN, which matplotlib leaves as a gap."""
    return math.nan if micros is None else micros / 1000


def percentile_spectrum(encoded: list[str]) -> tuple[list[float], list[float]]:
    """(x = 1/(1-q), latency ms) of the histograms merged, from q = 0 to 99.99%.

    One pass over the recorded buckets and a bisect per point: asking HdrHistogram for
    each of the 200 percentiles would walk its counts 200 times."""
    histogram = merge_histograms(encoded)
    total = histogram.get_total_count()
    if not total:
        return [], []
    values, cumulative, running = [], [], 0
    for item in histogram.get_recorded_iterator():
        running += item.count_at_value_iterated_to
        values.append(item.value_iterated_to)
        cumulative.append(running)
    xs, ys = [], []
    for step in range(SPECTRUM_NINES * SPECTRUM_POINTS_PER_NINE + 1):
        x = 10 ** (step / SPECTRUM_POINTS_PER_NINE)
        rank = max(1, math.ceil((1 - 1 / x) * total))
        xs.append(x)
        ys.append(values[min(bisect.bisect_left(cumulative, rank), len(values) - 1)] / 1000)
    return xs, ys


@styled
def latency_spectrum(results: Mapping[str, Any], out_dir: Path, *,
                     users: int | None = None) -> list[Path]:
    """The full percentile spectrum per backend at one load level (default: the highest).

    The x axis is in "nines" (x = 1/(1-q)), so 90%, 99%, 99.9% and 99.99% are evenly
    spaced and the tail, where the models differ most, gets most of the width."""
    summaries = summarize_steps(results)
    levels = _all_users(summaries)
    users = users if users is not None else (levels[-1] if levels else 0)
    figure, ax = new_figure()
    missing = {}
    for backend, by_users in summaries.items():
        if users not in by_users:
            missing[backend] = f"no result at {users} users"
            continue
        xs, ys = percentile_spectrum([s["histogram"] for s in by_users[users].steps if s.get("histogram")])
        ax.plot(xs, ys, color=backend_colour(backend), label=backend_label(backend))
    ax.set_xscale("log")
    ax.set_xlim(1, 10 ** SPECTRUM_NINES)
    ax.set_xticks(list(NINES_TICKS), labels=list(NINES_TICKS.values()))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("percentile (merged over repetitions)")
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(ms_format())
    ax.set_ylabel("latency, ms (log scale)")
    ax.set_title(chart_title(results, f"latency spectrum at {users} users"))
    if summaries:
        ax.legend(fontsize=8, loc="upper left")
    note_starved(ax, summaries, users)
    note_failed(figure, {**failed_backends(results), **missing})
    return save_figure(figure, out_dir, "latency_spectrum")


@styled
def timeseries(results: Mapping[str, Any], out_dir: Path) -> list[Path]:
    """Per load level, one panel per backend: req/s bars and p99 per second (repetition 0).

    A second with no completed request is shaded red: the stall an iterative server shows
    when one connection holds it."""
    summaries = summarize_steps(results)
    paths: list[Path] = []
    for users in _all_users(summaries):
        rows = [(b, by_users[users].steps[0]) for b, by_users in summaries.items() if users in by_users]
        figure, axes = new_figure(height=1.0 + 1.3 * len(rows), nrows=len(rows), sharex=True)
        axes = [axes] if len(rows) == 1 else list(axes)
        for ax, (backend, step) in zip(axes, rows):
            _timeseries_panel(ax, backend, step)
        axes[-1].set_xlabel("second of the measured window (repetition "
                            f"{rows[0][1].get('repetition', 0)})")
        figure.suptitle(chart_title(results, f"per second at {users} users"), fontsize=10)
        note_failed(figure, failed_backends(results))
        paths += save_figure(figure, out_dir, f"timeseries_u{users}")
    return paths


def _timeseries_panel(ax: Any, backend: str, step: Mapping[str, Any]) -> None:
    series = step.get("timeseries") or []
    seconds = [s["second"] for s in series]
    colour = backend_colour(backend)
    ax.bar(seconds, [s["requests"] for s in series], width=0.85, color=colour, alpha=0.75)
    ax.set_ylabel(f"{backend_label(backend)}\nreq/s (bars)", color=colour, fontsize=8)
    ax.set_ylim(bottom=0)
    ax.yaxis.set_major_formatter(thousands_format())
    stalls = [s["second"] for s in series if s["requests"] == 0]
    for second in stalls:
        ax.axvspan(second - 0.5, second + 0.5, color="#d62728", alpha=0.15, linewidth=0)
    if stalls:
        ax.text(stalls[0] - 0.4, ax.get_ylim()[1] * 0.5, "stall:\n0 req/s", color="#a00",
                fontsize=8)
    p99 = ax.twinx()  # linear from 0: a log axis would hide how big a post-stall spike is
    p99.plot(seconds, [_ms(s["p99_us"]) for s in series], color="black", marker=".", linewidth=1)
    p99.set_ylim(bottom=0)
    p99.yaxis.set_major_formatter(ms_format())
    p99.grid(False)
    p99.tick_params(labelsize=7)
    p99.set_ylabel("p99 ms (line)", fontsize=7)


@styled
def resources(results: Mapping[str, Any], out_dir: Path) -> list[Path]:
    """Server CPU % and resident memory (MiB) per backend against users (medians)."""
    summaries = summarize_steps(results)
    figure, (cpu, rss) = new_figure(ncols=2)
    for backend, by_users in summaries.items():
        points, colour = list(by_users.values()), backend_colour(backend)
        users = [p.users for p in points]
        cpu.plot(users, [p.cpu_percent if p.cpu_percent is not None else math.nan for p in points],
                 color=colour, marker="o", label=backend_label(backend))
        rss.plot(users, [p.rss_bytes / 2 ** 20 if p.rss_bytes is not None else math.nan
                         for p in points], color=colour, marker="o")
    for ax in (cpu, rss):
        users_axis(ax, _all_users(summaries))
        ax.set_ylim(bottom=0)
    cpu.set_ylabel("server CPU % (100 = one CPU)")
    rss.set_ylabel("server memory, MiB (RSS; PSS summed over processes)")
    figure.suptitle(chart_title(results, "server resources vs users"), fontsize=10)
    if summaries:
        cpu.legend(fontsize=8)
    note_failed(figure, failed_backends(results))
    return save_figure(figure, out_dir, "resources")


@styled
def errors(results: Mapping[str, Any], out_dir: Path) -> list[Path]:
    """Errors by kind per backend, stacked, summed over every load level and repetition."""
    summaries = summarize_steps(results)
    names = list(summaries)
    totals = {kind: [sum(p.errors[kind] for p in summaries[b].values()) for b in names]
              for kind in ERROR_KINDS}
    requests = [sum(s["requests"] for p in summaries[b].values() for s in p.steps) for b in names]
    figure, ax = new_figure()
    bottom = [0] * len(names)
    for kind in ERROR_KINDS:
        ax.bar(range(len(names)), totals[kind], bottom=bottom, color=ERROR_COLOURS[kind], label=kind)
        bottom = [b + v for b, v in zip(bottom, totals[kind])]
    for index, (total, sent) in enumerate(zip(bottom, requests)):
        ax.annotate(f"{total:,} of {sent:,}", (index, total), xytext=(0, 3),
                    textcoords="offset points", ha="center", fontsize=8)
    ax.set_xticks(range(len(names)), labels=[backend_label(b) for b in names])
    for tick, name in zip(ax.get_xticklabels(), names):
        tick.set_color(backend_colour(name))
    ax.set_ylim(0, max(bottom + [1]) * 1.15)
    ax.set_ylabel("errors (all load levels and repetitions)")
    ax.set_title(chart_title(results, "errors by kind"))
    ax.legend(fontsize=8, title="kind", title_fontsize=8)
    note_failed(figure, failed_backends(results))
    return save_figure(figure, out_dir, "errors")


def draw_all(results: Mapping[str, Any], out_dir: Path) -> list[Path]:
    """Every chart of one run into out_dir; the written paths, PNG and SVG of each."""
    from harness.charts.idle import draw_idle
    from harness.charts.open_loop import draw_open_loop

    paths: list[Path] = []
    if summarize_steps(results):
        for draw in (throughput_vs_users, latency_vs_users, latency_spectrum, timeseries,
                     resources, errors):
            paths += draw(results, out_dir)
    return paths + draw_open_loop(results, out_dir) + draw_idle(results, out_dir)
