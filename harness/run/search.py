"""Capacity at an objective: the highest offered rate a backend holds within a scenario's
slo, found by probing rather than a fixed sweep (as Envoy's Nighthawk does).

The search is a pure state machine: it says which rate to probe next, is told how each probe
went, and decides when to stop. The runner does the probing (one open-loop window per probe,
warm-up first, latency from each request's intended send time) and the repetitions at the
rate found. A probe is judged by harness.results.capacity.judge, as the rounds are:

- **ramp:** from LOW, each passing probe multiplies the rate by RAMP, up to HIGH;
- **bisect:** once a probe misses, the next rate is the geometric middle of the highest pass
  and the lowest miss (a rate scale is multiplicative: 1,000 to 4,000 splits at 2,000);
- **stop:** when the lowest miss is within `precision` of the highest pass ("found"), when
  LOW already misses ("below-range") or HIGH passes ("above-range"), when the next probe
  would overrun the time budget ("budget": the bracket is wider than asked). A miss with the
  driver at its limit may be the driver's, not the server's: the search goes on below it
  like any miss, and if the lowest miss at the end is such a one, the search ends
  "driver-bound": the highest pass is then a floor.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

from harness.results.capacity import judge
from harness.scenario.load import RateSearch, Slo

# Each passing probe during the ramp offers this many times the last rate. 4 reaches 200,000
# from 100 in 6 probes; the bisection then needs log2(log 4 / log 1.1) ~ 4 probes for 10%.
RAMP = 4.0
DRIVER_BOUND = "driver-bound"  # the step flag (harness.results.steps.DRIVER_BOUND)
NOISY = "noisy"


@dataclass(frozen=True)
class Probe:
    """One probe's window, as the search judged it."""

    rate: float  # offered req/s
    p99_us: float | None  # corrected: from each request's intended send time
    error_share: float
    good_rps: float | None
    cpu_us_per_request: float | None
    flags: tuple[str, ...]
    passed: bool
    why: str  # "p99 14.2 ms > 10 ms", "errors 2.1% > 0.1%", "within the objective"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "flags": list(self.flags)}


@dataclass
class Search:
    """The search for one backend and request. Call next_rate(elapsed) for the rate to probe
    (None: done), then record(step) with the probe's step record."""

    search: RateSearch
    slo: Slo
    probe_s: float  # what one probe takes: warm-up, window and the driver's start
    probes: list[Probe] = field(default_factory=list)
    status: str = "searching"

    @property
    def passed(self) -> float | None:
        """The highest rate that met the objective."""
        return max((p.rate for p in self.probes if p.passed), default=None)

    @property
    def missed(self) -> float | None:
        """The lowest rate that missed it, above the highest pass."""
        best = self.passed or 0.0
        return min((p.rate for p in self.probes if not p.passed and p.rate > best), default=None)

    def next_rate(self, elapsed_s: float) -> float | None:
        """The next rate to offer, or None when the search is over (see status)."""
        if self.status != "searching":
            return None
        passed, missed = self.passed, self.missed
        high = _round_rate(self.search.high)  # the range as rates are written: 123,456 is 123,000
        if not self.probes:
            rate = self.search.low
        elif passed is None:
            self._stop("below-range")
            return None
        elif missed is None:
            if passed >= high:
                self._stop("above-range")
                return None
            rate = min(passed * RAMP, high)
        elif missed <= passed * (1 + self.search.precision):
            self._stop("found")
            return None
        else:
            rate = math.sqrt(passed * missed)
        rate = _round_rate(rate)
        if rate in (passed, missed):  # the bracket is as narrow as a rate is written
            self._stop("found")
            return None
        if self.probes and elapsed_s + self.probe_s > self.search.budget_s:  # the first probe always runs
            self._stop("budget")
            return None
        return rate

    def record(self, step: Mapping[str, Any]) -> Probe:
        """Judge the probe whose step record this is, and note it on the search path."""
        passed, why = judge(step, self.slo.p99_ms, self.slo.error_share)
        flags = tuple(step.get("flags") or ())
        probe = Probe(rate=float(step["rate"]), p99_us=step.get("p99_us"), error_share=step.get("error_share") or 0.0,
                      good_rps=step.get("good_rps"), cpu_us_per_request=(step.get("server") or {}).get(
                          "cpu_us_per_request"), flags=flags, passed=passed, why=why)
        self.probes.append(probe)
        return probe

    def _stop(self, status: str) -> None:
        """End the search. A bracket whose miss came with the driver at its limit measured the
        driver there, not the server: the highest pass is then a floor (driver-bound)."""
        missed = self.missed
        bound = any(p.rate == missed and DRIVER_BOUND in p.flags for p in self.probes if not p.passed)
        self.status = DRIVER_BOUND if bound and status in ("found", "budget") else status

    def to_dict(self) -> dict[str, Any]:
        """What results.json keeps of the search: the range, the path, where it stopped."""
        return {"status": self.status, "passed": self.passed, "missed": self.missed,
                "search": asdict(self.search), "slo": asdict(self.slo),
                "path": [probe.to_dict() for probe in self.probes]}


def _round_rate(rate: float) -> float:
    """A rate with 3 significant figures: a search path reads 1,600 then 3,200, not 3,197.4."""
    if rate <= 0:
        return rate
    digits = 2 - int(math.floor(math.log10(rate)))
    return float(round(rate, digits))
