"""Capacity at an objective, from a rate search's results (harness.run.search does the
searching): per series, the rate found, whether the rounds at that rate held the objective,
and what it cost the server (CPU µs per request). Read by the printed table
(harness.results.printed), the report, the capacity chart and the findings; from results.json
alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from harness.results.model import Run, Step
from harness.results.search_record import Probe, Search
from harness.results.steps import CONTENDED, DRIVER_BOUND, HIGH_SPREAD, NOISY, median_of
from harness.results.summary import lower_bound
from harness.results.units import ms_text

FLOORS = ("above-range", "driver-bound")  # the figure is what was shown to hold, not the limit
# How a search ended (harness.run.search), as a table says it after the rate.
STATUS_NOTES = {
    "found": "",
    "above-range": "above the range searched: a floor",
    "below-range": "missed at the lowest rate searched",
    "driver-bound": "the driver's limit: a floor",
    "budget": "the time budget ended the search: the gap to the miss is wider than asked",
    "failed": "the backend failed during its search (see its entry in the run)",
    "searching": "the search did not finish: the run was interrupted",
}
UNFINISHED = ("failed", "searching")  # no capacity was searched out: the table and findings say why
# What a flag on the rounds behind a capacity means for it (measurement rules 5 and 11).
FLAG_CAVEATS = {DRIVER_BOUND: "driver-bound: a floor", NOISY: "noisy: steal over 5%",
                CONTENDED: "contended: other processes used over 5% of the server's CPUs",
                HIGH_SPREAD: "high-spread: rounds over 10% apart"}


def judge(step: Step | Mapping[str, Any], p99_ms: float, error_share: float) -> tuple[bool, str]:
    """Whether a window (a Step, or the record the search is writing) meets the objective, and
    the reason in words. Its p99 is from each request's intended send time in the open loop
    (coordinated omission corrected), with the unanswered at their wait so far."""
    if isinstance(step, Step):
        p99, share = step.p99_us, step.error_share or 0.0
    else:  # a probe's record: the search's own, its figures those a step record has
        p99, share = step.get("p99_us"), step.get("error_share") or 0.0
    if p99 is None:
        return False, "no answer in the window"
    misses = []
    if p99 > p99_ms * 1000:
        misses.append(f"p99 {ms_text(p99, form='.3g', unit=' ms')} > {p99_ms:g} ms")
    if share > error_share:
        misses.append(f"errors {share:.2%} > {error_share:.2%}")
    return (False, " and ".join(misses)) if misses else (True, "within the objective")


# The rounds measure the rate a search found and this share of it. The search's highest pass
# sits within `precision` of a miss, by construction at the edge, where a fresh server's
# warm-up transient or a neighbour's noise tips a window over (at utilisation near 1 a queue
# drains slowly): there the rate found holds in about half the rounds. At 80% of it the
# server has a fifth of its capacity to drain what a transient queued. The capacity told is
# the higher of the two that held in most rounds.
BACKOFF = 0.8


def backoff_rate(rate: float) -> float:
    """The second rate the rounds measure: BACKOFF of the rate found, with 3 significant figures."""
    return float(f"{rate * BACKOFF:.3g}")


# What the rounds' figures are, where a table prints them: not the summary table's rows,
# which are each the round with the median good req/s. The median p99 is the one that agrees
# with "held in most rounds": it is within the objective exactly when most rounds' p99 are.
ROUNDS_AGGREGATE = "medians over the rounds at that rate (a summary row is the one round with the median good req/s)"


@dataclass(frozen=True)
class Rounds:
    """The rounds at one rate: how many held the objective, and their medians (ROUNDS_AGGREGATE)."""

    rate: float
    held: int
    rounds: int
    p99_us: float | None
    error_share: float | None
    good_rps: float | None
    cpu_us_per_request: float | None
    flags: tuple[str, ...]  # of any round
    p99_lower_bound: bool = False  # the median p99 reaches a censored wait: the true one is at least this

    @property
    def confirmed(self) -> bool:
        """Held in most rounds (a majority: the median round held)."""
        return self.rounds > 0 and self.held * 2 > self.rounds


@dataclass(frozen=True)
class Capacity:
    """One series' capacity: the search's outcome, and the rounds at the rate it found and at
    BACKOFF of it. `rate` is the capacity told: the higher of the two that held in most
    rounds; None when neither did (or the search held nothing)."""

    series: str
    backend: str
    route: str | None
    status: str  # how the search ended: a key of STATUS_NOTES
    found: float | None  # the highest rate that held in the search; None: none did
    missed: float | None  # the lowest that missed, above it
    probes: int
    at_found: Rounds | None
    at_backoff: Rounds | None
    path: tuple[Probe, ...] = ()  # every probe, in the order the search made them
    low: float | None = None  # the lowest rate the range searched

    @property
    def told(self) -> Rounds | None:
        """The rounds behind the capacity told (or, when none held, at the rate found)."""
        for rounds in (self.at_found, self.at_backoff):
            if rounds is not None and rounds.confirmed:
                return rounds
        return self.at_found

    @property
    def rate(self) -> float | None:
        told = self.told
        return told.rate if told is not None and told.confirmed else None

    @property
    def floor(self) -> bool:
        """The capacity told is what was shown to hold, not the limit (the range or the driver ran out)."""
        return self.rate is not None and self.rate == self.found and self.status in FLOORS

    @property
    def note(self) -> str:
        """What qualifies the figure, if anything."""
        told_found = self.status in UNFINISHED or self.rate == self.found or self.found is None
        parts = [STATUS_NOTES.get(self.status, self.status) if told_found else ""]
        found, backoff = self.at_found, self.at_backoff
        if found is not None and not found.confirmed:
            parts.append(f"the {found.rate:,.0f} found held in {found.held} of {found.rounds} rounds")
            if backoff is not None and not backoff.confirmed:
                parts.append(f"{backoff.rate:,.0f} in {backoff.held} of {backoff.rounds}")
        return "; ".join(part for part in parts if part)


def capacities(run: Run) -> list[Capacity]:
    """Each search in the run's capacity record, with its rounds; [] for a run without a search."""
    searches = run.capacity or {}
    started = list(run.metadata.order)

    def run_order(item: tuple[str, Search]) -> tuple[int, int]:  # as the run searched them
        backend = item[1].backend
        return (started.index(backend) if backend in started else len(started), item[1].request)
    out = []
    for name, search in sorted(searches.items(), key=run_order):
        found = search.passed
        mine = [step for step in run.ok_steps if step.backend == search.backend and step.route == search.route]

        def rounds_at(rate: float | None) -> Rounds | None:
            if rate is None:
                return None
            steps = [step for step in mine if step.rate == rate]
            if not steps:
                return None
            verdicts = [judge(step, search.p99_ms, search.error_share)[0] for step in steps]
            return Rounds(rate=rate, held=sum(verdicts), rounds=len(steps),
                          p99_us=median_of(step.p99_us for step in steps),
                          error_share=median_of(step.error_share for step in steps),
                          good_rps=median_of(step.good_rps for step in steps),
                          cpu_us_per_request=median_of(step.server.cpu_us_per_request for step in steps),
                          flags=tuple(sorted({flag for step in steps for flag in step.flags})),
                          p99_lower_bound=_median_lower_bound(steps))
        out.append(Capacity(series=name, backend=search.backend, route=search.route, status=search.status,
                            found=found, missed=search.missed, probes=len(search.path), at_found=rounds_at(found),
                            at_backoff=rounds_at(backoff_rate(found) if found is not None else None),
                            path=search.path, low=search.low))
    return out


