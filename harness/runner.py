"""Run a scenario against backends: the plan, the steps, the results on disk.

For each backend: launch it on the server CPUs, start one driver process on the driver
CPUs with one spec per user level, and turn each window the driver reports into a step
record. Every finished step is written to results.json at once (atomically), so a
failure or Ctrl+C later keeps it. A backend that fails to start or dies is recorded with
its stderr tail, and the run goes on with the next one.
"""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from harness.driver_process import DRIVER_MODULES, DriverProcess, driver_specs
from harness.drivers.spec import DriverResult, DriverSpec
from harness.launcher import (LaunchError, RunningBackend, ServerSampler, calibrate_cpu_work, default_pinning,
                              kill_all, launch_backend, reap_all)
from harness.limits import ensure_fd_limit, needed_descriptors
from harness.metrics import summarize
from harness.progress import Progress, Tick, make_progress
from harness.scenario import Scenario
from harness.store import (DRIVER_BOUND, RESULTS_FILE, ResultsError, collect_metadata, new_run_dir,
                           write_results, write_summary_csv)
from harness.summary import summary_rows, summary_table

# A step whose driver used more than this share of its CPU measured the driver, not the
# server: the figure is a floor and is flagged.
DRIVER_BOUND_PERCENT = 90.0
HIGH_SPREAD = "high-spread"
DRIVER_START_S = 1.0  # importing locust, per backend: counted in the ETA


WORKER_GRACE_S = 1.0  # a dead Locust worker with the master still going: a fault after this long


class RunFailed(Exception):
    """Nothing can be measured (the /cpu calibration failed): the run stops."""


class BackendFailed(Exception):
    """The backend or its driver died mid-run; `kind` is the event recorded for it."""

    def __init__(self, message: str, *, kind: str = "backend-failed") -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True, kw_only=True)
class RunOptions:
    out_root: Path
    server_cpus: tuple[int, ...] | None = None
    driver_cpus: tuple[int, ...] | None = None
    host: str = "127.0.0.1"
    report: bool = True
    # "locust", "wrk", or both in turn against the same server process; the second one's
    # steps are stored under "BACKEND (wrk)", so the two sit side by side in every chart.
    drivers: tuple[str, ...] = ("locust",)
    # Locust load processes. Above 1, Locust's master/worker mode: a master that keeps time and
    # merges the histograms, and this many local workers, one per driver CPU in turn.
    driver_procs: int = 1
    # Workers on other machines (`concurbench worker --master THIS_HOST`) the master also waits
    # for; then it listens on all interfaces, on Locust's port 5557.
    remote_workers: int = 0


def step_record(backend: str, spec: DriverSpec, repetition: int, result: DriverResult,
                server: dict[str, Any]) -> dict[str, Any]:
    data = result.to_dict()
    flags = [DRIVER_BOUND] if result.driver_cpu_percent > DRIVER_BOUND_PERCENT else []
    return {
        "backend": backend, "users": spec.users, "repetition": repetition, "status": "ok", "error": None,
        "requests": result.requests, "errors": data["errors"], "rps": result.rps, "duration_s": result.duration_s,
        **{key: data[key] for key in ("p50_us", "p90_us", "p99_us", "p999_us", "max_us", "mean_us")},
        "histogram": result.histogram, "timeseries": data["timeseries"],
        "server": server, "driver": {"cpu_percent": result.driver_cpu_percent, "workers": result.workers,
                                     "worker_hosts": list(result.worker_hosts)},
        "unfinished": result.unfinished, "unfinished_max_us": result.unfinished_max_us,
        "background": data["background"], "interrupted": result.interrupted, "flags": flags,
        "rate": result.rate, "uncorrected": data["uncorrected"], "starved_users": result.starved_users,
        "idle_connections": spec.idle_connections,  # asked for; background.idle_connected: how many were held
    }


