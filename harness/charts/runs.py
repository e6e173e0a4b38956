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
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from matplotlib.lines import Line2D
from matplotlib.ticker import NullLocator

from harness.charts.notes import draw_notes, starved_text
from harness.charts.style import (ERROR_COLOURS, LATENCY, LOWER_BOUND_LABEL, LOWER_BOUND_MARKER, backend_colour,
                                  backend_label, backend_order, chart_title, ms_format, new_figure, note_failed,
                                  save_figure, styled, thousands_format, users_axis)
from harness.results.metrics import Spread, merge_histograms, summarize
from harness.charts.idle import at_fewest_idle
from harness.results.steps import DRIVER_BOUND, ERROR_KINDS, HIGH_SPREAD, group_levels, median_of
from harness.results.summary import load_label, lower_bound, pick_repetition, server_memory, summary_rows

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
    p50_us: float | None  # of the repetition with the median goodput; None: no completed request
    p99_us: float | None
    errors: dict[str, int]  # by kind, summed over the repetitions
    driver_bound: bool
    high_spread: bool
    cpu_percent: float | None
    rss_bytes: float | None  # median memory: PSS of a process tree, else RSS (summary.server_memory)
    starved: int = 0  # the most users with no answer in a window, over the repetitions
    good_rps: Spread | None = None  # 2xx/3xx answers/s; None for results recorded before goodput
    p50_lower_bound: bool = False  # the percentile reaches censored waits: the truth is at least this
    p99_lower_bound: bool = False
    recorded: bool = False  # the steps record censored waits (a starved user's wait is in the percentiles)
    cpu_us_per_request: float | None = None  # of the median-goodput repetition
    repetition: Mapping[str, Any] | None = None  # that repetition

    def good_differs(self) -> bool:
        """Whether goodput is not simply throughput (some answer was not 2xx/3xx)."""
        return self.good_rps is not None and abs(self.good_rps.median - self.rps.median) > 0.005 * max(
            self.rps.median, 1e-9)


def note_starved(ax: Any, summaries: Mapping[str, Mapping[int, StepSummary]], users: int | None = None) -> None:
    """Say on the chart which backends left clients unanswered: a closed-loop latency of
    answers only makes a server serving one client while the rest wait look fast. Every note
    is drawn, or counted: what does not fit is in the report (notes.chart_lines)."""
    draw_notes(ax, starved_notes(summaries, users))


def starved_notes(summaries: Mapping[str, Mapping[int, StepSummary]], users: int | None = None) -> list[str]:
    """One line per backend and level (at `users`, or all) where some user got no answer."""
    return [f"{backend_label(backend)} at {level} users: {starved_text(level, summary.starved, summary.recorded)}"
            for backend, by_users in summaries.items() for level, summary in by_users.items()
            if summary.starved and (users is None or level == users)]


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
    good = [rep.get("good_rps") for rep in reps]
    flags = {flag for rep in reps for flag in rep.get("flags") or ()}
    chosen = pick_repetition(reps)
    return StepSummary(
        backend=backend, users=users, steps=tuple(reps), rps=rps,
        p50_us=chosen.get("p50_us"), p99_us=chosen.get("p99_us"),
        errors={kind: sum((rep.get("errors") or {}).get(kind, 0) for rep in reps)
                for kind in ERROR_KINDS},
        driver_bound=DRIVER_BOUND in flags,
        high_spread=rps.high_spread or HIGH_SPREAD in flags,
        cpu_percent=median_of(reps, "cpu_percent", "server"),
        rss_bytes=_median([server_memory(rep) for rep in reps]),
        starved=max(rep.get("starved_users") or 0 for rep in reps),
        good_rps=summarize(good) if None not in good else None,  # type: ignore[arg-type]
        p50_lower_bound=bool(lower_bound(chosen, "p50_us")), p99_lower_bound=bool(lower_bound(chosen, "p99_us")),
        recorded=any(rep.get("censored") is not None for rep in reps),
        cpu_us_per_request=(chosen.get("server") or {}).get("cpu_us_per_request"),
        repetition=chosen,
    )


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


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
    """Median req/s per backend against users; bars span the repetitions' min..max. Where
    some answers were not 2xx/3xx, goodput is drawn beside it: dashed, hollow markers."""
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
    users_axis(ax, _all_users(summaries))
    ax.set_ylim(0, ax.get_ylim()[1] * 1.08)  # headroom for the driver-bound labels
    ax.yaxis.set_major_formatter(thousands_format())
    ax.set_ylabel("requests/s (median, min..max)")
    ax.set_title(chart_title(results, "throughput vs users"))
    if handles:
        ax.legend(handles=handles, fontsize=8)
    note_failed(figure, failed_backends(results))
    return save_figure(figure, out_dir, "throughput_vs_users")


def mark_lower_bounds(ax: Any, xs: list[float], ys: list[float], bounds: list[bool], colour: str) -> bool:
    """Draw an upward triangle on each point that is a lower bound; whether any was."""
    marked = [(x, y) for x, y, bound in zip(xs, ys, bounds) if bound and not math.isnan(y)]
    if marked:
        ax.plot(*zip(*marked), linestyle="", marker=LOWER_BOUND_MARKER, markersize=9, color=colour, zorder=5)
    return bool(marked)


def lower_bound_handle() -> Line2D:
    return Line2D([], [], color="black", linestyle="", marker=LOWER_BOUND_MARKER, label=LOWER_BOUND_LABEL)


