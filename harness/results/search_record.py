"""A rate search as results.json records it ("capacity", by series): what it searched for, the
rates it probed, and where it stopped (harness/run/search.py searches; capacity.py reads the
rounds that followed)."""

from __future__ import annotations

from dataclasses import dataclass

from harness.results.checked import Checked


@dataclass(frozen=True)
class Probe:
    """One rate the search offered, and whether it held the objective."""

    rate: float
    passed: bool


@dataclass(frozen=True)
class Search:
    """One series' search: its backend and request, the objective (p99 and error share), the
    range's low end, every probe, and how it ended (`status`: a key of capacity.STATUS_NOTES)."""

    backend: str
    route: str | None = None
    request: int = 0  # the request's place in the scenario's mix
    status: str = "?"
    passed: float | None = None  # the highest rate that held; None: none did
    missed: float | None = None  # the lowest that missed, above it
    p99_ms: float = 0.0
    error_share: float = 0.0
    low: float | None = None
    path: tuple[Probe, ...] = ()


def search_of(c: Checked) -> Search:
    slo, searched = c.opt_sub("slo"), c.opt_sub("search")
    return Search(
        backend=c.text("backend"), route=c.opt_str("route"), request=c.opt_int("request") or 0,
        status=c.opt_str("status") or "?", passed=c.opt_num("passed"), missed=c.opt_num("missed"),
        p99_ms=(slo.opt_num("p99_ms") if slo else None) or 0.0,
        error_share=(slo.opt_num("error_share") if slo else None) or 0.0,
        low=searched.opt_num("low") if searched else None,
        path=tuple(Probe(rate=probe.number("rate"), passed=bool(probe.opt_bool("passed")))
                   for probe in c.items("path")))
