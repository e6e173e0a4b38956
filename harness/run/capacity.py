"""A rate search in a run (scenario `[load] rate = { search = [...] }`): before the rounds,
each backend is started once and searched request by request (harness.run.search), a driver
process per probe; the rate it found for each request, and BACKOFF of it
(harness.results.capacity), become its levels, which the rounds then measure `repeat`
times, backends interleaved as in any run.

results["capacity"] holds each search by series ("asyncio /sleep?ms=1", or the backend when
the scenario sends its whole mix): the range and objective, every probe (rate, corrected p99,
error share, good req/s, server CPU us per request, flags, pass or miss and why), and where
it stopped. The probes are not steps: summaries and charts show the rounds at the rate found.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from harness.drivers import DRIVER_MODULES
from harness.results.capacity import backoff_rate
from harness.run.driver import DriverProcess
from harness.run.plan import DRIVER_START_S, Level, Plan, PlannedStep, requests_of
from harness.run.progress import Progress
from harness.run.record import BackendFailed, ms_text
from harness.run.search import Search
from harness.scenario import Scenario

PROBE = -1  # a probe's repetition: it belongs to no round


class CapacitySearch:
    """Run's rate search, a mixin: Run (harness.run.runner) provides the scenario, plan,
    options and CPUs, results and what records them (save, event, doing, step), and the
    backend's entry, launch and drive (_entry, _launch, _drive)."""

    scenario: Scenario
    plan: Plan
    results: dict[str, Any]
    server_cpus: tuple[int, ...]
    driver_cpus: tuple[int, ...]
    doing: str
    step: dict[str, Any] | None

    def search_backend(self, backend: str, target: str, progress: Progress) -> None:
        """Search `backend` on every request of the scenario, then set its levels: the rate
        found for each (none where even the lowest rate missed)."""
        scenario = self.scenario
        entry = self._entry(backend, target)
        capacity = self.results.setdefault("capacity", {})
        running = self._launch(backend, target, " (search)", self.server_cpus, entry, progress)
        if running is None:
            self._unsearched(backend, capacity)
            return
        found: list[Level] = []
        driver_stderr: list[str] = []
        try:
            for request, route in requests_of(scenario):
                name = backend if route is None else f"{backend} {route}"
                search = Search(scenario.search, scenario.slo, probe_s=scenario.warmup_s + scenario.duration_s
                                + DRIVER_START_S)
                capacity[name] = record = {"backend": backend, "route": route, "request": request,
                                           **search.to_dict()}
                started = time.monotonic()
                while (rate := search.next_rate(time.monotonic() - started)) is not None:
                    level = self.plan.probe_level(request, route, rate)
                    probe = search.record(self._probe(backend, running, level, progress, driver_stderr))
                    record.update(search.to_dict(), seconds=round(time.monotonic() - started, 1))
                    self.save()
                    progress.message(f"{backend}: probe {level.name}: p99 {ms_text(probe.p99_us)}, errors "
                                     f"{probe.error_share:.2%}: {'holds' if probe.passed else 'misses: ' + probe.why}"
                                     + (f" [{', '.join(probe.flags)}]" if probe.flags else ""))
                record.update(search.to_dict(), seconds=round(time.monotonic() - started, 1))
                progress.message(f"{name}: {_outcome(search)}")
                if search.passed is not None:  # the rounds measure it, and BACKOFF of it (results.capacity)
                    found += [self.plan.probe_level(request, route, rate)
                              for rate in (search.passed, backoff_rate(search.passed))]
        except (BackendFailed, OSError) as error:
            if isinstance(error, OSError):
                error = BackendFailed(f"the driver failed {self.doing}: {error}", kind="driver-failed")
            progress.message(f"{backend}: FAILED: {error}")
            self._unsearched(backend, capacity)
            entry.update(status="failed", error=str(error), step=self.step,
                         driver_stderr="".join(driver_stderr), round="search")
            self.event(error.kind, f"{backend}: {error}", backend=backend, step=self.step)
        finally:
            self.doing, self.step = f"while {backend} was stopping (search)", None
            entry["exit_status"] = running.stop()
            entry["stderr_tail"] = running.stderr_tail()
        self.plan.found[backend] = tuple(found)
        self.save()

    def _unsearched(self, backend: str, capacity: dict[str, Any]) -> None:
        """`backend` failed before its searches ended: each request it did not finish is
        recorded "failed" (with the probes it made), so tables and findings say so."""
        for request, route in requests_of(self.scenario):
            name = backend if route is None else f"{backend} {route}"
            record = capacity.setdefault(name, {"backend": backend, "route": route, "request": request,
                                                **Search(self.scenario.search, self.scenario.slo, probe_s=0).to_dict()})
            if record["status"] == "searching":
                record["status"] = "failed"

    def _probe(self, backend: str, running: Any, level: Level, progress: Progress,
               driver_stderr: list[str]) -> dict[str, Any]:
        """One probe: a driver process with one spec (a warm-up, then one window) at `level`;
        its step record."""
        spec = self.plan.spec(level, host=self.options.host, port=running.port)
        with tempfile.TemporaryDirectory(prefix="concurbench-probe-") as workdir:
            driver = DriverProcess([spec], workdir=Path(workdir), cpus=self.driver_cpus,
                                   module=DRIVER_MODULES["locust"], procs=self.options.driver_procs,
                                   remote_workers=self.options.remote_workers,
                                   master_bind=self.options.host, token=self.options.worker_token)
            try:
                return self._drive(backend, PROBE, running, driver, progress,
                                   probe=PlannedStep(backend, level, PROBE))
            except BackendFailed as error:
                if error.kind == "driver-failed":
                    driver.kill()
                raise
            finally:
                driver.stop()
                driver_stderr[:] = list(driver.stderr)


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
