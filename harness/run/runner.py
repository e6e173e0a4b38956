"""Execute a plan (harness.run.plan): launch, drive, hand each step to results.

The run goes in rounds, one per repetition. In each round, for each backend in turn:
launch it on the server CPUs, start one driver process on the driver CPUs with one spec per
load level (a warm-up, then one window), turn each window the driver reports into a step
record (its repetition is the round), and stop it. results["metadata"]["order"] records
each (backend, round) as it is started. Every finished step is written to results.json at
once (atomically), so a failure or Ctrl+C later keeps it. A backend that fails to start or
dies is recorded with its stderr tail and left out of the later rounds; the run goes on.

Around each window the orchestrator measures what the driver cannot (harness.run.sampling):
the server tree's CPU seconds, CPU us per request and memory, the whole local driver's CPU
per driver CPU, the steal on both sides, and what other processes used on the server's CPUs.
"""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

from harness.drivers import DRIVER_MODULES
from harness.drivers.spec import DriverResult
from harness.run.driver import DriverProcess
from harness.run.calibration import calibrate_cpu_work
from harness.run.launch import LaunchError, RunningBackend, launch_backend
from harness.run.capacity import CapacitySearch
from harness.run.interpreter import Interpreter, own_interpreter
from harness.results.findings import findings as run_findings
from harness.results.steps import flag_high_spread, step_record
from harness.results.store import new_run_dir
from harness.results.summary import floor_line, write_summary_csv
from harness.run.floor import FLOOR_SECONDS, FloorError, measure_floor
from harness.run.limits import ensure_fd_limit
from harness.run.metadata import collect_metadata
from harness.run.plan import Plan, PlannedStep, plan_run
from harness.run.options import RunOptions
from harness.run.progress import Progress, Tick
from harness.run.runtime import RuntimeChecks
from harness.run.record import BackendFailed, RunRecord, exit_words, first_line, ms_text, safe_name
from harness.run.sampling import WindowSampler, server_cpu_seconds, server_memory, steal_at_start
from harness.run.targets import registry_name
from harness.scenario import Scenario


WORKER_GRACE_S = 1.0  # a dead Locust worker with the master still going: a fault after this long


class RunFailed(Exception):
    """Nothing can be measured (the /cpu calibration failed): the run stops."""