class Run:
    """One `concurbench run`: owns the results dict and writes it after every change."""

    def __init__(self, scenario: Scenario, backends: dict[str, str], options: RunOptions) -> None:
        self.scenario = scenario
        self.backends = backends
        self.options = options
        default_server, default_driver = default_pinning()
        self.server_cpus = options.server_cpus or default_server
        self.driver_cpus = options.driver_cpus or default_driver
        metadata = collect_metadata(scenario_path=scenario.path, scenario_sha256=scenario.sha256,
                                    pinning={"server": list(self.server_cpus), "driver": list(self.driver_cpus)})
        metadata["scenario"]["name"] = scenario.name
        metadata["scenario"]["overrides"] = list(scenario.overrides)
        metadata["drivers"] = list(options.drivers)
        # Raised here, inherited by every backend and driver (c10k needs > 10,000).
        self.fd_limit = ensure_fd_limit(needed_descriptors(scenario))
        metadata["fd_limit"] = self.fd_limit.to_dict()
        self.cpu_iters_per_ms: float | None = None  # see calibrate()
        self.results: dict[str, Any] = {"metadata": metadata, "scenario": scenario.to_dict(), "status": "running",
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
            raise RunFailed(f"the /cpu calibration failed: {last[-1] if last else _first_line(error)}") from None
        self.results["metadata"]["cpu_iters_per_ms"] = round(self.cpu_iters_per_ms, 1)
        self.save()

    def save(self) -> None:
        try:
            write_results(self.run_dir, self.results)
        except ResultsError:
            self.stop_here()
            raise
        self.saved_steps = len(self.results["steps"])

    def stop_here(self) -> None:
        """Note where the run is as a fault stops it, before the cleanup on the way out moves
        on (the first fault counts: a Ctrl+C calls this from its signal handler)."""
        if self.stopped_at is None:
            self.stopped_at = (self.doing, self.backend, self.step)

    def event(self, kind: str, detail: str, *, backend: str | None = None,
              step: dict[str, Any] | None = None) -> None:
        """Record what happened to the run (see EVENT_KINDS); written with the next save."""
        self.results["events"].append({"t": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
                                       "kind": kind, "backend": backend, "step": step,
                                       "detail": detail.splitlines()[0] if detail else ""})

    def execute(self, progress: Progress) -> None:
        for backend, target in self.backends.items():
            self.run_backend(backend, target, progress)
            self.doing, self.backend, self.step = f"between backends (after {backend})", None, None
            self.save()
        self.doing = "after the last backend"

    def interrupted(self, signame: str) -> str:
        """A Ctrl+C (or SIGTERM): record where it found the run, and what was running as
        interrupted; returns where ("during selectors users=4 rep 1/2")."""
        doing, backend, step = self.stopped_at or (self.doing, self.backend, self.step)
        for entry in self.results["backends"].values():
            if entry.get("status") == "running":
                entry.update(status="interrupted", error=f"interrupted ({signame}) {doing}", step=step)
        self.event("interrupted", f"{signame} {doing}", backend=backend, step=step)
        return doing

    def write_failed(self, error: ResultsError) -> str:
        """results.json cannot be written: the run stops. Record why (one last atomic try, in
        case the space came back) and return the one line that says it."""
        reason = getattr(error, "reason", None) or str(error)
        measured, kept = len(self.results["steps"]), self.saved_steps
        doing, backend, step = self.stopped_at or (self.doing, self.backend, self.step)
        for entry in self.results["backends"].values():
            if entry.get("status") == "running":
                entry.update(status="failed", error=f"stopped: results.json could not be written ({reason})",
                             step=step)
        self.event("write-failed", f"cannot write results.json ({reason}) {doing}", backend=backend, step=step)
        self.results["status"] = "failed"
        try:
            self.save()
            held = f"all {_steps(measured)} and this error are in {self.run_dir / RESULTS_FILE} after all"
        except ResultsError:
            held = f"{self.run_dir / RESULTS_FILE} holds the {_steps(kept)} written before"
        return f"concurbench: error: cannot write results ({reason}): stopped after {_steps(measured)}; {held}"

    def run_backend(self, backend: str, target: str, progress: Progress) -> dict[str, Any]:
        """Launch `target` (ours, or cmd:...), drive it, and return its entry in results.

        The entry is in results from the start, "running" until the backend is done with;
        a Ctrl+C or a failed write then finds it there (see interrupted, write_failed)."""
        external = target.startswith("cmd:")
        entry: dict[str, Any] = {"status": "running", "error": None, "command": target if external else None}
        self.results["backends"][backend] = entry
        self.doing, self.backend, self.step = f"while {backend} was starting", backend, None
        progress.message(f"{backend}: starting on CPU {','.join(map(str, self.server_cpus))}")
        extra = () if external else self.scenario.server_args_for(backend)  # our servers' flags
        try:
            running = launch_backend(target, host=self.options.host, cpus=self.server_cpus, extra_args=extra,
                                     env={"CONCURBENCH_CPU_ITERS_PER_MS": str(self.cpu_iters_per_ms)})
        except LaunchError as error:
            why = str(error).splitlines()[0]
            progress.message(f"{backend}: FAILED to start: {why}")
            entry.update(status="failed", error=why, stderr_tail=error.stderr_tail)
            self.event("backend-failed", f"{backend} did not start: {why}", backend=backend)
            return entry
        driver_stderr = ""
        try:
            for tool in self.options.drivers:
                name = backend if tool == self.options.drivers[0] else f"{backend} ({tool})"
                # The driver gets the address as given: 0.0.0.0 as a destination means this host.
                specs = driver_specs(self.scenario, host=self.options.host, port=running.port)
                with tempfile.TemporaryDirectory(prefix=f"concurbench-{_safe(backend)}-") as workdir:
                    locust = tool == "locust"
                    driver = DriverProcess(specs, workdir=Path(workdir), cpus=self.driver_cpus,
                                           module=DRIVER_MODULES[tool],
                                           procs=self.options.driver_procs if locust else 1,
                                           remote_workers=self.options.remote_workers if locust else 0)
                    try:
                        self._drive(name, running, driver, specs, progress)
                        if tool == self.options.drivers[-1]:  # every step measured: the rest is cleanup
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
            entry.update(status="failed", error=str(error), step=self.step, driver_stderr=driver_stderr)
            self.event(error.kind, f"{backend}: {error}", backend=backend, step=self.step)
        finally:
            self.doing, self.step = f"while {backend} was stopping", None
            entry["exit_status"] = running.stop()
            entry["stderr_tail"] = running.stderr_tail()
        return entry

    def _drive(self, backend: str, running: RunningBackend, driver: DriverProcess, specs: list[DriverSpec],
               progress: Progress) -> None:
        sampler = ServerSampler(running)
        repeat = self.scenario.repeat
        expected = len(specs) * repeat
        done = 0
        first_phase = "warmup" if self.scenario.warmup_s else "measure"  # of each level
        phase = first_phase
        worker_gone_at: float | None = None
        where = self._at(backend, specs, done, phase)
        while done < expected:
            try:
                event = driver.events.get(timeout=0.5)
            except queue.Empty:
                event = {"type": "idle"}
            if not running.alive():
                raise BackendFailed(f"the backend exited ({_how(running.process.returncode)}) {where}, "
                                    f"after {done} of {expected} steps", kind="backend-failed")
            if event is None:
                status = driver.process.wait()
                last = "".join(driver.stderr).strip().splitlines()
                raise BackendFailed(f"the driver exited ({_how(status)}) {where}, after {done} of {expected} steps"
                                    + (f": {last[-1]}" if last else ""), kind="driver-failed")
            gone = driver.dead_worker()
            if gone is not None:
                # Workers quit once the master is done: give its last events a moment to arrive.
                worker_gone_at = worker_gone_at or time.monotonic()
                if time.monotonic() - worker_gone_at > WORKER_GRACE_S:
                    raise BackendFailed(f"a driver worker (pid {gone.pid}) exited ({_how(gone.returncode)}) {where}, "
                                        f"after {done} of {expected} steps", kind="driver-failed")
            sampler.sample()
            if event["type"] == "progress":
                phase = event["phase"]
                where = self._at(backend, specs, done, phase)
                progress.tick(Tick(backend, self.doing.removeprefix(f"during {backend} "), event["rps"],
                                   event["errors"]))
            elif event["type"] == "result":
                level, repetition = event["spec"], event["repetition"]
                result = DriverResult.from_dict(json.loads(Path(event["path"]).read_text()))
                record = step_record(backend, specs[level], repetition, result,
                                     sampler.window(result.duration_s))
                self.results["steps"].append(record)
                done += 1
                phase = first_phase if done % repeat == 0 else "measure"
                where = self._at(backend, specs, done, phase)  # the driver is on to the next step already
                self.save()
                errors = sum(record["errors"].values())
                progress.message(f"{backend}: {level_name(specs[level])} rep {repetition + 1}: "
                                 f"{record['rps']:,.0f} req/s, p99 {_ms(record['p99_us'])}, errors {errors}"
                                 + (f" [{', '.join(record['flags'])}]" if record["flags"] else ""))

    def _at(self, backend: str, specs: list[DriverSpec], done: int, phase: str) -> str:
        """The run is in the step after `done` of `backend`'s sweep (warm-up or measuring);
        returns it as a phrase: "during selectors users=4 rep 1/2"."""
        repeat = self.scenario.repeat
        spec, rep = specs[min(done // repeat, len(specs) - 1)], done % repeat
        if done >= len(specs) * repeat:
            self.step, self.doing = None, f"while {backend}'s driver was stopping"
            return self.doing
        warmup = phase == "warmup" and rep == 0
        self.step = {"users": spec.users, "rate": spec.rate, "idle_connections": spec.idle_connections,
                     "repetition": rep, "phase": "warm-up" if warmup else "measure"}
        self.doing = f"during {backend} {level_name(spec)} " + ("warm-up" if warmup else f"rep {rep + 1}/{repeat}")
        return self.doing

    def finish(self, status: str) -> None:
        """Mark the run `status` and write it; summary.csv too (a warning if that fails)."""
        self.doing, self.backend, self.step = "while saving the results", None, None
        flag_high_spread(self.results["steps"])
        self.results["status"] = status
        self.save()
        try:
            write_summary_csv(self.run_dir, self.results["steps"])
        except OSError as error:
            print(f"concurbench: warning: summary.csv not written: {error.strerror or error}", file=sys.stderr)


def level_name(spec: DriverSpec) -> str:
    load = f"users={spec.users}" if spec.rate is None else f"rate={spec.rate:g}/s"
    return f"{load} idle={spec.idle_connections}" if spec.idle_connections else load


def flag_high_spread(steps: list[dict[str, Any]]) -> None:
    """Flag every repetition of a load level whose req/s spread is over 10%."""
    groups: dict[tuple[str, int, float | None], list[dict[str, Any]]] = {}
    for step in steps:
        if step["status"] == "ok":
            groups.setdefault((step["backend"], step["users"], step.get("rate")), []).append(step)
    for group in groups.values():
        if len(group) > 1 and summarize([s["rps"] for s in group]).high_spread:
            for step in group:
                if HIGH_SPREAD not in step["flags"]:
                    step["flags"].append(HIGH_SPREAD)


def driver_ratios(results: dict[str, Any], drivers: tuple[str, ...]) -> str:
    """--driver both: each step's figures by the second driver over the first's."""
    rows = {(r["backend"], r["users"], r["rate"]): r for r in summary_rows(results["steps"])}
    first, second = drivers[0], drivers[1]
    lines = [f"\n{second} / {first}, per step (medians over repetitions):",
             f"{'backend':<12} {'load':>10} {'req/s ratio':>12} {'p50 ratio':>10}"]
    for (backend, users, rate), row in rows.items():
        other = rows.get((f"{backend} ({second})", users, rate))
        if other is None or not row["rps"] or not row["p50_us"]:
            continue
        load = f"{users} users" if rate is None else f"{rate:g}/s"
        p50 = f"{other['p50_us'] / row['p50_us']:.3f}" if other["p50_us"] else "-"
        lines.append(f"{backend:<12} {load:>10} {(other['rps'] or 0) / row['rps']:>12.3f} {p50:>10}")
    return "\n".join(lines)


def _ms(us: float | None) -> str:
    return "-" if us is None else f"{us / 1000:.2f} ms"


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)[:60]


def run_scenario(scenario: Scenario, backends: dict[str, str], options: RunOptions) -> int:
    """Run, store, summarize; the exit status is 0, 1 (a backend failed, or the results
    could not be written) or 130 (interrupted). Whatever happens, it ends with one line on
    stderr saying why (if not 0), and with no process of the run left behind.

    `backends` maps each display name to what to launch: ours by name, or cmd:...
    """
    with Interrupts() as interrupts:
        try:
            return _run_scenario(scenario, backends, options, interrupts)
        except KeyboardInterrupt:  # at a moment _run_scenario does not expect one (a few bytecodes)
            run = interrupts.run
            if run is None:
                print(f"concurbench: interrupted ({interrupts.signame}) before the run started", file=sys.stderr)
                return 130
            where = run.interrupted(interrupts.signame)
            _save_quietly(run)
            print(f"concurbench: interrupted ({interrupts.signame}) {where}: {_steps(len(run.results['steps']))} "
                  f"kept in {run.run_dir / RESULTS_FILE}", file=sys.stderr)
            return 130
        finally:
            interrupts.closing = True
            reap_all()


def _run_scenario(scenario: Scenario, backends: dict[str, str], options: RunOptions,
                  interrupts: Interrupts) -> int:
    try:
        run = Run(scenario, backends, options)
    except ResultsError as error:
        print(f"concurbench: error: cannot write results: {error}; nothing was run", file=sys.stderr)
        return 1
    except OSError as error:
        print(f"concurbench: error: cannot create the results directory: {error}", file=sys.stderr)
        return 1
    interrupts.run = run
    planned = scenario.planned_seconds(backends=len(backends)) + DRIVER_START_S * len(backends)
    status, where = "complete", None
    try:
        print(f"concurbench: {scenario.name} on {', '.join(backends)}; about {planned:.0f}s; results in {run.run_dir}")
        if run.fd_limit.warning:
            print(f"concurbench: warning: {run.fd_limit.warning}", file=sys.stderr)
        run.calibrate()
        with make_progress(planned_seconds=planned) as progress:
            run.execute(progress)
    except KeyboardInterrupt:
        status, where = "interrupted", run.interrupted(interrupts.signame)
    except ResultsError as error:
        print(run.write_failed(error), file=sys.stderr)
        print(summary_table(run.results))  # what was measured, though it could not all be stored
        return 1
    except RunFailed as error:
        run.event("run-failed", str(error))
        run.results["status"] = "failed"
        _save_quietly(run)
        print(f"concurbench: error: {error}", file=sys.stderr)
        return 1
    try:
        run.finish(status)
    except KeyboardInterrupt:  # the first one, while saving a complete run: it stays complete, and saved
        where = run.interrupted(interrupts.signame)
        _finish_quietly(run, status)
    except ResultsError as error:
        print(run.write_failed(error), file=sys.stderr)
        print(summary_table(run.results))
        return 1
    results_path = run.run_dir / RESULTS_FILE
    try:
        run.doing = "while printing the summary (the results are saved)"
        print(summary_table(run.results))
        if len(options.drivers) > 1:
            print(driver_ratios(run.results, options.drivers))
        if options.report and run.results["steps"] and where is None:
            run.doing = "while drawing the report (the results are saved)"
            _report(run.run_dir)
        print(f"\nresults: {results_path}\nsummary: {run.run_dir / 'summary.csv'}")
    except KeyboardInterrupt:
        where = run.interrupted(interrupts.signame)
        _save_quietly(run)
    interrupts.closing = True  # what is left is quick: a Ctrl+C now changes nothing
    if where is not None:
        steps = _steps(len(run.results["steps"]))
        print(f"concurbench: interrupted ({interrupts.signame}) {where}: {steps} kept in {results_path}",
              file=sys.stderr)
        return 130
    failed = {name: info for name, info in run.results["backends"].items() if info["status"] != "ok"}
    if failed:
        reasons = "; ".join(f"{name}: {_first_line(info.get('error') or 'failed')}" for name, info in failed.items())
        print(f"concurbench: {len(failed)} of {len(run.results['backends'])} backend(s) failed: {reasons} "
              f"(see {results_path})", file=sys.stderr)
        return 1
    return 0


class Interrupts:
    """SIGINT and SIGTERM for the length of a run.

    The first one raises KeyboardInterrupt wherever the run is (after noting where that is:
    Run.stop_here). The cleanup that follows must not be cut short, so later ones do not
    raise: they hurry it, SIGKILLing every process group still running. None raises once
    the run is `closing`, or once a fault has stopped it (a failed write: its cleanup too).
    """

    def __init__(self) -> None:
        self.count = 0
        self.signame = "SIGINT"
        self.closing = False
        self.run: Run | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> Interrupts:
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum: int, frame: object) -> None:
        self.count += 1
        stopped = self.run is not None and self.run.stopped_at is not None
        if self.count == 1 and not self.closing and not stopped:
            self.signame = signal.Signals(signum).name
            if self.run is not None:
                self.run.stop_here()
            raise KeyboardInterrupt
        kill_all()


def _finish_quietly(run: Run, status: str) -> None:
    try:
        run.finish(status)
    except ResultsError:
        pass


def _save_quietly(run: Run) -> None:
    """Record the last word (an interruption, a failure) if the disk lets us; the results
    on disk are complete either way, or as complete as they were."""
    try:
        run.save()
    except ResultsError:
        pass


def _first_line(error: object) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def _steps(count: int) -> str:
    return f"{count} step" + ("" if count == 1 else "s")


def _how(status: int | None) -> str:
    """An exit status as words: "status 1", "killed by SIGKILL"."""
    if status is not None and status < 0:
        try:
            return f"killed by {signal.Signals(-status).name}"
        except ValueError:
            return f"killed by signal {-status}"
    return f"status {status}"


def _report(run_dir: Path) -> None:
    """Charts and report.html, when that part of the harness is present."""
    try:
        from harness.report import write_report
    except ImportError:
        return
    try:
        path = write_report(run_dir)
    except Exception as error:  # noqa: BLE001 - a chart failing must not lose a finished run
        print(f"concurbench: warning: the report could not be drawn: {error}", file=sys.stderr)
        return
    print(f"report:  {path}")
