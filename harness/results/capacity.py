"""Capacity at an objective, from a rate search's results (harness.run.search does the
searching): per series, the rate found, whether the rounds at that rate held the objective,
and what it cost the server (CPU us per request). Read by the printed table, the report, the
capacity chart and the findings; from results.json alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from statistics import median
from typing import Any

FLOORS = ("above-range", "driver-bound")  # the figure is what was shown to hold, not the limit
# How a search ended (harness.run.search), as a table says it after the rate.
STATUS_NOTES = {
    "found": "",
    "above-range": "above the range searched: a floor",
    "below-range": "missed at the lowest rate searched",
    "driver-bound": "the driver's limit: a floor",
    "budget": "the time budget ended the search: the gap to the miss is wider than asked",
}


def judge(step: Mapping[str, Any], p99_ms: float, error_share: float) -> tuple[bool, str]:
    """Whether a window (a step record) meets the objective, and the reason in words. Its
    p99 is from each request's intended send time in the open loop (coordinated omission
    corrected), with the unanswered at their wait so far."""
    p99 = step.get("p99_us")
    share = step.get("error_share") or 0.0
    if p99 is None:
        return False, "no answer in the window"
    misses = []
    if p99 > p99_ms * 1000:
        misses.append(f"p99 {p99 / 1000:.3g} ms > {p99_ms:g} ms")
    if share > error_share:
        misses.append(f"errors {share:.2%} > {error_share:.2%}")
    return (False, " and ".join(misses)) if misses else (True, "within the objective")


@dataclass(frozen=True)
class Capacity:
    """One series' capacity: the search's outcome and the rounds at the rate it found."""

    series: str
    backend: str
    route: str | None
    status: str  # how the search ended: a key of STATUS_NOTES
    rate: float | None  # the highest rate that held in the search; None: none did
    missed: float | None  # the lowest that missed, above it
    probes: int
    held: int  # rounds at `rate` within the objective
    rounds: int  # rounds measured at `rate`
    p99_us: float | None  # median over those rounds
    error_share: float | None
    good_rps: float | None
    cpu_us_per_request: float | None
    flags: tuple[str, ...]  # of any round

    @property
    def confirmed(self) -> bool:
        """Held in most rounds at the rate found (a median, as every figure here)."""
        return self.rounds > 0 and self.held * 2 > self.rounds

    @property
    def note(self) -> str:
        """What qualifies the figure, if anything."""
        parts = [STATUS_NOTES.get(self.status, self.status)]
        if self.rate is not None and self.rounds and not self.confirmed:
            parts.append(f"held in only {self.held} of {self.rounds} rounds")
        return "; ".join(part for part in parts if part)


def capacities(results: Mapping[str, Any]) -> list[Capacity]:
    """Each search in results["capacity"], with its rounds; [] for a run without a search."""
    searches = results.get("capacity") or {}
    started = [entry["backend"] for entry in (results.get("metadata") or {}).get("order") or []]

    def run_order(item: tuple[str, Mapping[str, Any]]) -> tuple[int, int]:  # as the run searched them
        backend = item[1]["backend"]
        return (started.index(backend) if backend in started else len(started), item[1].get("request") or 0)
    out = []
    for name, search in sorted(searches.items(), key=run_order):
        slo = search.get("slo") or {}
        rate = search.get("passed")
        rounds = [step for step in results.get("steps", []) if step.get("status") == "ok"
                  and step["backend"] == search["backend"] and step.get("route") == search.get("route")
                  and rate is not None and step.get("rate") == rate]
        verdicts = [judge(step, slo.get("p99_ms", 0), slo.get("error_share", 0))[0] for step in rounds]
        out.append(Capacity(
            series=name, backend=search["backend"], route=search.get("route"), status=search.get("status", "?"),
            rate=rate, missed=search.get("missed"), probes=len(search.get("path") or []),
            held=sum(verdicts), rounds=len(rounds), p99_us=_median(rounds, "p99_us"),
            error_share=_median(rounds, "error_share"), good_rps=_median(rounds, "good_rps"),
            cpu_us_per_request=_median([step.get("server") or {} for step in rounds], "cpu_us_per_request"),
            flags=tuple(sorted({flag for step in rounds for flag in step.get("flags") or ()}))))
    return out


def objective(results: Mapping[str, Any]) -> str | None:
    """The objective searched for, as words: "p99 <= 10 ms, errors <= 0.1%"."""
    for search in (results.get("capacity") or {}).values():
        slo = search.get("slo") or {}
        return f"p99 <= {slo.get('p99_ms', 0):g} ms, errors <= {slo.get('error_share', 0):.1%}"
    return None


def capacity_table(results: Mapping[str, Any]) -> str:
    """The printable capacity table of a rate search ("" for a run without one)."""
    rows = capacities(results)
    if not rows:
        return ""
    header = ["series", "capacity req/s", "held", "p99 ms", "good req/s", "CPU us/req", "probes", "note"]
    cells = [[row.series, _num(row.rate), f"{row.held}/{row.rounds}" if row.rate is not None else "-",
              _num(row.p99_us, 1000, 2), _num(row.good_rps), _num(row.cpu_us_per_request, places=1),
              str(row.probes), row.note] for row in rows]
    widths = [max(len(line[i]) for line in [header, *cells]) for i in range(len(header))]

    def line(values: list[str]) -> str:
        return "  ".join(v.ljust(w) if i in (0, 7) else v.rjust(w) for i, (v, w) in enumerate(zip(values, widths))).rstrip()
    return "\n".join([f"\ncapacity within {objective(results)} (open loop, latency from each intended send; "
                      "held: rounds at that rate within it)", line(header), line(["-" * w for w in widths]),
                      *map(line, cells)])


def _median(records: list[Mapping[str, Any]], key: str) -> float | None:
    values = [record.get(key) for record in records if record.get(key) is not None]
    return median(values) if values else None


def _num(value: float | None, scale: float = 1, places: int = 0) -> str:
    return "-" if value is None else f"{value / scale:,.{places}f}"


def capacity_findings(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One finding per search: the capacity found, what it cost, and what qualifies it. Same
    shape as harness.results.findings' ({"kind", "backend", "level", "text", "figures",
    "caveat"})."""
    found = []
    goal = objective(results)
    for row in capacities(results):
        if row.rate is None:
            low = ((results.get("capacity") or {}).get(row.series) or {}).get("search", {}).get("low")
            text = f"{row.series} holds no rate within {goal}: it missed at the lowest rate searched, {low:,.0f} req/s"
        else:
            floor = "at least " if row.status in FLOORS else ""
            cost = "" if row.cpu_us_per_request is None else f", at {row.cpu_us_per_request:,.0f} µs of server CPU per request"
            held = f"held in {row.held} of {row.rounds} rounds" if row.rounds else "not repeated"
            text = f"{row.series} holds {floor}{row.rate:,.0f} req/s within {goal} ({held}{cost})"
            if row.status == "found" and row.missed is not None:
                text += f"; {row.missed:,.0f} req/s missed"
            note = {"above-range": "the highest rate searched held: its capacity is above the range",
                    "driver-bound": "the next rate missed with the driver at its limit: a floor",
                    "budget": "the time budget ended the search before the gap closed"}.get(row.status)
            if note:
                text += f"; {note}"
        caveat = row.note or None
        found.append({"kind": "capacity", "backend": row.series,
                      "level": {"users": None, "rate": row.rate, "idle_connections": 0, "cores": None},
                      "text": text, "caveat": caveat,
                      "figures": {"rate": row.rate, "missed": row.missed, "status": row.status, "held": row.held,
                                  "rounds": row.rounds, "p99_us": row.p99_us, "cpu_us_per_request": row.cpu_us_per_request,
                                  "probes": row.probes}})
    return found

