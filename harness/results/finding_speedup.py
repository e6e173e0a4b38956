"""The speedup and scaling findings: what more server CPUs buy each backend, in a run that
sweeps them ([server] cpus). Each series (a backend under one interpreter, and one request
when the scenario sends each alone) is measured against its own one-CPU figure (speedup):

- the speedup S(N) = X(N) / X(1), X being good req/s (the summary row's) on N server CPUs;
- the parallel efficiency S(N) / N;
- the serial fraction Karp and Flatt's metric infers from it, e = (1/S - 1/N) / (1 - 1/N):
  0 for a model that divides its work perfectly, 1 for one that runs on one CPU whatever it
  is given; over 1 when more CPUs cost throughput (contention, not only serial work).

Told first, per request, one sentence says which models scale and which stay at one CPU's
rate (scaling). Each is drawn at the highest closed-loop user level of the sweep (the one that can keep every
CPU busy, as the cores chart). A figure measured while users starved is the users answered,
not the server's: the finding says so, as it says driver-bound, noisy, shared-cpu and gil-on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from harness.results.finding_levels import Level, caveat, finding, group_caveat, rps, starved_note
from harness.results.finding_rules import RunView
from harness.results.words import joined

# A model "scales" when it turns at least this share of each CPU it is given into answers: a
# model that runs in parallel reaches 1.7x and more on 2 CPUs here (85%); 75% leaves room for
# a driver on one of the server's CPUs and for the repetitions' spread.
SCALES_EFFICIENCY = 0.75
# A model "stays at one CPU's rate" when its speedup is within this share of 1: the
# repetitions of a level spread by up to 10% before they are called high-spread.
ONE_CPU_TOLERANCE = 0.10


@dataclass(frozen=True)
class Sweep:
    """One series on each server CPU count, at one closed-loop user level."""

    name: str  # the series without its CPU count: "threaded@3.13t /cpu?ms=5"
    route: str | None
    by_cores: dict[int, Level]  # 1 is always there

    @property
    def levels(self) -> list[Level]:
        return [self.by_cores[cores] for cores in sorted(self.by_cores)]

    @property
    def base(self) -> float:
        return self.by_cores[1].good_rps or 0.0

    def speedup(self, cores: int) -> float:
        return (self.by_cores[cores].good_rps or 0.0) / self.base

    @property
    def widest(self) -> int:
        return max(self.by_cores)


def karp_flatt(speedup: float, cores: int) -> float:
    """The serial fraction the speedup on `cores` CPUs implies (Karp and Flatt, 1990)."""
    return (1 / speedup - 1 / cores) / (1 - 1 / cores)


def core_sweeps(run: RunView) -> list[Sweep]:
    """Each series swept over server CPUs with a one-CPU point, at its highest closed-loop
    user level (fewest idle connections), in the summary table's order."""
    grouped: dict[tuple[str, int, int], dict[int, Level]] = {}
    routes: dict[str, str | None] = {}
    for level in run.levels:
        first = level.reps[0]
        cores = first.cores
        if not level.closed or cores is None or not level.good_rps:
            continue
        name = first.without_cores
        routes[name] = first.route
        grouped.setdefault((name, level.idle, level.users), {})[cores] = level
    best: dict[str, tuple[int, int, dict[int, Level]]] = {}
    for (name, idle, users), by_cores in grouped.items():
        if 1 not in by_cores or len(by_cores) < 2:
            continue
        if name not in best or (-idle, users) > (-best[name][0], best[name][1]):
            best[name] = (idle, users, by_cores)
    return [Sweep(name, routes[name], by_cores) for name, (_, _, by_cores) in best.items()]


def _with(note: str | None, more: str | None) -> str | None:
    return "; ".join(part for part in (note, more) if part) or None


