"""A run's life, from its plan to its last save, in one class: Run.

The run goes in rounds, one per repetition. In each round, for each backend in turn: start
it on the server CPUs, start one driver process on the driver CPUs with one spec per load
level (a warm-up, then one window), turn each window the driver reports into a step record
(its repetition is the round), and stop it. results["metadata"]["order"] records each
(backend, round) as it is started. Every finished step is written to results.json at once
(atomically), so a failure or Ctrl+C later keeps it. A backend that fails to start or dies
is recorded with its stderr tail and left out of the later rounds; the run goes on. A rate
search (harness.run.capacity) comes before the rounds and uses the same steps.

Around each window the orchestrator measures what the driver cannot (harness.run.sampling):
the server tree's CPU seconds, CPU us per request and memory, the whole local driver's CPU
per driver CPU, the steal on both sides, and what other processes used on the server's CPUs.

A scenario with [network] runs over an emulated link (harness.run.shaping, open_link): the
backend in the link's server namespace, each driver in its client namespace, one driver per
round trip of the sweep, after the link is reshaped and measured (each step records both).
"""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any

from harness.drivers import DRIVER_MODULES
from harness.drivers.spec import DriverResult, DriverSpec
from harness.results.findings import findings as run_findings
from harness.results.model import Run as Results
from harness.results.steps import flag_high_spread, step_record
from harness.results.store import RESULTS_FILE, ResultsError, file_name, new_run_dir, write_results
from harness.results.summary import floor_line, write_summary_csv
from harness.run.calibration import calibrate_cpu_work
from harness.run.capacity import CapacitySearch
from harness.run.driver import DriverProcess
from harness.run.faults import BackendFailed, RunFailed, Session, exit_words, first_line, plural_steps
from harness.run.floor import FLOOR_SECONDS, FloorError, measure_floor
from harness.run.interpreter import Interpreter, own_interpreter
from harness.run.launch import LaunchError, RunningBackend, in_namespace, launch_backend
from harness.run.limits import ensure_fd_limit
from harness.run.metadata import collect_metadata
from harness.run.options import RunOptions
from harness.run.plan import Plan, PlannedStep, plan_run
from harness.run.position import Activity, Position, Start, StepAt
from harness.run.progress import Progress, Tick
from harness.results.units import ms_text
from harness.run.runtime import RuntimeChecks, ask_runtime
from harness.run.sampling import WindowSampler, server_cpu_seconds, server_memory, steal_at_start
from harness.run.shaping import LinkError, RunLink
from harness.run.targets import registry_name
from harness.scenario import Scenario

__all__ = ["BackendFailed", "Run", "RunFailed"]

WORKER_GRACE_S = 1.0  # a dead Locust worker with the master still going: a fault after this long