class Run(RunRecord, CapacitySearch):
    """One `concurbench run`: owns the results dict and writes it after every change."""

    def __init__(self, scenario: Scenario, backends: dict[str, str], options: RunOptions,
                 pythons: dict[str, Interpreter] | None = None) -> None:
        self.scenario = scenario
        self.backends = backends
        self.pythons = pythons or {}  # a backend's label -> the interpreter it runs under (else the harness's)
        self.plan: Plan = plan_run(scenario, backends)
        self.options = options
        self.server_cpus, self.driver_cpus = options.pinning(counts=scenario.cpus, share=scenario.share_driver_cpus)
        metadata = collect_metadata(scenario_path=scenario.path, scenario_sha256=scenario.sha256,
                                    pinning={"server": list(self.server_cpus), "driver": list(self.driver_cpus)})
        metadata["scenario"]["name"] = scenario.name
        metadata["scenario"]["overrides"] = list(scenario.overrides)
        metadata["drivers"] = list(options.drivers)
        metadata["steal_at_start"] = steal_at_start(self.server_cpus, self.driver_cpus)
        metadata["rounds"] = self.plan.rounds
        metadata["order"] = []  # {"backend", "round"} as each is started: see execute
        # Raised here, inherited by every backend and driver (c10k needs > 10,000).
        self.fd_limit = ensure_fd_limit(self.plan.descriptors)
        metadata["fd_limit"] = self.fd_limit.to_dict()
        self.cpu_iters_per_ms: float | None = None  # see calibrate()
        recorded = {**scenario.to_dict(), "path": metadata["scenario"]["path"],  # no path of this machine
                    "pythons": [Path(p).name for p in scenario.pythons]}
        self.results: dict[str, Any] = {"metadata": metadata, "scenario": recorded, "status": "running",
                                        "backends": {}, "steps": [], "events": []}
        # Where the run is, for the record of a fault or a Ctrl+C: a phrase ("during the /cpu
        # calibration"), the backend running if any, and the step it is in (see _at).
        self.doing = "before the run started"
        self.backend: str | None = None
        self.step: dict[str, Any] | None = None
        self.stopped_at: tuple[str, str | None, dict[str, Any] | None] | None = None  # see stop_here
        self.saved_steps = 0  # steps in the results.json on disk
        self.run_dir = new_run_dir(options.out_root, scenario.name)
        self.save()

    def calibrate(self) -> None:
        """/cpu work per ms, measured once here and given to every backend (see the launcher)."""
        self.doing = "during the /cpu calibration"
        try:
            self.cpu_iters_per_ms = calibrate_cpu_work(self.server_cpus)
        except (subprocess.SubprocessError, OSError, ValueError) as error:
            last = (getattr(error, "stderr", None) or "").strip().splitlines()  # the child's last words
            self.stop_here()
            raise RunFailed(f"the /cpu calibration failed: {last[-1] if last else first_line(error)}") from None
        self.results["metadata"]["cpu_iters_per_ms"] = round(self.cpu_iters_per_ms, 1)
        self.save()

    def measure_floor(self) -> str:
        """The run's latency floor (harness.run.floor), into the metadata; returns the line
        that says it. A floor that cannot be measured is recorded as null with why: the
        run does not need it."""
        self.doing = "while measuring the latency floor"
        try:
            # As long a window as the run's steps, up to FLOOR_SECONDS: a run of short steps
            # does not wait a whole second for it (the window is recorded with the floor).
            floor = measure_floor(server_cpus=self.server_cpus, driver_cpus=self.driver_cpus,
                                  seconds=min(FLOOR_SECONDS, self.scenario.duration_s))
        except (FloorError, OSError, subprocess.SubprocessError, ValueError) as error:
            self.results["metadata"]["latency_floor"] = None
            self.event("floor-failed", f"the latency floor was not measured: {first_line(error)}")
            self.save()
            return f"latency floor not measured: {first_line(error)}"
        self.results["metadata"]["latency_floor"] = floor
        self.save()
        return floor_line(floor)

    def execute(self, progress: Progress) -> None:
        """Every round, every backend in turn (A B C A B C); one that failed sits out the
        later rounds."""
        if self.scenario.search is not None:
            for backend in self.plan.backends:
                self.results["metadata"]["order"].append({"backend": backend, "round": "search"})
                self.search_backend(backend, self.backends[backend], progress)
        for round_, backend in self.plan.order:
            entry = self.results["backends"].get(backend)
            if entry is not None and entry["status"] == "failed":
                continue
            if self.scenario.search is not None and not self.plan.levels_at(backend=backend):
                entry.update(status="ok", error=None)  # it held no rate of the range: nothing to repeat
                continue
            self.results["metadata"]["order"].append({"backend": backend, "round": round_})
            self.run_backend(backend, self.backends[backend], round_, progress)
            after = f"{backend}, round {round_ + 1}/{self.plan.rounds}" if self.plan.rounds > 1 else backend
            self.doing, self.backend, self.step = f"between backends (after {after})", None, None
            self.save()
        self.doing = "after the last backend"

    def _round(self, round_: int) -> str:
        """" (round 2/3)" in what progress and errors say; nothing when there is one round."""
        return f" (round {round_ + 1}/{self.plan.rounds})" if self.plan.rounds > 1 else ""

    def run_backend(self, backend: str, target: str, round_: int, progress: Progress) -> dict[str, Any]:
        """Round `round_` of `backend`: launch `target` (ours, or cmd:...), drive it through
        every level, stop it (once per server CPU count when the scenario sweeps them);
        returns its entry in results.

        The entry is in results from its first round on, "running" until its last round is
        done ("ok") or one fails ("failed"); a Ctrl+C or a failed write then finds it there
        (see interrupted, write_failed). "rounds_done" counts the rounds it finished."""
        entry = self._entry(backend, target)
        for cores in self.plan.core_counts:
            if not self._session(backend, target, round_, cores, entry, progress):
                break
        return entry

    def _entry(self, backend: str, target: str) -> dict[str, Any]:
        """`backend`'s entry in results["backends"], made at its first start."""
        external = target.startswith("cmd:")
        command = target.replace(sys.executable, "python") if external else None  # a peer's: no path of this machine
        entry: dict[str, Any] = self.results["backends"].setdefault(
            backend, {"status": "running", "error": None, "command": command, "rounds_done": 0})
        if not external:
            entry.setdefault("python", self.pythons.get(backend, own_interpreter()).to_dict())
        return entry

    def _launch(self, backend: str, target: str, of: str, cpus: tuple[int, ...],
                entry: dict[str, Any], progress: Progress) -> RunningBackend | None:
        """Start `backend` on `cpus`; None if it did not start (recorded in `entry`). `of`
        says which start it is: " (round 2/3)", " (search)"."""
        external = target.startswith("cmd:")
        self.doing, self.backend, self.step = f"while {backend} was starting{of}", backend, None
        progress.message(f"{backend}: starting on CPU {','.join(map(str, cpus))}{of}")
        extra = () if external else self.scenario.server_args_for(registry_name(target))  # our servers' flags
        python = self.pythons.get(backend)
        try:
            return launch_backend(target, host=self.options.host, cpus=cpus, extra_args=extra,
                                  env={"CONCURBENCH_CPU_ITERS_PER_MS": str(self.cpu_iters_per_ms)},
                                  python=python.path if python else None)
        except LaunchError as error:
            why = str(error).splitlines()[0]
            progress.message(f"{backend}: FAILED to start{of}: {why}")
            entry.update(status="failed", error=why, stderr_tail=error.stderr_tail,
                         round=of.strip(" ()") or None)
            self.event("backend-failed", f"{backend} did not start{of}: {why}", backend=backend)
            return None

    def _session(self, backend: str, target: str, round_: int, cores: int | None, entry: dict[str, Any],
                 progress: Progress) -> bool:
        """One start of `backend` in round `round_`, on `cores` of the server CPUs (None: all):
        its levels at that count, then the stop. False if it failed (recorded in `entry`)."""
        cpus = self.server_cpus[:cores] if cores else self.server_cpus
        of = self._round(round_)
        running = self._launch(backend, target, of, cpus, entry, progress)
        if running is None:
            entry["round"] = round_
            return False
        driver_stderr = ""
        last_session = cores == self.plan.core_counts[-1]
        try:
            for tool in self.options.drivers:
                name = backend if tool == self.options.drivers[0] else f"{backend} ({tool})"
                # The driver gets the address as given: 0.0.0.0 as a destination means this host.
                specs = self.plan.specs(host=self.options.host, port=running.port, cores=cores, backend=backend)
                with tempfile.TemporaryDirectory(prefix=f"concurbench-{safe_name(backend)}-") as workdir:
                    locust = tool == "locust"
                    driver = DriverProcess(specs, workdir=Path(workdir), cpus=self.driver_cpus,
                                           module=DRIVER_MODULES[tool],
                                           procs=self.options.driver_procs if locust else 1,
                                           remote_workers=self.options.remote_workers if locust else 0,
                                           master_bind=self.options.host, token=self.options.worker_token)
                    try:
                        self._drive(name, round_, running, driver, progress, cores)
                        if tool == self.options.drivers[-1] and last_session:  # the round is measured: the rest is cleanup
                            entry["rounds_done"] = round_ + 1
                            if round_ + 1 == self.plan.rounds:
                                entry.update(status="ok", error=None)
                    except BackendFailed as error:
                        if error.kind == "driver-failed":
                            driver.kill()
                        raise
                    finally:
                        driver.stop()
                        driver_stderr = "".join(driver.stderr)
        except (BackendFailed, OSError) as error:
            if isinstance(error, OSError):  # the driver's files or process (results.json's: ResultsError)
                error = BackendFailed(f"the driver failed {self.doing}: {error}", kind="driver-failed")
            progress.message(f"{backend}: FAILED: {error}")
            entry.update(status="failed", error=str(error), step=self.step, driver_stderr=driver_stderr, round=round_)
            self.event(error.kind, f"{backend}: {error}", backend=backend, step=self.step)
            return False
        finally:
            self.doing, self.step = f"while {backend} was stopping{of}", None
            entry["exit_status"] = running.stop()
            entry["stderr_tail"] = running.stderr_tail()
        return True

    def _drive(self, backend: str, round_: int, running: RunningBackend, driver: DriverProcess,
               progress: Progress, cores: int | None = None, *, probe: PlannedStep | None = None) -> dict[str, Any]:
        """Turn the driver's windows into step records until it has measured `backend`'s
        steps of this start (or the one `probe` of a rate search: its record is returned, not
        stored). Raises BackendFailed if the backend, the driver or a worker dies."""
        sampler = WindowSampler(server_cpu=partial(server_cpu_seconds, running.process.pid),
                                server_memory=partial(server_memory, running.process.pid), driver=driver.pids,
                                server_cpus=running.cpus, driver_cpus=self.driver_cpus)
        sampler.sample()
        if probe is not None:
            steps, before, expected = [probe], 0, 1
        else:
            steps = self.plan.steps_of(backend, round_, cores=cores)
            in_round = self.plan.steps_of(backend, round_)
            expected = len(self.plan.steps_of(backend))  # over every round, as "after 3 of 8 steps" says
            # Measured before this start: in the rounds before (a backend that failed one is not
            # here), and in this round at the CPU counts before.
            before = round_ * len(in_round) + in_round.index(steps[0])
        record: dict[str, Any] = {}
        # GET /runtime after each step (not a probe): whether a free-threaded server's GIL came back
        checks = RuntimeChecks(running.host, running.port) if probe is None and not running.name.startswith("cmd:") else None
        done = 0
        first_phase = "warmup" if self.scenario.warmup_s else "measure"  # of each level
        phase = first_phase
        worker_gone_at: float | None = None
        where = self._at(backend, steps, done, phase)
        while done < len(steps):
            try:
                event = driver.events.get(timeout=0.5)
            except queue.Empty:
                event = {"type": "idle"}
            if not running.alive():
                raise BackendFailed(f"the backend exited ({exit_words(running.process.returncode)}) {where}, "
                                    f"after {before + done} of {expected} steps", kind="backend-failed")
            if event is None:
                status = driver.process.wait()
                last = "".join(driver.stderr).strip().splitlines()
                raise BackendFailed(f"the driver exited ({exit_words(status)}) {where}, after {before + done} of {expected} "
                                    "steps" + (f": {last[-1]}" if last else ""), kind="driver-failed")
            gone = driver.dead_worker()
            if gone is not None:
                # Workers quit once the master is done: give its last events a moment to arrive.
                worker_gone_at = worker_gone_at or time.monotonic()
                if time.monotonic() - worker_gone_at > WORKER_GRACE_S:
                    raise BackendFailed(f"a driver worker (pid {gone.pid}) exited ({exit_words(gone.returncode)}) {where}, "
                                        f"after {before + done} of {expected} steps", kind="driver-failed")
            sampler.sample()
            if checks:  # into the records: written with the next save (a step's, or the start's end)
                checks.merge(progress.message)
            if event["type"] == "progress":
                phase = event["phase"]
                where = self._at(backend, steps, done, phase)
                progress.tick(Tick(backend, self.doing.removeprefix(f"during {backend} "), event["rps"],
                                   event["errors"]))
            elif event["type"] == "result":
                level = steps[event["spec"]].level
                result = DriverResult.from_dict(json.loads(Path(event["path"]).read_text()))
                # The window closed as its result was said, and lasted duration_s before that.
                server, driver_cpu = sampler.window(end=event.get("received", time.monotonic()),
                                                    seconds=result.duration_s, requests=result.requests)
                record = step_record(backend, users=level.users, idle_connections=level.idle_connections,
                                     repetition=round_, result=result.to_dict(), server=server, driver=driver_cpu,
                                     server_cpus=running.cpus, cores=level.cores, route=level.route)
                done += 1
                phase = first_phase
                where = self._at(backend, steps, done, phase)  # the driver is on to the next level already
                if probe is not None:
                    return record
                self.results["steps"].append(record)
                self.save()
                if checks:
                    checks.ask(record, f"{backend}: {level.name} rep {round_ + 1}")
                errors = sum(record["errors"].values())
                progress.message(f"{backend}: {level.name} rep {round_ + 1}: "
                                 f"{record['rps']:,.0f} req/s, p99 {ms_text(record['p99_us'])}, errors {errors}"
                                 + (f" [{', '.join(record['flags'])}]" if record["flags"] else ""))
        if checks and checks.finish(progress.message):
            self.save()
        return record

    def finish(self, status: str) -> None:
        """Mark the run `status` and write it; summary.csv too (a warning if that fails)."""
        self.doing, self.backend, self.step = "while saving the results", None, None
        flag_high_spread(self.results["steps"])
        self.results["status"] = status
        try:
            self.results["findings"] = run_findings(self.results)
        except Exception as error:  # noqa: BLE001 - derived sentences must not cost the measured run
            print(f"concurbench: warning: the findings were not derived: {error}", file=sys.stderr)
        self.save()
        try:
            write_summary_csv(self.run_dir, self.results["steps"])
        except OSError as error:
            print(f"concurbench: warning: summary.csv not written: {error.strerror or error}", file=sys.stderr)
