"""The c10k chart: tail latency, server memory and refusals against idle connections held.

A scenario that sweeps `background.idle_connections` runs the same light load beside more
and more connections that never send. The three panels say what each model pays for them:
p99 of the light load (a loop that scans its connections slows down; a thread or process
per connection does not, until it runs out), resident memory of the whole server tree (a
thread stack or a process per connection against a small object per socket), and the
share of requests that failed (threaded and forking hit --max-connections and refuse).

The x axis is the number asked for; where fewer were actually connected (the driver counts
them), the point is labelled with that count, so a cap is never mistaken for a cost.
"""

from __future__ import annotations

import math
from pathlib import Path

from matplotlib.ticker import NullFormatter

from harness.charts.style import (LATENCY, LOWER_BOUND_LABEL, LOWER_BOUND_MARKER, RESPONSE_TIME, backend_colour,
                                  backend_label, backend_order, chart_title, ms_format, new_figure, save_figure, styled,
                                  thousands_format)
from harness.results.model import Run, Step
from harness.results.steps import group_levels, median_of
from harness.results.summary import lower_bound, pick_repetition
from harness.results.units import ms

IdleLevels = dict[str, dict[int, list[Step]]]


def at_fewest_idle(results: Run) -> list[Step]:
    """The steps at the run's fewest idle connections: what the charts against users or
    offered rate draw, so a c10k sweep does not stack four levels at one x."""
    fewest = min((step.idle_connections for step in results.steps), default=0)
    return [step for step in results.steps if step.idle_connections == fewest]


def idle_levels(results: Run) -> IdleLevels:
    """backend -> idle connections asked for -> its good steps at the run's first load
    level (c10k has one: a light offered rate); empty unless the run has more than one
    idle level (only then is there a curve to draw)."""
    groups = group_levels(results.steps)
    first = next(iter(groups), None)
    levels: IdleLevels = {}
    for (backend, users, rate, idle), reps in groups.items():
        if first is not None and (users, rate) == first[1:3]:
            levels.setdefault(backend, {}).setdefault(idle, []).extend(reps)
    if len({idle for by_idle in levels.values() for idle in by_idle}) < 2:
        return {}
    return {name: dict(sorted(levels[name].items())) for name in backend_order(list(levels))}


def _nan_if_none(value: float | None) -> float:
    return math.nan if value is None else value


def _memory(steps: list[Step]) -> float | None:
    """Median server memory over steps: PSS of the process tree, else RSS (ServerFigures.memory)."""
    return median_of(step.server.memory for step in steps)


def held_open(steps: list[Step]) -> float:
    """Median idle sockets connected at the end of each window, from the driver's side:
    those the server holds, and those whose handshake the kernel completed that wait in
    its listen queue to be accepted (or refused)."""
    return _nan_if_none(median_of(step.background.idle_connected if step.background else None for step in steps))


def failed_share(steps: list[Step]) -> float:
    """Requests without a good answer, as a percentage: refused (a 503 is counted among
    `requests` and as a bad_status error), failed, or, at an offered rate, never answered
    at all (an iterative server stuck on an idle connection answers nothing and fails nothing)."""
    wanted = good = 0.0
    for step in steps:
        answered = step.requests
        good_requests = step.good_requests  # unrecorded by older versions: answers less refusals
        good += answered - step.errors.bad_status if good_requests is None else good_requests
        failed = step.errors.no_answer  # these never got an answer
        offered = (step.rate or 0) * (step.duration_s or 0)
        wanted += max(offered, answered + failed)
    return 100 * (1 - good / wanted) if wanted else math.nan


@styled
def idle_connections_chart(results: Run, out_dir: Path) -> list[Path]:
    levels = idle_levels(results)
    figure, (p99, rss, failed) = new_figure(ncols=3, height=4.2)
    bounded = False
    for backend, by_idle in levels.items():
        colour, idle = backend_colour(backend), list(by_idle)
        steps = list(by_idle.values())
        # the p99 of refusals is not the cost of anything: drawn only where most were served; it is
        # the p99 of the repetition summary.csv shows (the median by goodput), a triangle if a lower bound
        chosen = [pick_repetition(reps) for reps in steps]
        ys = [ms(rep.p99_us) if failed_share(reps) < 50 else math.nan
              for rep, reps in zip(chosen, steps)]
        p99.plot(idle, ys, color=colour, marker="o", label=backend_label(backend))
        marked = [(x, y) for x, y, rep in zip(idle, ys, chosen) if lower_bound(rep, "p99_us") and not math.isnan(y)]
        if marked:
            p99.plot(*zip(*marked), linestyle="", marker=LOWER_BOUND_MARKER, markersize=9, color=colour, zorder=5,
                     label=LOWER_BOUND_LABEL if not bounded else None)
            bounded = True
        rss.plot(idle, [_nan_if_none(_memory(reps)) / 2 ** 20
                        for reps in steps], color=colour, marker="o")
        failed.plot(idle, [failed_share(reps) for reps in steps], color=colour, marker="o")
        asked, reps = idle[-1], steps[-1]  # the largest level only: labels at every one collide
        held = held_open(reps)
        if asked and not math.isnan(held) and held < 0.95 * asked:
            memory = _nan_if_none(_memory(reps)) / 2 ** 20
            rss.annotate(f"{held:,.0f} connected", (asked, memory),
                         xytext=(-4, 4), textcoords="offset points", fontsize=7, color=colour, ha="right")
    p99.set_ylim(bottom=0)
    p99.yaxis.set_major_formatter(ms_format())
    rate = next((reps[0].rate for by_idle in levels.values() for reps in by_idle.values()), None)
    which = RESPONSE_TIME if rate else LATENCY  # "response time (intended send -> answer)"
    name, _, span = which.partition(" (")
    p99.set_ylabel(f"p99 {name}, ms\n({span}" + (f" at {rate:,.0f}/s offered" if rate else "")
                   + "\nwhere most requests were served")
    rss.set_ylabel("server memory, MiB, log\n(PSS of a process tree, RSS of one process)")
    failed.set_ylabel("requests without a good answer (%)")
    for ax in (p99, rss, failed):
        ax.set_xlabel("idle connections asked for")
        ax.xaxis.set_major_formatter(thousands_format())
    rss.set_yscale("log")  # a process per connection and a few KiB per socket, on one axis
    rss.yaxis.set_major_formatter(thousands_format())
    rss.yaxis.set_minor_formatter(NullFormatter())
    failed.set_ylim(bottom=0)
    figure.suptitle(chart_title(results, "cost of idle connections"), fontsize=10)
    if levels:
        p99.legend(fontsize=7)
    return save_figure(figure, out_dir, "idle_connections")


def draw_idle(results: Run, out_dir: Path) -> list[Path]:
    if not idle_levels(results):
        return []
    return idle_connections_chart(results, out_dir)