class Run:
    """One `concurbench run`, the one owner of its life. Its steps: the plan (made here, with
    the results document), calibrate, measure_floor, execute (per backend and round:
    start_backend, then inside `serving` a driver per tool, `drive` and `record_step` per
    window, then stop_backend), finish. It records as it goes (save, event) and knows where it
    stands (`position`), for the record of a fault or a Ctrl+C (stop_here, interrupted,
    write_failed)."""

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
        self.link: RunLink | None = None  # the emulated link, when the scenario has [network]: open_link
        self.position = Position(Activity.PREPARING)  # where the run stands: see stop_here
        self.stopped_at: Position | None = None  # where the first fault or Ctrl+C found it
        self.saved_steps = 0  # steps in the results.json on disk
        self.run_dir = new_run_dir(options.out_root, scenario.name)
        self.save()

    # --- before the backends ------------------------------------------------------------------

    def calibrate(self) -> None:
        """/cpu work per ms, measured once here and given to every backend (see start_backend)."""
        self.position = Position(Activity.CALIBRATING)
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
        self.position = Position(Activity.MEASURING_FLOOR)
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

    def open_link(self) -> str | None:
        """The emulated link of a scenario with [network], made for the whole run (on this,
        the main thread: the relay dies with the thread that made it); returns the line that
        says it, or None for a loopback run. RunFailed if it cannot be made."""
        network = self.scenario.network
        if network is None:
            return None
        self.position = Position(Activity.LINKING)
        try:
            self.link = RunLink(network, self.run_dir.name, relay_cpus=self.driver_cpus)
        except LinkError as error:
            self.stop_here()
            raise RunFailed(f"the emulated link could not be made: {error}") from None
        self.results["metadata"]["network"] = {
            **network.to_dict(), "server_ns": self.link.server_ns, "client_ns": self.link.client_ns,
            "server_addr": self.link.server_addr, "relay_cpus": list(self.driver_cpus)}
        self.save()
        rtts = ", ".join(f"{rtt:g}" for rtt in network.rtts_ms)
        return (f"emulated link: the server in namespace {self.link.server_ns} at {self.link.server_addr}, the "
                f"driver in {self.link.client_ns}; round trips {rtts} ms, each measured before its steps")

    def close_link(self) -> None:
        """Remove the emulated link (after every process inside it has stopped); a warning if
        something stays, which the next run's sweep removes."""
        if self.link is None:
            return
        try:
            self.link.close()
        except LinkError as error:
            print(f"concurbench: warning: the emulated link was not all removed: {error}", file=sys.stderr)
        self.link = None

    @property
    def target_host(self) -> str:
        """The address our backends bind and the driver targets: the link's server address
        over an emulated link, else --host."""
        return self.link.server_addr if self.link is not None else self.options.host

    # --- the backends -------------------------------------------------------------------------

    def execute(self, progress: Progress) -> None:
        """A rate search first, if the scenario has one (its levels then make the plan's);
        then every round, every backend in turn (A B C A B C); one that failed sits out the
        later rounds."""
        if self.scenario.search is not None:
            search = CapacitySearch(self)
            found = {}
            for backend in self.plan.backends:
                self.results["metadata"]["order"].append({"backend": backend, "round": "search"})
                found[backend] = search.search(backend, self.backends[backend], progress).levels
            self.plan = self.plan.after_search(found)
        for round_, backend in self.plan.order:
            entry = self.results["backends"].get(backend)
            if entry is not None and entry["status"] == "failed":
                continue
            if entry is not None and self.scenario.search is not None and not self.plan.levels_at(backend=backend):
                entry.update(status="ok", error=None)  # it held no rate of the range: nothing to repeat
                continue
            self.results["metadata"]["order"].append({"backend": backend, "round": round_})
            self.run_backend(backend, self.backends[backend], round_, progress)
            self.position = Position(Activity.BETWEEN, backend, Start(round_, self.plan.rounds))
            self.save()
        self.position = Position(Activity.AFTER_LAST)

    def run_backend(self, backend: str, target: str, round_: int, progress: Progress) -> dict[str, Any]:
        """Round `round_` of `backend`: start `target` (ours, or cmd:...), drive it through
        every level with each driver, stop it (once per server CPU count when the scenario
        sweeps them); returns its entry in results.

        The entry is in results from its first round on, "running" until its last round is
        done ("ok") or one fails ("failed"); a Ctrl+C or a failed write then finds it there
        (see interrupted, write_failed). "rounds_done" counts the rounds it finished."""
        entry = self.backend_entry(backend, target)
        start = Start(round_, self.plan.rounds)
        for cores in self.plan.core_counts:
            running = self.start_backend(backend, target, start,
                                         self.server_cpus[:cores] if cores else self.server_cpus, progress)
            if running is None:
                break
            with self.serving(backend, running, start, progress) as session:
                for rtt in self.plan.round_trips:
                    link = self.shape_link(backend, rtt, running, progress) if rtt is not None else None
                    steps = self.plan.steps_of(backend, round_, cores=cores, rtt=rtt)
                    # The driver gets the address as given: 0.0.0.0 as a destination means this host.
                    specs = self.plan.specs(host=self.target_host, port=running.port, cores=cores, backend=backend,
                                            rtt=rtt)
                    last = cores == self.plan.core_counts[-1] and rtt == self.plan.round_trips[-1]
                    for tool in self.options.drivers:
                        series = backend if tool == self.options.drivers[0] else f"{backend} ({tool})"
                        with self.start_driver(specs, session, tool=tool, name=series) as driver:
                            self.drive(running, driver, steps, progress, series=series, link=link)
                            if tool == self.options.drivers[-1] and last:  # measured: the rest is cleanup
                                entry["rounds_done"] = round_ + 1
                                if round_ + 1 == self.plan.rounds:
                                    entry.update(status="ok", error=None)
            if session.failed:
                break
        return entry

    def shape_link(self, backend: str, rtt_ms: float, running: RunningBackend,
                   progress: Progress) -> dict[str, Any]:
        """Set the emulated link to round trip `rtt_ms` and measure it against `running`: the
        "link" record of the steps that follow (a probe that failed is an event, and leaves
        its figure None)."""
        assert self.link is not None  # a level has a round trip only over a link
        self.position = Position(Activity.SHAPING, backend)
        try:
            record, failed = self.link.reshape(rtt_ms, running.port)
        except LinkError as error:
            raise BackendFailed(f"the emulated link could not be shaped to {rtt_ms:g} ms: {error}",
                                kind="link-failed") from None
        if failed:
            self.event("link-unmeasured", f"{backend}: {failed}", backend=backend)
        measured = record["measured_rtt_ms"]
        progress.message(f"{backend}: link at {rtt_ms:g} ms round trip, measured "
                         f"{'?' if measured is None else f'{measured:.1f}'} ms")
        return record

    def backend_entry(self, backend: str, target: str) -> dict[str, Any]:
        """`backend`'s entry in results["backends"], made at its first start."""
        external = target.startswith("cmd:")
        command = target.replace(sys.executable, "python") if external else None  # a peer's: no path of this machine
        entry: dict[str, Any] = self.results["backends"].setdefault(
            backend, {"status": "running", "error": None, "command": command, "rounds_done": 0})
        if not external:
            entry.setdefault("python", self.pythons.get(backend, own_interpreter()).to_dict())
        return entry

    def start_backend(self, backend: str, target: str, start: Start, cpus: tuple[int, ...],
                      progress: Progress) -> RunningBackend | None:
        """Start `backend` on `cpus`, once it answers; None if it did not start (recorded in
        its entry, with an event)."""
        self.position = Position(Activity.STARTING, backend, start)
        said = f" ({start.label})" if start.label else ""
        progress.message(f"{backend}: starting on CPU {','.join(map(str, cpus))}{said}")
        external = target.startswith("cmd:")
        extra = () if external else self.scenario.server_args_for(registry_name(target))  # our servers' flags
        python = self.pythons.get(backend)
        try:
            return launch_backend(target, host=self.target_host, cpus=cpus, extra_args=extra,
                                  env={"CONCURBENCH_CPU_ITERS_PER_MS": str(self.cpu_iters_per_ms)},
                                  python=python.path if python else None,
                                  netns=self.link.server_ns if self.link is not None else None)
        except LaunchError as error:
            why = str(error).splitlines()[0]
            progress.message(f"{backend}: FAILED to start{said}: {why}")
            self.results["backends"][backend].update(status="failed", error=why, stderr_tail=error.stderr_tail,
                                                     round=start.recorded)
            self.event("backend-failed", f"{backend} did not start{said}: {why}", backend=backend)
            return None

    @contextmanager
    def serving(self, backend: str, running: RunningBackend, start: Start, progress: Progress) -> Iterator[Session]:
        """The life of a started backend around the work done with it: a fault of the backend
        or its driver (BackendFailed; OSError: the driver's files or process) is recorded as
        the backend's failure, and the run goes on (`session.failed` says so); stop_backend
        at the end, whatever happened."""
        session = Session()
        try:
            yield session
        except (BackendFailed, OSError) as error:
            if isinstance(error, OSError):  # results.json's own are ResultsError: they stop the run
                error = BackendFailed(f"the driver failed {self.position}: {error}", kind="driver-failed")
            session.failed = True
            progress.message(f"{backend}: FAILED: {error}")
            step = self.position.step_dict
            self.results["backends"][backend].update(status="failed", error=str(error), step=step,
                                                     driver_stderr=session.driver_stderr, round=start.recorded)
            self.event(error.kind, f"{backend}: {error}", backend=backend, step=step)
        finally:
            self.stop_backend(backend, running, start)

    @contextmanager
    def start_driver(self, specs: Sequence[DriverSpec], session: Session, *, name: str,
                     tool: str = "locust") -> Iterator[DriverProcess]:
        """A driver process (`tool`) for `specs` on the driver CPUs, in a directory of its
        own; stopped at the end (killed at once if it failed), its last stderr kept in
        `session`."""
        locust = tool == "locust"
        with tempfile.TemporaryDirectory(prefix=f"concurbench-{file_name(name, fallback='driver')}-") as workdir:
            driver = DriverProcess(list(specs), workdir=Path(workdir), cpus=self.driver_cpus,
                                   module=DRIVER_MODULES[tool], procs=self.options.driver_procs if locust else 1,
                                   remote_workers=self.options.remote_workers if locust else 0,
                                   master_bind=self.options.host, master_port=self.options.master_port,
                                   token=self.options.worker_token,
                                   netns=self.link.client_ns if self.link is not None else None)
            try:
                yield driver
            except BackendFailed as error:
                if error.kind == "driver-failed":
                    driver.kill()
                raise
            finally:
                driver.stop()
                session.driver_stderr = "".join(driver.stderr)

    def drive(self, running: RunningBackend, driver: DriverProcess, steps: Sequence[PlannedStep],
              progress: Progress, *, series: str | None = None, keep: bool = True,
              link: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Turn the driver's windows into step records, one per step of `steps` (the driver's
        specs, in order), stored under `series` (default: the steps' backend): each recorded
        as it ends (record_step), or, for a rate search's probes (`keep` False), only
        returned; over an emulated link, with `link` (shape_link's record) and the relay's CPU
        over the window. Raises BackendFailed if the backend, the driver or a worker dies."""
        backend = steps[0].backend
        name = series or backend
        sampler = WindowSampler(server_cpu=partial(server_cpu_seconds, running.process.pid),
                                server_memory=partial(server_memory, running.process.pid), driver=driver.pids,
                                server_cpus=running.cpus, driver_cpus=self.driver_cpus,
                                relay=self.link.relay_pid if self.link is not None and link is not None else None)
        sampler.sample()
        before, expected = 0, len(steps)
        if keep:  # as "after 3 of 8 steps" says: over every round
            round_ = steps[0].repetition
            in_round = self.plan.steps_of(backend, round_)
            expected = len(self.plan.steps_of(backend))
            # Measured before this start: in the rounds before (a backend that failed one is not
            # here), and in this round at the CPU counts before.
            before = round_ * len(in_round) + in_round.index(steps[0])
        # GET /runtime after each step (not a probe): whether a free-threaded server's GIL came back
        checks = RuntimeChecks(running.host, running.port, ask=partial(_ask_in, running.netns)) \
            if keep and not running.name.startswith("cmd:") else None
        records: list[dict[str, Any]] = []
        warmup = bool(self.scenario.warmup_s)  # each level's first phase
        worker_gone_at: float | None = None
        self._at(steps, 0, warmup, series=series)
        while len(records) < len(steps):
            try:
                event = driver.events.get(timeout=0.5)
            except queue.Empty:
                event = {"type": "idle"}
            done = f"after {before + len(records)} of {expected} steps"
            if not running.alive():
                raise BackendFailed(f"the backend exited ({exit_words(running.process.returncode)}) {self.position}, "
                                    f"{done}", kind="backend-failed")
            if event is None:
                status = driver.process.wait()
                last = "".join(driver.stderr).strip().splitlines()
                raise BackendFailed(f"the driver exited ({exit_words(status)}) {self.position}, {done}"
                                    + (f": {last[-1]}" if last else ""), kind="driver-failed")
            gone = driver.dead_worker()
            if gone is not None:
                # Workers quit once the master is done: give its last events a moment to arrive.
                worker_gone_at = worker_gone_at or time.monotonic()
                if time.monotonic() - worker_gone_at > WORKER_GRACE_S:
                    raise BackendFailed(f"a driver worker (pid {gone.pid}) exited ({exit_words(gone.returncode)}) "
                                        f"{self.position}, {done}", kind="driver-failed")
            sampler.sample()
            if checks:  # into the records: written with the next save (a step's, or the start's end)
                checks.merge(progress.message)
            if event["type"] == "progress":
                step = self._at(steps, len(records), event["phase"] == "warmup", series=series)
                if step is not None:
                    progress.tick(Tick(name, step, event["rps"], event["errors"]))
            elif event["type"] == "result":
                planned = steps[event["spec"]]
                level = planned.level
                result = DriverResult.from_dict(json.loads(Path(event["path"]).read_text()))
                # The window closed as its result was said, and lasted duration_s before that.
                end = event.get("received", time.monotonic())
                server, driver_cpu = sampler.window(end=end, seconds=result.duration_s, requests=result.requests)
                window_link = None if link is None else \
                    {**link, "relay_cpu_percent": sampler.relay_percent(end=end, seconds=result.duration_s)}
                record = step_record(name, users=level.users, idle_connections=level.idle_connections,
                                     repetition=planned.repetition, result=result.to_dict(), server=server,
                                     driver=driver_cpu, server_cpus=running.cpus, cores=level.cores,
                                     route=level.route, link=window_link)
                records.append(record)
                self._at(steps, len(records), warmup, series=series)  # the driver is on to the next level
                if keep:
                    self.record_step(record, planned, name, checks, progress)
        if checks and checks.finish(progress.message):
            self.save()
        return records

    def _at(self, steps: Sequence[PlannedStep], done: int, warmup: bool, *, series: str | None) -> StepAt | None:
        """The run is in the step after `done` of `steps` (its warm-up or its window), or,
        past the last, waiting for the driver to stop; returns that step."""
        backend = steps[0].backend
        if done >= len(steps):
            self.position = Position(Activity.STOPPING_DRIVER, backend, series=series)
            return None
        step = StepAt(steps[done].level, steps[done].repetition, self.plan.rounds, warmup)
        self.position = Position(Activity.DRIVING, backend, step=step, series=series)
        return step

    def record_step(self, record: dict[str, Any], planned: PlannedStep, series: str, checks: RuntimeChecks | None,
                    progress: Progress) -> None:
        """A measured window into results.json at once; then GET /runtime is asked for it, and
        progress says it."""
        self.results["steps"].append(record)
        self.save()
        level, rep = planned.level, planned.repetition + 1
        if checks:
            checks.ask(record, f"{series}: {level.name} rep {rep}")
        errors = sum(record["errors"].values())
        progress.message(f"{series}: {level.name} rep {rep}: {record['rps']:,.0f} req/s, p99 "
                         f"{ms_text(record['p99_us'], unit=' ms')}, errors {errors}"
                         + (f" [{', '.join(record['flags'])}]" if record["flags"] else ""))

    def stop_backend(self, backend: str, running: RunningBackend, start: Start) -> None:
        """SIGTERM, the grace, SIGKILL (harness.run.launch); its exit status and last stderr into its entry."""
        self.position = Position(Activity.STOPPING, backend, start)
        entry = self.results["backends"][backend]
        entry["exit_status"] = running.stop()
        entry["stderr_tail"] = running.stderr_tail()

    def finish(self, status: str) -> None:
        """Mark the run `status` and write it; summary.csv too (a warning if that fails)."""
        self.position = Position(Activity.SAVING)
        flag_high_spread(self.results["steps"])
        self.results["status"] = status
        try:
            self.results["findings"] = run_findings(self.typed())
        except Exception as error:  # noqa: BLE001 - derived sentences must not cost the measured run
            print(f"concurbench: warning: the findings were not derived: {error}", file=sys.stderr)
        self.save()
        try:
            write_summary_csv(self.run_dir, self.typed().steps)
        except OSError as error:
            print(f"concurbench: warning: summary.csv not written: {error.strerror or error}", file=sys.stderr)

    # --- the record ---------------------------------------------------------------------------

    def typed(self) -> Results:
        """The document written so far as the results model: what crosses to the summaries,
        findings and charts (the document itself is this class's to write)."""
        return Results.of(self.results)

    def save(self) -> None:
        """results.json, atomically (a failed write stops the run where it stands: ResultsError)."""
        try:
            write_results(self.run_dir, self.results)
        except ResultsError:
            self.stop_here()
            raise
        self.saved_steps = len(self.results["steps"])

    def event(self, kind: str, detail: str, *, backend: str | None = None,
              step: dict[str, Any] | None = None) -> None:
        """Record what happened to the run (see EVENT_KINDS); written with the next save."""
        self.results["events"].append({"t": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
                                       "kind": kind, "backend": backend, "step": step,
                                       "detail": detail.splitlines()[0] if detail else ""})

    def stop_here(self) -> None:
        """Note where the run stands as a fault stops it, before the cleanup on the way out
        moves on (the first fault counts: a Ctrl+C calls this from its signal handler)."""
        if self.stopped_at is None:
            self.stopped_at = self.position

    def interrupted(self, signame: str) -> Position:
        """A Ctrl+C (or SIGTERM): record where it found the run, and what was running as
        interrupted; returns where (said "during selectors users=4 rep 1/2")."""
        where = self.stopped_at or self.position
        self._unfinished("interrupted", f"interrupted ({signame}) {where}", where)
        self.event("interrupted", f"{signame} {where}", backend=where.running, step=where.step_dict)
        return where

    def write_failed(self, error: ResultsError) -> str:
        """results.json cannot be written: the run stops. Record why (one last atomic try, in
        case the space came back) and return the one line that says it."""
        reason = getattr(error, "reason", None) or str(error)
        measured, kept = len(self.results["steps"]), self.saved_steps
        where = self.stopped_at or self.position
        self._unfinished("failed", f"stopped: results.json could not be written ({reason})", where)
        self.event("write-failed", f"cannot write results.json ({reason}) {where}", backend=where.running,
                   step=where.step_dict)
        self.results["status"] = "failed"
        try:
            self.save()
            held = f"all {plural_steps(measured)} and this error are in {self.run_dir / RESULTS_FILE} after all"
        except ResultsError:
            held = f"{self.run_dir / RESULTS_FILE} holds the {plural_steps(kept)} written before"
        return f"concurbench: error: cannot write results ({reason}): stopped after {plural_steps(measured)}; {held}"

    def _unfinished(self, status: str, why: str, where: Position) -> None:
        """Every backend not done with its rounds ends `status`: the one running at `where`,
        the others between two of their rounds."""
        for name, entry in self.results["backends"].items():
            if entry.get("status") != "running":
                continue
            if name == where.running:
                entry.update(status=status, error=why, step=where.step_dict)
            else:
                done = entry.get("rounds_done", 0)
                entry.update(status=status, error=f"{why}, after {done} of {self.plan.rounds} rounds", step=None)


def _ask_in(netns: str | None, host: str, port: int) -> dict[str, Any]:
    """GET /runtime from inside the server's network namespace, if it runs in one."""
    return in_namespace(netns, lambda: ask_runtime(host, port))