def _sweep_finding(sweep: Sweep) -> dict[str, Any]:
    one = sweep.by_cores[1]
    parts, by_cores = [], {}
    for cores in sorted(sweep.by_cores)[1:]:
        level, speedup = sweep.by_cores[cores], sweep.speedup(cores)
        serial = karp_flatt(speedup, cores)
        # over 1 is a slowdown; said where it is larger than the repetitions' spread
        over = ": over 1, the added CPUs cost throughput" if speedup < 1 - ONE_CPU_TOLERANCE else ""
        parts.append(f"{speedup:.2f}x on {cores} CPUs ({rps(level.good_rps or 0.0)} req/s; efficiency "
                     f"{speedup / cores:.0%}, serial fraction {serial:.2f} by Karp–Flatt{over})")
        by_cores[str(cores)] = {"good_rps": level.good_rps, "speedup": round(speedup, 3),
                                "efficiency": round(speedup / cores, 3), "serial_fraction": round(serial, 3)}
    note = _with(caveat(sweep.levels, spread=True), starved_note(sweep.levels))
    text = (f"{sweep.name} at {one.label()}, against its {rps(sweep.base)} req/s on one CPU: " + "; ".join(parts)
            + (f" ({note})" if note else ""))
    figures = {"users": one.users, "route": sweep.route, "one_cpu_good_rps": sweep.base, "by_cores": by_cores}
    return finding("speedup", sweep.name, None, text, figures, said=note)  # no note: no caveat


def verdict(speedup: float, cores: int) -> str:
    """"scale", "stay" (at one CPU's rate) or "partly", for a speedup on `cores` CPUs."""
    if speedup / cores >= SCALES_EFFICIENCY:
        return "scale"
    return "stay" if speedup <= 1 + ONE_CPU_TOLERANCE else "partly"


def _backend(sweep: Sweep) -> str:
    """The series without its request: the request is the sentence's."""
    return sweep.name if sweep.route is None else sweep.name[:-len(sweep.route) - 1]


def _who_scales(sweeps: Sequence[Sweep]) -> dict[str, Any]:
    """One sentence for the sweeps of one request at one width: which scale, which stay."""
    widest, first = sweeps[0].widest, sweeps[0].by_cores[1]
    groups: dict[str, list[Sweep]] = {"scale": [], "partly": [], "stay": []}
    for sweep in sorted(sweeps, key=lambda s: -s.speedup(widest)):
        groups[verdict(sweep.speedup(widest), widest)].append(sweep)
    said = {"scale": "scale{s}", "partly": "scale{s} only partly", "stay": "stay{s} at one CPU's rate"}
    clauses = [f"{joined([f'{_backend(s)} ({s.speedup(widest):.2f}x)' for s in members])} "
               + said[verdict].format(s="" if len(members) > 1 else "s")
               for verdict, members in groups.items() if members]
    where = f"on {sweeps[0].route} " if sweeps[0].route else ""
    note = _with(group_caveat({s.name: s.levels for s in sweeps}, spread=True),
                 starved_note(level for s in sweeps for level in s.levels))
    text = (f"With {widest} server CPUs {where}at {first.label()}, against each one's own one-CPU goodput: "
            + "; ".join(clauses) + (f" ({note})" if note else ""))
    figures = {"route": sweeps[0].route, "cores": widest, "users": first.users,
               "scale": [s.name for s in groups["scale"]], "partly": [s.name for s in groups["partly"]],
               "stay": [s.name for s in groups["stay"]],
               "speedup": {s.name: round(s.speedup(widest), 3) for s in sweeps}}
    return finding("scaling", ", ".join(s.name for s in sweeps), None, text, figures, said=note)


def scaling(run: RunView) -> list[dict[str, Any]]:
    """Per request, width and user level swept by two or more series: which scale, which stay
    at one CPU's rate, each with its speedup against its own one-CPU figure."""
    together: dict[tuple[str | None, int, int], list[Sweep]] = {}
    for sweep in core_sweeps(run):
        together.setdefault((sweep.route, sweep.widest, sweep.by_cores[1].users), []).append(sweep)
    return [_who_scales(group) for group in together.values() if len(group) > 1]


def speedup(run: RunView) -> list[dict[str, Any]]:
    """Per series swept over server CPUs: its speedup, efficiency and serial fraction at each
    count against its own one-CPU figure."""
    return [_sweep_finding(sweep) for sweep in core_sweeps(run)]
