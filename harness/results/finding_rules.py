"""The rules that turn a run's levels into findings, one function per kind (some have a
module of their own: finding_usl.py, finding_ceiling.py, finding_speedup.py,
finding_free_threading.py; harness.results.findings lists them all, in order). Each
threshold is a named constant with the reason for its value. What several backends share (a knee at one level, a USL fit
skipped for one reason) is told once, by harness.results.finding_groups.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.results.finding_groups import SATURATION_GROUP_MIN, Knee, in_table_order, knee_figures, saturation_group
from harness.results.finding_levels import (Level, change, finding, labels, ms, rps, run_levels, share,
                                            times, worst_steal)
from harness.results.model import Backend, Python, Run
from harness.results.steps import CONTENDED, DRIVER_BOUND, NOISY
from harness.results.words import counted, joined

# Saturation (the knee): past it, more users buy less than this much more throughput...
KNEE_GROWTH = 0.10  # below 10% the extra users are mostly queueing
# ...while p99 grows at least this many times: the extra users wait instead of being served.
KNEE_P99_RATIO = 2.0
# Starvation: one user with no answer for a whole window is already a user the server
# never served (a window is seconds, thousands of a healthy server's round trips).
STARVED_MIN_USERS = 1
# Refusals: 503s and refused, closed or reset connections above this share of requests. A
# stop at a window's edge can cut a connection or two; 1% is a pattern, not an edge.
REFUSAL_SHARE = 0.01
# Head-of-line blocking: a percentile at least this many times the best backend's at the same
# level (one order of magnitude: not a model's overhead, which differs by 2-3x on `/`)...
HOL_RATIO = 10.0
# ...and at least this long: below 1 ms a 10x is a few round trips, not a request waiting
# behind a slow one.
HOL_MIN_US = 1000.0
# ...at a comparable CPU cost per request (within this factor of the best's): a backend
# whose own answers cost 40x more (forking per connection) is slow, not blocked.
HOL_COST_RATIO = 2.0
# The flags that keep a level out of "the best backend" while an unflagged one is there: its
# figure is the driver's, or a neighbour took part of its CPUs.
BEST_EXCLUDES = (DRIVER_BOUND, NOISY, CONTENDED)
# Routes that hold a server for a while: a mix of them with short requests shows blocking.
SLOW_ROUTES = ("/cpu", "/sleep")


@dataclass(frozen=True)
class RunView:
    """What the rules read: the run's levels (the summary table's order), its scenario, and
    its backend entries (each of ours with the interpreter it ran under, "python")."""

    levels: tuple[Level, ...]
    scenario: Mapping[str, Any]
    entries: Mapping[str, Backend] = field(default_factory=dict)

    @classmethod
    def of(cls, run: Run) -> RunView:
        return cls(tuple(run_levels(run)), run.scenario, run.backends)

    def python(self, backend: str) -> Python:
        """The interpreter a backend (its label, "threaded@3.13t") ran under; all None if not recorded."""
        entry = self.entries.get(backend)
        return entry.python if entry and entry.python else Python()

    def backends(self) -> list[str]:
        return list(dict.fromkeys(level.backend for level in self.levels))

    def sweeps(self) -> list[list[Level]]:
        """Each backend's closed-loop levels by users, one list per idle-connection count."""
        by_series: dict[tuple[str, int], list[Level]] = {}
        for level in self.levels:
            if level.closed:
                by_series.setdefault((level.backend, level.idle), []).append(level)
        return [sorted(levels, key=lambda level: level.users) for levels in by_series.values()]


def saturation(run: RunView) -> list[dict[str, Any]]:
    """Closed loop: the first users level past which goodput grows by less than KNEE_GROWTH
    while p99 at least doubles (KNEE_P99_RATIO), shown by the first later level that says so.
    Backends with their knee at one level are told together from SATURATION_GROUP_MIN on."""
    at_level: dict[tuple[Any, ...], list[Knee]] = {}
    for knee in filter(None, map(_knee, run.sweeps())):
        at_level.setdefault(tuple(knee.at.level().values()), []).append(knee)
    found = []
    for knees in at_level.values():
        if len(knees) >= SATURATION_GROUP_MIN:
            found.append(saturation_group(knees))
            continue
        for knee in knees:
            at, past = knee.at, knee.past
            text = (f"{at.backend} saturates at {at.label()}: {rps(knee.good)} req/s; at {past.label()} p99 is "
                    f"{times(knee.p99_past / knee.p99, knee.bound)} higher ({ms(knee.p99)} to "
                    f"{ms(knee.p99_past, knee.bound)}) for {change(knee.later / knee.good)} throughput")
            found.append(finding("saturation", at.backend, at, text, knee_figures(knee), drawn_from=(at, past),
                                 spread=True))
    return in_table_order(found, run.backends())


