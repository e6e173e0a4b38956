"""Charts of one run against users, drawn from its stored results only (measurement rule 7).

Every chart function takes the results document and a directory, writes NAME.png and
NAME.svg there, and returns the paths. Throughput is the median over repetitions, with the
min..max range as the error bar, and goodput (2xx/3xx answers) beside it where it differs;
percentiles and CPU cost are those of the repetition summary.csv shows (the median by
goodput), and a percentile that reaches censored waits is drawn as a lower bound (a triangle).
Every latency chart says which latency it is (style.LATENCY, RESPONSE_TIME, SERVICE_TIME).
"""

from __future__ import annotations

import bisect
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

from matplotlib.lines import Line2D
from matplotlib.ticker import NullLocator

from harness.charts.levels import StepSummary, all_users, failed_backends, starved_notes, summarize_steps
from harness.charts.notes import draw_notes
from harness.charts.style import (ERROR_COLOURS, LATENCY, LOWER_BOUND_LABEL, LOWER_BOUND_MARKER, backend_colour,
                                  backend_label, chart_title, ms_format, new_figure, note_failed,
                                  save_figure, styled, thousands_format, users_axis)
from harness.charts.usl_curve import draw_usl_fits, usl_handles
from harness.results.metrics import merge_histograms
from harness.results.model import Run, Step
from harness.results.units import ms
from harness.results.steps import DRIVER_BOUND, ERROR_KINDS
from harness.results.words import counted

# The spectrum's x axis: 0 .. 99.99%, i.e. 1/(1-q) from 1 to 10^4, sampled evenly in nines.
SPECTRUM_NINES = 4
SPECTRUM_POINTS_PER_NINE = 50
NINES_TICKS = {1: "0%", 10: "90%", 100: "99%", 1000: "99.9%", 10000: "99.99%"}


def note_starved(ax: Any, summaries: Mapping[str, Mapping[int, StepSummary]], users: int | None = None) -> None:
    """Say on the chart which backends left clients unanswered: a closed-loop latency of
    answers only makes a server serving one client while the rest wait look fast. Every note
    is drawn, or counted: what does not fit is in the report (notes.chart_lines)."""
    draw_notes(ax, starved_notes(summaries, users))


@styled
def throughput_vs_users(results: Run, out_dir: Path) -> list[Path]:
    """Median req/s per backend against users; bars span the repetitions' min..max. Where
    some answers were not 2xx/3xx, goodput is drawn beside it: dashed, hollow markers. A
    backend whose levels fit the USL (usl_curve) has its curve dotted, its peak a diamond."""
    summaries = summarize_steps(results)
    figure, ax = new_figure()
    for backend, by_users in summaries.items():
        colour, points = backend_colour(backend), list(by_users.values())
        medians = [p.rps.median for p in points]
        ax.errorbar([p.users for p in points], medians, color=colour, marker="o", capsize=3,
                    yerr=[[p.rps.median - p.rps.min for p in points],
                          [p.rps.max - p.rps.median for p in points]],
                    label=backend_label(backend))
        if any(p.good_differs() for p in points):
            ax.plot([p.users for p in points],
                    [p.good_rps.median if p.good_rps else math.nan for p in points],
                    color=colour, marker="o", linestyle="--", markerfacecolor="white", markersize=5)
        for point in (p for p in points if p.driver_bound):  # hollow: a floor, not capacity
            ax.plot(point.users, point.rps.median, marker="o", markersize=9, color=colour,
                    markerfacecolor="white", markeredgewidth=2, zorder=4)
            ax.annotate(DRIVER_BOUND, (point.users, point.rps.median), xytext=(-6, 8),
                        textcoords="offset points", fontsize=8, color=colour, ha="right")
    fits = draw_usl_fits(ax, summaries)
    handles, _ = ax.get_legend_handles_labels()
    points = [p for by_users in summaries.values() for p in by_users.values()]
    if any(p.good_differs() for p in points):
        handles.append(Line2D([], [], color="black", marker="o", markerfacecolor="white", markersize=5,
                              linestyle="--", label="good req/s (2xx/3xx answers)"))
    elif points and all(p.good_rps is not None for p in points):
        handles.append(Line2D([], [], linestyle="", label="every answer 2xx/3xx: good req/s = req/s"))
    if any(p.driver_bound for p in points):
        handles.append(Line2D([], [], color="black", marker="o", markerfacecolor="white",
                              linestyle="", label="driver-bound: a floor, not capacity"))
    handles += usl_handles(fits, summaries)
    users_axis(ax, all_users(summaries))
    ax.set_ylim(0, ax.get_ylim()[1] * 1.08)  # headroom for the driver-bound labels
    ax.yaxis.set_major_formatter(thousands_format())
    ax.set_ylabel("requests/s (median, min..max)")
    ax.set_title(chart_title(results, "throughput vs users"))
    if handles:
        ax.legend(handles=handles, fontsize=8)
    note_failed(figure, failed_backends(results))
    return save_figure(figure, out_dir, "throughput_vs_users")