def objective(run: Run) -> str | None:
    """The objective searched for, as words: "p99 <= 10 ms, errors <= 0.1%"."""
    for search in (run.capacity or {}).values():
        return f"p99 <= {search.p99_ms:g} ms, errors <= {search.error_share:.1%}"
    return None


def _median_lower_bound(steps: list[Step]) -> bool:
    """Whether the median of the steps' p99 is a lower bound: a value at or below it (the
    middle one, both middle ones for an even count) is one, and could be higher."""
    ranked = sorted((step for step in steps if step.p99_us is not None), key=lambda step: step.p99_us or 0.0)
    return any(lower_bound(step, "p99_us") for step in ranked[:len(ranked) // 2 + 1])


def p99_text(rounds: Rounds | None) -> str:
    """The rounds' median p99 in ms as a table prints it, ">=" when a lower bound; "-" without."""
    return "-" if rounds is None else ms_text(rounds.p99_us, bound=rounds.p99_lower_bound)


def capacity_findings(results: Run) -> list[dict[str, Any]]:
    """One finding per search: the capacity the rounds confirmed, what it cost, and what
    qualifies it. Same shape as harness.results.findings' ({"kind", "backend", "level",
    "text", "figures", "caveat"})."""
    found_list = []
    goal = objective(results)
    for row in capacities(results):
        told, found = row.told, row.at_found
        if row.status in UNFINISHED:
            held = f"; its search had held {row.found:,.0f} req/s" if row.found is not None else ""
            text = f"{row.series}: no capacity, {STATUS_NOTES[row.status]}{held}"
        elif row.found is None:
            text = (f"{row.series} holds no rate within {goal}: it missed at the lowest rate searched, "
                    f"{row.low or 0:,.0f} req/s")
        elif row.rate is None:
            tried = [r for r in (row.at_found, row.at_backoff) if r is not None]
            held = " and ".join(f"{r.rate:,.0f} in {r.held} of {r.rounds}" for r in tried) or "none repeated"
            text = (f"{row.series} holds no rate it could repeat within {goal}: its search held "
                    f"{row.found:,.0f} req/s, but the rounds held {held}")
        else:
            assert told is not None
            floor = "at least " if row.floor else ""
            cost = "" if told.cpu_us_per_request is None else f", at {told.cpu_us_per_request:,.0f} µs of server CPU per request"
            text = f"{row.series} holds {floor}{row.rate:,.0f} req/s within {goal} (held in {told.held} of {told.rounds} rounds{cost})"
            if row.rate != row.found and found is not None:
                text += f"; the {row.found:,.0f} its search found held in only {found.held} of {found.rounds}"
            elif row.status == "found" and row.missed is not None:
                text += f"; {row.missed:,.0f} req/s missed in the search"
            note = {"above-range": "the highest rate searched held: its capacity is above the range",
                    "driver-bound": "the next rate missed with the driver at its limit: a floor",
                    "budget": "the time budget ended the search before the gap closed"}.get(row.status)
            if note and row.rate == row.found:
                text += f"; {note}"
        flagged = [FLAG_CAVEATS[flag] for flag in FLAG_CAVEATS if told is not None and flag in told.flags
                   and not (flag == DRIVER_BOUND and row.floor)]  # a driver-bound floor says so already
        caveat = "; ".join([*([row.note] if row.note else []), *flagged]) or None
        if flagged:  # a finding from flagged rounds says so, as every finding does
            text += f" ({'; '.join(flagged)})"
        found_list.append({"kind": "capacity", "backend": row.series,
                           "level": {"users": None, "rate": row.rate, "idle_connections": 0, "cores": None},
                           "text": text, "caveat": caveat,
                           "figures": {"rate": row.rate, "found": row.found, "missed": row.missed, "status": row.status,
                                       "held": told.held if told else None, "rounds": told.rounds if told else 0,
                                       "p99_us": told.p99_us if told else None,
                                       "cpu_us_per_request": told.cpu_us_per_request if told else None,
                                       "probes": row.probes}})
    return found_list