def _knee(sweep: Sequence[Level]) -> Knee | None:
    for i, at in enumerate(sweep[:-1]):
        good, p99 = at.good_rps, at.percentile("p99_us")[0]
        if not good or not p99:
            continue
        for past in sweep[i + 1:]:
            later, (p99_past, bound) = past.good_rps, past.percentile("p99_us")
            if later is None or later >= good * (1 + KNEE_GROWTH):
                break  # still growing: not past the knee
            if p99_past is not None and p99_past >= p99 * KNEE_P99_RATIO:
                return Knee(at, past, good, p99, later, p99_past, bound)
    return None


def starvation(run: RunView) -> list[dict[str, Any]]:
    """Users (open loop: connections) that got no answer in a whole window: per backend, the
    level where the largest share starved, and from which level it starts."""
    found = []
    for backend in run.backends():
        starving = [level for level in run.levels if level.backend == backend
                    and (level.row.starved or 0) >= STARVED_MIN_USERS]
        if not starving:
            continue
        worst = max(starving, key=lambda level: ((level.row.starved or 0) / level.users, level.row.starved or 0))
        starved = worst.row.starved or 0
        step = max(worst.reps, key=lambda step: step.starved_users or 0)
        window = round(step.duration_s or 0.0, 1)
        who = "users" if worst.closed else "connections"
        text = f"{backend} at {worst.label()}: {starved:,} of {worst.users:,} {who} got no answer in {window:g} s"
        if starving[0] is not worst:
            text += f"; {who} starve from {starving[0].label()} on"
        figures = {"starved": starved, "users": worst.users, "window_s": window, "share": round(starved / worst.users, 4),
                   "first": starving[0].level()}
        found.append(finding("starvation", backend, worst, text, figures, drawn_from=(worst,)))
    return found


def _refused(level: Level) -> tuple[int, int, int]:
    """5xx answers, refused/closed/reset connections, and attempts, over the repetitions."""
    answers = closed = attempts = 0
    for step in level.reps:
        no_answer = step.errors.no_answer
        answers += (step.answers_by_class or {}).get("5xx", 0)
        closed += step.errors.connect + step.errors.reset
        attempts += step.requests + no_answer
    return answers, closed, attempts


def refusals(run: RunView) -> list[dict[str, Any]]:
    """5xx answers and refused, closed or reset connections over REFUSAL_SHARE of requests:
    per backend, the first level past it, and the worst share."""
    found = []
    for backend in run.backends():
        refusing = []
        for level in run.levels:
            answers, closed, attempts = _refused(level) if level.backend == backend else (0, 0, 0)
            if attempts and (answers + closed) / attempts > REFUSAL_SHARE:
                refusing.append((level, answers, closed, (answers + closed) / attempts))
        if not refusing:
            continue
        level, answers, closed, part = refusing[0]
        worst = max(part for *_, part in refusing)
        text = (f"{backend} at {level.label()}: {share(part)} of requests were refused ({answers:,} 5xx answers, "
                f"{closed:,} connections refused, closed or reset)")
        if worst > part:
            text += f"; up to {share(worst)} at higher load"
        figures = {"answers_5xx": answers, "closed": closed, "share": round(part, 4), "worst_share": round(worst, 4)}
        found.append(finding("refusals", backend, level, text, figures, drawn_from=(level,)))
    return found


def level_requests(scenario: Mapping[str, Any], level: Level) -> list[Mapping[str, Any]]:
    """The requests a level sent: the scenario's mix, or one of them alone (its "route")."""
    requests = scenario.get("requests") or []
    route = level.reps[0].route
    return requests if route is None else [r for r in requests if r.get("path") == route][:1] or [{"path": route}]


def _slow_neighbour(scenario: Mapping[str, Any], level: Level) -> str | None:
    """What slow work shares the server with the load at this level, in words; None if nothing."""
    requests = level_requests(scenario, level)
    slow = [r for r in requests if str(r.get("path", "")).startswith(SLOW_ROUTES)]
    if slow and len({r.get("path") for r in requests}) > 1:
        total = sum(r.get("weight", 1) for r in requests) or 1
        return "with " + " and ".join(f"{r['path']} at {r.get('weight', 1) / total:.0%} of requests" for r in slow)
    if level.idle:
        return f"beside {counted(level.idle, 'idle connection', form=',')}"
    if scenario.get("slow_clients"):
        return f"beside {scenario['slow_clients']:,} slow clients"
    return None


@dataclass(frozen=True)
class Measured:
    """A level with one of its percentiles (µs), one it measured."""

    level: Level
    value: float


def _best(levels: Sequence[Level], key: str) -> tuple[Measured | None, list[tuple[Measured, str]]]:
    """The level with the lowest percentile among those that answered every user (a starved
    user's wait is in no p50 it could be compared with) and are not lower bounds; unflagged
    ones (BEST_EXCLUDES) first. Beside it, the levels with a lower percentile it left out,
    each with why ("noisy", "driver-bound", "starved users", "a lower bound")."""
    fair = []
    for level in levels:
        value, bound = level.percentile(key)
        if not level.row.starved and value is not None and not bound:
            fair.append(Measured(level, value))
    clean = [measured for measured in fair if not set(measured.level.flags) & set(BEST_EXCLUDES)]
    pool = clean or fair
    best = min(pool, key=lambda measured: measured.value, default=None)
    if best is None:
        return None, []
    pooled = [measured.level for measured in pool]
    left_out = []
    for level in levels:
        value = level.percentile(key)[0]
        if level in pooled or value is None or value >= best.value:
            continue
        why = ("starved users" if level.row.starved else "a lower bound" if level.percentile(key)[1]
               else ", ".join(flag for flag in BEST_EXCLUDES if flag in level.flags))
        left_out.append((Measured(level, value), why))
    return best, left_out