def mark_lower_bounds(ax: Any, xs: Sequence[float], ys: Sequence[float], bounds: Sequence[bool], colour: str) -> bool:
    """Draw an upward triangle on each point that is a lower bound; whether any was."""
    marked = [(x, y) for x, y, bound in zip(xs, ys, bounds) if bound and not math.isnan(y)]
    if marked:
        ax.plot(*zip(*marked), linestyle="", marker=LOWER_BOUND_MARKER, markersize=9, color=colour, zorder=5)
    return bool(marked)


def lower_bound_handle() -> Line2D:
    return Line2D([], [], color="black", linestyle="", marker=LOWER_BOUND_MARKER, label=LOWER_BOUND_LABEL)


@styled
def latency_vs_users(results: Run, out_dir: Path) -> list[Path]:
    """p50 (solid) and p99 (dashed) per backend against users, log ms: of the repetition
    with the median goodput; a triangle where the percentile is a lower bound."""
    summaries = summarize_steps(results)
    figure, ax = new_figure()
    handles, bounded = [], False
    for backend, by_users in summaries.items():
        colour, points = backend_colour(backend), list(by_users.values())
        users = [p.users for p in points]
        p50, p99 = [ms(p.p50_us) for p in points], [ms(p.p99_us) for p in points]
        ax.plot(users, p50, color=colour, marker="o")
        ax.plot(users, p99, color=colour, marker="o", linestyle="--", markerfacecolor="white")
        bounded |= mark_lower_bounds(ax, users, p50, [p.p50_lower_bound for p in points], colour)
        bounded |= mark_lower_bounds(ax, users, p99, [p.p99_lower_bound for p in points], colour)
        handles.append(Line2D([], [], color=colour, label=backend_label(backend)))
    handles += [Line2D([], [], color="black", label="p50"),
                Line2D([], [], color="black", linestyle="--", label="p99")]
    if bounded:
        handles.append(lower_bound_handle())
    users_axis(ax, all_users(summaries))
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(ms_format())
    ax.set_ylabel(f"{LATENCY}, ms (log scale)")
    ax.set_title(chart_title(results, f"{LATENCY} vs users (p50 solid, p99 dashed)"))
    ax.legend(handles=handles, fontsize=8, ncols=2)
    note_starved(ax, summaries)
    note_failed(figure, failed_backends(results))
    return save_figure(figure, out_dir, "latency_vs_users")


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
        ys.append(ms(values[min(bisect.bisect_left(cumulative, rank), len(values) - 1)]))
    return xs, ys


