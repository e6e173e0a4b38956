"""A rate search in a run (scenario `[load] rate = { search = [...] }`): before the rounds,
each backend is started once and searched request by request (harness.run.search), a driver
process per probe; the rate it found for each request, and BACKOFF of it
(harness.results.capacity), are what the search finds (Found), and become the backend's
levels, which the rounds then measure `repeat` times, backends interleaved as in any run.

results["capacity"] holds each search by series ("asyncio /sleep?ms=1", or the backend when
the scenario sends its whole mix): the range and objective, every probe (rate, corrected p99,
error share, good req/s, server CPU us per request, flags, pass or miss and why), and where
it stopped. The probes are not steps: summaries and charts show the rounds at the rate found.

The search works through the run's own steps (harness.run.runner.Run: start_backend,
serving, start_driver, drive), named here as the Orchestrator it needs.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from harness.drivers.spec import DriverSpec
from harness.results.capacity import backoff_rate
from harness.run.driver import DriverProcess
from harness.run.faults import Session
from harness.run.launch import RunningBackend
from harness.run.options import RunOptions
from harness.run.plan import DRIVER_START_S, Level, Plan, PlannedStep, requests_of
from harness.run.position import PROBE, Start
from harness.run.progress import Progress
from harness.results.units import ms_text
from harness.run.search import Search
from harness.scenario import Scenario
from harness.scenario.load import RateSearch, Slo


class Orchestrator(Protocol):
    """What a search uses of the run that owns it (harness.run.runner.Run)."""

    scenario: Scenario
    plan: Plan
    options: RunOptions
    server_cpus: tuple[int, ...]
    results: dict[str, Any]

    def save(self) -> None: ...

    def backend_entry(self, backend: str, target: str) -> dict[str, Any]: ...

    def start_backend(self, backend: str, target: str, start: Start, cpus: tuple[int, ...],
                      progress: Progress) -> RunningBackend | None: ...

    def serving(self, backend: str, running: RunningBackend, start: Start,
                progress: Progress) -> AbstractContextManager[Session]: ...

    def start_driver(self, specs: Sequence[DriverSpec], session: Session, *, name: str,
                     tool: str = "locust") -> AbstractContextManager[DriverProcess]: ...

    def drive(self, running: RunningBackend, driver: DriverProcess, steps: Sequence[PlannedStep],
              progress: Progress, *, series: str | None = None, keep: bool = True) -> list[dict[str, Any]]: ...


@dataclass(frozen=True)
class Found:
    """What the search of one backend found: the levels its rounds measure (for each request,
    the rate that held and BACKOFF of it; none where even the lowest rate missed, or the
    backend failed)."""

    backend: str
    levels: tuple[Level, ...]


class CapacitySearch:
    """The rate searches of a run, done through the run's own steps."""

    def __init__(self, run: Orchestrator) -> None:
        scenario = run.scenario
        if scenario.search is None or scenario.slo is None:
            raise ValueError(f"scenario {scenario.name} has no rate search")
        self.run = run
        self.range: RateSearch = scenario.search
        self.slo: Slo = scenario.slo

    def search(self, backend: str, target: str, progress: Progress) -> Found:
        """Search `backend` on every request of the scenario, in one start of it."""
        run, scenario = self.run, self.run.scenario
        run.backend_entry(backend, target)
        capacity = run.results.setdefault("capacity", {})
        start = Start(None, run.plan.rounds)
        running = run.start_backend(backend, target, start, run.server_cpus, progress)
        if running is None:
            self._unsearched(backend, capacity)
            return Found(backend, ())
        found: list[Level] = []
        with run.serving(backend, running, start, progress) as session:
            for request, route in requests_of(scenario):
                name = backend if route is None else f"{backend} {route}"
                search = Search(self.range, self.slo, probe_s=scenario.warmup_s + scenario.duration_s + DRIVER_START_S)
                capacity[name] = record = {"backend": backend, "route": route, "request": request,
                                           **search.to_dict()}
                started = time.monotonic()
                while (rate := search.next_rate(time.monotonic() - started)) is not None:
                    level = run.plan.probe_level(request, route, rate)
                    probe = search.record(self.probe(running, PlannedStep(backend, level, PROBE), session, progress))
                    record.update(search.to_dict(), seconds=round(time.monotonic() - started, 1))
                    run.save()
                    progress.message(f"{backend}: probe {level.name}: p99 {ms_text(probe.p99_us, unit=' ms')}, errors "
                                     f"{probe.error_share:.2%}: {'holds' if probe.passed else 'misses: ' + probe.why}"
                                     + (f" [{', '.join(probe.flags)}]" if probe.flags else ""))
                record.update(search.to_dict(), seconds=round(time.monotonic() - started, 1))
                progress.message(f"{name}: {_outcome(search)}")
                if search.passed is not None:  # the rounds measure it, and BACKOFF of it (results.capacity)
                    found += [run.plan.probe_level(request, route, rate)
                              for rate in (search.passed, backoff_rate(search.passed))]
        if session.failed:
            self._unsearched(backend, capacity)
        run.save()
        return Found(backend, tuple(found))

    def probe(self, running: RunningBackend, step: PlannedStep, session: Session, progress: Progress) -> dict[str, Any]:
        """One probe: a driver process with one spec (a warm-up, then one window) at the
        step's level; its step record, which is not stored as a step."""
        run = self.run
        spec = run.plan.spec(step.level, host=run.options.host, port=running.port)
        with run.start_driver([spec], session, name=f"{step.backend}-probe") as driver:
            (record,) = run.drive(running, driver, [step], progress, keep=False)
        return record

    def _unsearched(self, backend: str, capacity: dict[str, Any]) -> None:
        """`backend` failed before its searches ended: each request it did not finish is
        recorded "failed" (with the probes it made), so tables and findings say so."""
        for request, route in requests_of(self.run.scenario):
            name = backend if route is None else f"{backend} {route}"
            record = capacity.setdefault(name, {"backend": backend, "route": route, "request": request,
                                                **Search(self.range, self.slo, probe_s=0).to_dict()})
            if record["status"] == "searching":
                record["status"] = "failed"


def _outcome(search: Search) -> str:
    """How a search ended, as progress says it."""
    passed, missed, status = search.passed, search.missed, search.status
    held = f"{passed:,.0f} req/s" if passed is not None else None
    if status == "found" and missed is not None:
        return f"holds {held} (misses {missed:,.0f}) within the objective"
    if status == "below-range":
        return f"misses the objective at the lowest rate, {search.search.low:,.0f} req/s"
    if status == "above-range":
        return f"holds the highest rate searched, {held}: its capacity is above the range"
    if status == "driver-bound" and missed is not None:
        return f"holds {held}; the miss at {missed:,.0f} req/s was the driver's limit: a floor"
    return f"holds {held or 'nothing'}; the time budget ended the search with " \
           f"{'no miss' if missed is None else f'a miss at {missed:,.0f} req/s'}"
