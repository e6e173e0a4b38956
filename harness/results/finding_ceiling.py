"""The CPU ceiling finding (kind "gil-ceiling"): on a CPU-bound route, most backends' goodput
flat across users at one figure, with the server at one CPU's limit; and what holds each
one there.

A ceiling is the GIL's only where the GIL is what stops a second CPU from being used: threads
of one process, on a GIL build, given more than one CPU. On one server CPU every model tops
out at that CPU, GIL or not (forking's processes each have their own GIL, sub-interpreters
too): that is a one-CPU ceiling. A model that answers on one thread (an event loop) is held
to one CPU by its design, not by the GIL.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from statistics import median
from typing import Any

from harness.results.finding_levels import Level, finding, rps
from harness.results.finding_rules import RunView, level_requests
from harness.results.steps import GIL_ON
from harness.results.words import joined

# A backend's goodput at every users level within this share of its median is "flat" (the
# reference runs' repetitions spread by up to ~5% at the ceiling)...
CEILING_TOLERANCE = 0.10
# ...with the server busy at least this % of one CPU at every level: as much as one thread
# of Python can run (psutil reads 97-100% at the limit)...
CEILING_CPU_PERCENT = 90.0
# ...and this share of the run's backends at the same ceiling: one flat model is that
# model's limit; most of them flat at one figure is the route's, one CPU's.
CEILING_MIN_SHARE = 0.5
CPU_ROUTE = "/cpu"
# Our backends (registry names; a variant, "threaded-pool4", is its backend's) whose requests
# run on several threads of one process: on a GIL build the threads take turns, so more CPUs
# cannot lift their ceiling...
THREAD_MODELS = ("threaded", "selectors-pool")
# ...and those that answer every request on one thread: one CPU is their ceiling, GIL or not.
ONE_THREAD_MODELS = ("iterative", "selectors", "asyncio", "gevent")
# What holds a flat backend at one CPU's rate, as the sentence says it.
ONE_CPU, GIL, ONE_THREAD, UNEXPLAINED = ("the server's one CPU", "the GIL (threads of one process on a GIL build)",
                                         "one thread answering every request", "neither the GIL nor one thread")


def model(backend: str) -> str | None:
    """Which of our backends a label runs: "threaded-pool4@3.13" -> "threaded"; None for
    another server (a cmd: one or a peer)."""
    name = backend.split("@")[0]
    for known in sorted(THREAD_MODELS + ONE_THREAD_MODELS, key=len, reverse=True):
        if name == known or name.startswith(f"{known}-"):
            return known
    return None


def held_by(run: RunView, sweep: Sequence[Level]) -> str | None:
    """What holds one flat backend (its levels) at one CPU's rate; None when the run did not
    record its server's CPUs."""
    first = sweep[0].reps[0]
    cpus = first.server_cpus
    if cpus is None:
        return None
    if len(cpus) == 1:
        return ONE_CPU
    backend = model(first.backend)
    gil_build = not run.python(first.backend).free_threaded \
        or any(GIL_ON in level.flags for level in sweep)
    if backend in THREAD_MODELS and gil_build:
        return GIL
    return ONE_THREAD if backend in ONE_THREAD_MODELS else UNEXPLAINED


def _why(run: RunView, flat: Sequence[Sequence[Level]]) -> tuple[str, str]:
    """The sentence's title and its clause on what holds the backends there."""
    reasons: dict[str | None, list[str]] = {}
    for sweep in flat:
        reasons.setdefault(held_by(run, sweep), []).append(sweep[0].backend)
    if list(reasons) == [ONE_CPU]:
        return "One-CPU ceiling", ONE_CPU
    if list(reasons) == [GIL]:
        widths = sorted({len(sweep[0].reps[0].server_cpus or ()) for sweep in flat})
        return "GIL ceiling", f"{GIL}, with {joined([str(width) for width in widths])} server CPUs"
    if list(reasons) == [None]:
        return "CPU ceiling", "the server's CPUs, which this run did not record"
    told = [f"{reason or 'unrecorded server CPUs'} for {joined(names)}" for reason, names in reasons.items()]
    return "Ceiling at one CPU's rate", "; ".join(told)


def gil_ceiling(run: RunView) -> list[dict[str, Any]]:
    """On a CPU-bound route: most backends' goodput flat across users, at one figure, with the
    server at one CPU's limit. One finding for the run, naming the backends at the ceiling
    and what holds them there."""
    def cpu_routes(level: Level) -> set[str]:
        return {str(r.get("path")) for r in level_requests(run.scenario, level)
                if str(r.get("path", "")).startswith(CPU_ROUTE)}

    sweeps = [sweep for sweep in run.sweeps() if len(sweep) > 1 and cpu_routes(sweep[0])]
    routes = sorted({route for sweep in sweeps for route in cpu_routes(sweep[0])})
    if not sweeps:
        return []
    flat = list(filter(None, map(_flat_at_cpu_limit, sweeps)))
    if flat:
        middle = median(median(one.goods) for one in flat)
        flat = [one for one in flat if all(abs(good / middle - 1) <= CEILING_TOLERANCE for good in one.goods)]
    if len(flat) < 2 or len(flat) < CEILING_MIN_SHARE * len(sweeps):
        return []
    levels = [level for one in flat for level in one.sweep]
    goods = [good for one in flat for good in one.goods]
    cpu = min(percent for one in flat for percent in one.cpu_percents)
    costs = [cost for cost in (level.cpu_us for level in levels) if cost]
    names = [one.sweep[0].backend for one in flat]
    users = sorted({level.users for level in levels})
    title, why = _why(run, [one.sweep for one in flat])
    text = (f"{title} on {', '.join(routes)}: {len(flat)} of {len(sweeps)} backends stay at {rps(min(goods))} to "
            f"{rps(max(goods))} req/s from {users[0]} to {users[-1]} users, the server at {cpu:.0f}% or more of a "
            f"CPU ({', '.join(names)}); held there by {why}")
    if costs:
        text += f"; at {median(costs):,.0f} µs of CPU per request one CPU answers {rps(1e6 / median(costs))} req/s"
    figures = {"backends": names, "routes": routes, "min_good_rps": min(goods), "max_good_rps": max(goods),
               "median_good_rps": median(goods), "min_cpu_percent": cpu,
               "cpu_us_per_request": median(costs) if costs else None, "users": users,
               "held_by": {one.sweep[0].backend: held_by(run, one.sweep) for one in flat}}
    return [finding("gil-ceiling", ", ".join(names), None, text, figures, drawn_from=levels)]


@dataclass(frozen=True)
class _Flat:
    """A sweep flat at one CPU's limit, with what showed it: each level's goodput (none of
    them missing or zero) and its server's CPU use (% of one CPU, none missing)."""

    sweep: Sequence[Level]
    goods: list[float]
    cpu_percents: list[float]


def _flat_at_cpu_limit(sweep: Sequence[Level]) -> _Flat | None:
    """The sweep with its figures if its goodput is flat (CEILING_TOLERANCE) and its server
    at one CPU's limit (CEILING_CPU_PERCENT) at every level; None if not."""
    goods = []
    for level in sweep:
        good = level.good_rps
        if not good:
            return None
        goods.append(good)
    middle = median(goods)
    if not all(abs(good / middle - 1) <= CEILING_TOLERANCE for good in goods):
        return None
    cpu_percents = []
    for level in sweep:
        percent = level.cpu_percent
        if percent is None or percent < CEILING_CPU_PERCENT:
            return None
        cpu_percents.append(percent)
    return _Flat(sweep, goods, cpu_percents)