@styled
def latency_vs_users(results: Mapping[str, Any], out_dir: Path) -> list[Path]:
    """p50 (solid) and p99 (dashed) per backend against users, log ms: of the repetition
    with the median goodput; a triangle where the percentile is a lower bound."""
    summaries = summarize_steps(results)
    figure, ax = new_figure()
    handles, bounded = [], False
    for backend, by_users in summaries.items():
        colour, points = backend_colour(backend), list(by_users.values())
        users = [p.users for p in points]
        p50, p99 = [_ms(p.p50_us) for p in points], [_ms(p.p99_us) for p in points]
        ax.plot(users, p50, color=colour, marker="o")
        ax.plot(users, p99, color=colour, marker="o", linestyle="--", markerfacecolor="white")
        bounded |= mark_lower_bounds(ax, users, p50, [p.p50_lower_bound for p in points], colour)
        bounded |= mark_lower_bounds(ax, users, p99, [p.p99_lower_bound for p in points], colour)
        handles.append(Line2D([], [], color=colour, label=backend_label(backend)))
    handles += [Line2D([], [], color="black", label="p50"),
                Line2D([], [], color="black", linestyle="--", label="p99")]
    if bounded:
        handles.append(lower_bound_handle())
    users_axis(ax, _all_users(summaries))
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(ms_format())
    ax.set_ylabel(f"{LATENCY}, ms (log scale)")
    ax.set_title(chart_title(results, f"{LATENCY} vs users (p50 solid, p99 dashed)"))
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
    missing, bounded = {}, False
    for backend, by_users in summaries.items():
        if users not in by_users:
            missing[backend] = f"no result at {users} users"
            continue
        steps = by_users[users].steps
        xs, ys = percentile_spectrum([s["histogram"] for s in steps if s.get("histogram")])
        ax.plot(xs, ys, color=backend_colour(backend), label=backend_label(backend))
        floors = [s["censored_min_us"] for s in steps if s.get("censored") and s.get("censored_min_us") is not None]
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
    ax.yaxis.set_major_formatter(ms_format())
    ax.set_ylabel(f"{LATENCY}, ms (log scale)")
    ax.set_title(chart_title(results, f"{LATENCY} spectrum at {users} users"))
    if summaries:
        handles, _ = ax.get_legend_handles_labels()
        ax.legend(handles=handles + ([lower_bound_handle()] if bounded else []), fontsize=8, loc="upper left")
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
    p99.set_ylabel(f"p99 {LATENCY}\nms (line)", fontsize=7)


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
    rss.set_ylabel("server memory, MiB\n(PSS of a process tree, RSS of one process)")
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


def cpu_levels(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The summary rows (every load level: closed, open loop, idle connections) with the
    min..max of server CPU µs per request over their repetitions ("cpu_min", "cpu_max")."""
    levels = group_levels(results.get("steps", ()))
    rows = []
    for row in summary_rows(results.get("steps", ())):
        reps = levels[row["backend"], row["users"], row["rate"], row["idle"]]
        values = [v for v in ((rep.get("server") or {}).get("cpu_us_per_request") for rep in reps) if v is not None]
        rows.append({**row, "cpu_min": min(values, default=None), "cpu_max": max(values, default=None)})
    return rows


@styled
def cpu_per_request(results: Mapping[str, Any], out_dir: Path) -> list[Path]:
    """Server CPU µs per request (the whole process tree) per backend at every load level:
    what an answer costs, which separates "fast because idle" from "fast because cheap".
    A bar is the repetition summary.csv shows; the whisker spans the repetitions."""
    rows = cpu_levels(results)
    loads = list(dict.fromkeys(load_label(row) for row in sorted(
        rows, key=lambda r: (r["idle"], r["rate"] is not None, r["rate"] or 0, r["users"]))))
    backends = backend_order([row["backend"] for row in rows])
    figure, ax = new_figure()
    width = 0.8 / max(len(backends), 1)
    for index, backend in enumerate(backends):
        mine = {load_label(row): row for row in rows if row["backend"] == backend
                and row["cpu_us_per_request"] is not None}
        xs = [i + (index - (len(backends) - 1) / 2) * width for i, load in enumerate(loads) if load in mine]
        drawn = [mine[load] for load in loads if load in mine]
        ax.bar(xs, [row["cpu_us_per_request"] for row in drawn], width=width * 0.9, color=backend_colour(backend),
               label=backend_label(backend),
               yerr=[[row["cpu_us_per_request"] - row["cpu_min"] for row in drawn],
                     [row["cpu_max"] - row["cpu_us_per_request"] for row in drawn]],
               error_kw={"elinewidth": 0.8, "capsize": 2, "ecolor": "#333"})
    ax.set_xticks(range(len(loads)), labels=[load.replace(" + ", "\n+ ") for load in loads],
                  fontsize=8 if len(loads) < 8 else 6)
    values = [row["cpu_us_per_request"] for row in rows if row["cpu_us_per_request"]]
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


def has_cpu_per_request(results: Mapping[str, Any]) -> bool:
    """Whether any good step recorded its server CPU per request (issue 13 on)."""
    return any((step.get("server") or {}).get("cpu_us_per_request") is not None
               for step in results.get("steps", ()) if step.get("status") == "ok")


def draw_all(results: Mapping[str, Any], out_dir: Path) -> list[Path]:
    """Every chart of one run into out_dir; the written paths, PNG and SVG of each."""
    from harness.charts.idle import draw_idle
    from harness.charts.open_loop import draw_open_loop

    paths: list[Path] = []
    if summarize_steps(results):
        for draw in (throughput_vs_users, latency_vs_users, latency_spectrum, timeseries,
                     resources, errors):
            paths += draw(results, out_dir)
    if has_cpu_per_request(results):
        paths += cpu_per_request(results, out_dir)
    return paths + draw_open_loop(results, out_dir) + draw_idle(results, out_dir)