@styled
def latency_spectrum(results: Run, out_dir: Path, *,
                     users: int | None = None) -> list[Path]:
    """The full percentile spectrum per backend at one load level (default: the highest).

    The x axis is in "nines" (x = 1/(1-q)), so 90%, 99%, 99.9% and 99.99% are evenly
    spaced and the tail, where the models differ most, gets most of the width."""
    summaries = summarize_steps(results)
    levels = all_users(summaries)
    users = users if users is not None else (levels[-1] if levels else 0)
    figure, ax = new_figure()
    missing, bounded = {}, False
    for backend, by_users in summaries.items():
        if users not in by_users:
            missing[backend] = f"no result at {counted(users, 'user')}"
            continue
        steps = by_users[users].steps
        histograms = [s.histogram for s in steps if s.histogram]
        if not histograms:  # a run stored without them (a hand-made or trimmed results.json)
            missing[backend] = f"no latency histogram stored at {counted(users, 'user')}"
            continue
        xs, ys = percentile_spectrum(histograms)
        ax.plot(xs, ys, color=backend_colour(backend), label=backend_label(backend))
        floors = [s.censored_min_us for s in steps if s.censored and s.censored_min_us is not None]
        if floors:  # from the smallest censored wait up, the merged percentiles are lower bounds
            above = [(x, y) for x, y in zip(xs, ys) if y * 1000 >= min(floors)]
            if above:
                ax.plot(*zip(*above), linestyle="", marker=LOWER_BOUND_MARKER, markevery=max(1, len(above) // 8),
                        markersize=6, color=backend_colour(backend))
                bounded = True
    ax.set_xscale("log")
    ax.set_xlim(1, 10 ** SPECTRUM_NINES)
    ax.set_xticks(list(NINES_TICKS), labels=list(NINES_TICKS.values()))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("percentile (merged over repetitions)")
    ax.set_yscale("log")
    if not ax.lines:
        ax.set_ylim(0.01, 1)  # nothing drawn: a log axis needs some positive range of its own
    ax.yaxis.set_major_formatter(ms_format())
    ax.set_ylabel(f"{LATENCY}, ms (log scale)")
    ax.set_title(chart_title(results, f"{LATENCY} spectrum at {counted(users, 'user')}"))
    if summaries:
        handles, _ = ax.get_legend_handles_labels()
        ax.legend(handles=handles + ([lower_bound_handle()] if bounded else []), fontsize=8, loc="upper left")
    note_starved(ax, summaries, users)
    note_failed(figure, {**failed_backends(results), **missing})
    return save_figure(figure, out_dir, "latency_spectrum")


@styled
def timeseries(results: Run, out_dir: Path) -> list[Path]:
    """Per load level, one panel per backend: req/s bars and p99 per second (repetition 0).

    A second with no completed request is shaded red: the stall an iterative server shows
    when one connection holds it."""
    summaries = summarize_steps(results)
    paths: list[Path] = []
    for users in all_users(summaries):
        rows = [(b, by_users[users].steps[0]) for b, by_users in summaries.items() if users in by_users]
        figure, axes = new_figure(height=1.0 + 1.3 * len(rows), nrows=len(rows), sharex=True)
        axes = [axes] if len(rows) == 1 else list(axes)
        for ax, (backend, step) in zip(axes, rows):
            _timeseries_panel(ax, backend, step)
        axes[-1].set_xlabel("second of the measured window (repetition "
                            f"{rows[0][1].repetition})")
        figure.suptitle(chart_title(results, f"per second at {counted(users, 'user')}"), fontsize=10)
        note_failed(figure, failed_backends(results))
        paths += save_figure(figure, out_dir, f"timeseries_u{users}")
    return paths


def _timeseries_panel(ax: Any, backend: str, step: Step) -> None:
    series = step.timeseries
    seconds = [s.second for s in series]
    colour = backend_colour(backend)
    ax.bar(seconds, [s.requests for s in series], width=0.85, color=colour, alpha=0.75)
    ax.set_ylabel(f"{backend_label(backend)}\nreq/s (bars)", color=colour, fontsize=8)
    ax.set_ylim(bottom=0)
    ax.yaxis.set_major_formatter(thousands_format())
    stalls = [s.second for s in series if s.requests == 0]
    for second in stalls:
        ax.axvspan(second - 0.5, second + 0.5, color="#d62728", alpha=0.15, linewidth=0)
    if stalls:
        ax.text(stalls[0] - 0.4, ax.get_ylim()[1] * 0.5, "stall:\n0 req/s", color="#a00",
                fontsize=8)
    p99 = ax.twinx()  # linear from 0: a log axis would hide how big a post-stall spike is
    p99.plot(seconds, [ms(s.p99_us) for s in series], color="black", marker=".", linewidth=1)
    p99.set_ylim(bottom=0)
    p99.yaxis.set_major_formatter(ms_format())
    p99.grid(False)
    p99.tick_params(labelsize=7)
    p99.set_ylabel(f"p99 {LATENCY}\nms (line)", fontsize=7)


@styled
def resources(results: Run, out_dir: Path) -> list[Path]:
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
        users_axis(ax, all_users(summaries))
        ax.set_ylim(bottom=0)
    cpu.set_ylabel("server CPU % (100 = one CPU)")
    rss.set_ylabel("server memory, MiB\n(PSS of a process tree, RSS of one process)")
    figure.suptitle(chart_title(results, "server resources vs users"), fontsize=10)
    if summaries:
        cpu.legend(fontsize=8)
    note_failed(figure, failed_backends(results))
    return save_figure(figure, out_dir, "resources")


@styled
def errors(results: Run, out_dir: Path) -> list[Path]:
    """Errors by kind per backend, stacked, summed over every load level and repetition."""
    summaries = summarize_steps(results)
    names = list(summaries)
    totals = {kind: [sum(p.errors[kind] for p in summaries[b].values()) for b in names]
              for kind in ERROR_KINDS}
    requests = [sum(s.requests for p in summaries[b].values() for s in p.steps) for b in names]
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


def draw_all(results: Run, out_dir: Path) -> list[Path]:
    """Every chart of one run into out_dir; the written paths, PNG and SVG of each."""
    from harness.charts.capacity import draw_capacity
    from harness.charts.cores import draw_cores
    from harness.charts.cost import draw_cost
    from harness.charts.idle import draw_idle
    from harness.charts.open_loop import draw_open_loop
    from harness.charts.round_trip import draw_round_trip

    paths: list[Path] = []
    if summarize_steps(results):
        for draw in (throughput_vs_users, latency_vs_users, latency_spectrum, timeseries,
                     resources, errors):
            paths += draw(results, out_dir)
    return (paths + draw_cost(results, out_dir) + draw_open_loop(results, out_dir) + draw_idle(results, out_dir)
            + draw_cores(results, out_dir) + draw_round_trip(results, out_dir) + draw_capacity(results, out_dir))