def _blocked(level: Level, best: Measured, key: str) -> float | None:
    """The level's percentile (µs) if it waits behind the best's (HOL_RATIO, HOL_MIN_US,
    HOL_COST_RATIO); None if not."""
    value, bound = level.percentile(key)
    if best.level is level or value is None or bound:
        return None
    cheap = level.cpu_us is None or best.level.cpu_us is None or level.cpu_us <= best.level.cpu_us * HOL_COST_RATIO
    return value if value >= HOL_MIN_US and value >= best.value * HOL_RATIO and cheap else None


def head_of_line(run: RunView) -> list[dict[str, Any]]:
    """Where slow work is in the mix (a slow route among short ones, idle connections, slow
    clients): a backend whose p50 (else p99) is HOL_RATIO times the best backend's at the same
    level, at least HOL_MIN_US, at a comparable CPU cost per request. Per backend, the first."""
    at_level: dict[tuple[Any, ...], list[Level]] = {}
    for level in run.levels:
        load = (level.users, level.row.rate, level.idle, level.reps[0].cores, level.reps[0].route)
        at_level.setdefault(load, []).append(level)  # peers: the same load on the same request
    first: dict[str, dict[str, Any]] = {}
    for peers in at_level.values():
        neighbour = _slow_neighbour(run.scenario, peers[0])
        if neighbour is None:
            continue
        for key in ("p50_us", "p99_us"):
            best, left_out = _best(peers, key)
            if best is None:
                continue  # no level to be blocked behind
            for level in peers:
                if level.backend in first:
                    continue
                value = _blocked(level, best, key)
                if value is None:
                    continue
                reference = best.value
                name = key[:3]
                others = [(peer, why) for peer, why in left_out if peer.level is not level]
                unflagged = "unflagged " if any(peer.level.flags and why not in ("starved users", "a lower bound")
                                                for peer, why in others) else ""
                beside = "" if not others else "; left out, though lower: " + joined(
                    [f"{peer.level.backend} {ms(peer.value)} ({why})" for peer, why in others])
                text = (f"{level.backend} at {level.label()}: {name} {ms(value)}, {times(value / reference)} the best "
                        f"{unflagged}backend's ({best.level.backend}, {ms(reference)}{beside}), {neighbour}: short "
                        "requests wait behind slow ones")
                figures = {"percentile": name, "value_us": value, "best_backend": best.level.backend,
                           "best_us": reference, "ratio": round(value / reference, 2), "slow": neighbour,
                           "left_out": [{"backend": peer.level.backend, "value_us": peer.value, "why": why}
                                        for peer, why in others]}
                first[level.backend] = finding("head-of-line", level.backend, level, text, figures,
                                               drawn_from=(level, best.level))
    return [first[backend] for backend in run.backends() if backend in first]


def driver_bound(run: RunView) -> list[dict[str, Any]]:
    """Per backend, the levels where the driver's CPU, not the server, set the figure."""
    found = []
    for backend in run.backends():
        levels = [level for level in run.levels if level.backend == backend and DRIVER_BOUND in level.flags]
        if not levels:
            continue
        busiest = max(max(step.driver.cpu_percent or 0.0, step.driver.self_cpu_percent or 0.0)
                      for level in levels for step in level.reps)
        goods = [rps(level.good_rps or 0.0) for level in levels]
        one = len(levels) == 1
        text = (f"{backend} at {labels(levels)} is driver-bound (the driver's busiest CPU at up to {busiest:.1f}%): "
                f"{'its' if one else 'their'} {' and '.join(goods)} req/s {'is a floor' if one else 'are floors'}, "
                "not the server's capacity")
        figures = {"levels": [level.level() for level in levels], "driver_cpu_percent": busiest,
                   "good_rps": [level.good_rps for level in levels]}
        found.append(finding("driver-bound", backend, levels[0], text, figures, said=f"{DRIVER_BOUND}: a floor"))
    return found


def noisy(run: RunView) -> list[dict[str, Any]]:
    """Per backend, the levels where CPU steal made the figures unreliable."""
    found = []
    for backend in run.backends():
        levels = [level for level in run.levels if level.backend == backend and NOISY in level.flags]
        if not levels:
            continue
        steal = worst_steal(levels)
        text = (f"{backend} at {labels(levels)} is noisy (CPU steal up to {steal:.1f}%): the hypervisor took CPU "
                "time from the measurement, so these figures are unreliable")
        figures = {"levels": [level.level() for level in levels], "steal_percent": steal}
        found.append(finding("noisy", backend, levels[0], text, figures, said=f"{NOISY}: steal {steal:.1f}%"))
    return found
