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
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.driver_process import DRIVER_MODULES, DriverProcess, driver_specs
from harness.drivers.spec import DriverResult, DriverSpec
from harness.launcher import (LaunchError, RunningBackend, ServerSampler, calibrate_cpu_work, default_pinning,
                              launch_backend)
from harness.metrics import summarize
from harness.progress import Progress, Tick, make_progress
from harness.scenario import Scenario
from harness.store import (DRIVER_BOUND, ResultsError, collect_metadata, new_run_dir, write_results,
                           write_summary_csv)
from harness.summary import summary_rows, summary_table

# A step whose driver used more than this share of its CPU measured the driver, not the
# server: the figure is a floor and is flagged.
DRIVER_BOUND_PERCENT = 90.0
HIGH_SPREAD = "high-spread"
DRIVER_START_S = 1.0  # importing locust, per backend: counted in the ETA


class BackendFailed(Exception):
    """The backend or its driver died mid-run."""


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
        self.run_dir = new_run_dir(options.out_root, scenario.name)
        metadata = collect_metadata(scenario_path=scenario.path, scenario_sha256=scenario.sha256,
                                    pinning={"server": list(self.server_cpus), "driver": list(self.driver_cpus)})
        metadata["scenario"]["name"] = scenario.name
        metadata["scenario"]["overrides"] = list(scenario.overrides)
        metadata["drivers"] = list(options.drivers)
        # /cpu work per ms, measured once here and given to every backend (see the launcher).
        self.cpu_iters_per_ms = calibrate_cpu_work(self.server_cpus)
        metadata["cpu_iters_per_ms"] = round(self.cpu_iters_per_ms, 1)
        self.results: dict[str, Any] = {"metadata": metadata, "scenario": scenario.to_dict(), "status": "running",
                                        "backends": {}, "steps": []}
        self.save()

    def save(self) -> None:
        write_results(self.run_dir, self.results)

    def execute(self, progress: Progress) -> None:
        for backend, target in self.backends.items():
            self.results["backends"][backend] = self.run_backend(backend, target, progress)
            self.save()

    def run_backend(self, backend: str, target: str, progress: Progress) -> dict[str, Any]:
        """Launch `target` (ours, or cmd:...), drive it, and return its entry in results."""
        progress.message(f"{backend}: starting on CPU {','.join(map(str, self.server_cpus))}")
        external = target.startswith("cmd:")
        extra = () if external else self.scenario.server_args  # server args are our servers' flags
        try:
            running = launch_backend(target, host=self.options.host, cpus=self.server_cpus, extra_args=extra,
                                     env={"CONCURBENCH_CPU_ITERS_PER_MS": str(self.cpu_iters_per_ms)})
        except LaunchError as error:
            progress.message(f"{backend}: FAILED to start: {str(error).splitlines()[0]}")
            return {"status": "failed", "error": str(error).splitlines()[0], "stderr_tail": error.stderr_tail,
                    "command": target if external else None}
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
                    finally:
                        driver.stop()
                        driver_stderr = "".join(driver.stderr)
        except BackendFailed as error:
            progress.message(f"{backend}: FAILED: {error}")
            return {"status": "failed", "error": str(error), "stderr_tail": running.stderr_tail(),
                    "driver_stderr": driver_stderr, "command": target if external else None}
        finally:
            exit_status = running.stop()
        return {"status": "ok", "error": None, "stderr_tail": running.stderr_tail(), "exit_status": exit_status,
                "command": target if external else None}

    def _drive(self, backend: str, running: RunningBackend, driver: DriverProcess, specs: list[DriverSpec],
               progress: Progress) -> None:
        sampler = ServerSampler(running)
        expected = len(specs) * self.scenario.repeat
        done = 0
        level = 0
        while done < expected:
            try:
                event = driver.events.get(timeout=1.0)
            except queue.Empty:
                event = {"type": "idle"}
            if not running.alive():
                raise BackendFailed(f"the backend exited with status {running.process.returncode} mid-run")
            if event is None:
                status = driver.process.wait()
                raise BackendFailed(f"the driver exited with status {status} after {done} of {expected} steps: "
                                    + ("".join(driver.stderr).strip().splitlines() or ["no output"])[-1])
            sampler.sample()
            if event["type"] == "progress":
                rep = min(done - level * self.scenario.repeat + 1, self.scenario.repeat)
                step = f"{level_name(specs[level])} " + ("warm-up" if event["phase"] == "warmup"
                                                          else f"rep {rep}/{self.scenario.repeat}")
                progress.tick(Tick(backend, step, event["rps"], event["errors"]))
            elif event["type"] == "result":
                level, repetition = event["spec"], event["repetition"]
                result = DriverResult.from_dict(json.loads(Path(event["path"]).read_text()))
                record = step_record(backend, specs[level], repetition, result,
                                     sampler.window(result.duration_s))
                self.results["steps"].append(record)
                self.save()
                errors = sum(record["errors"].values())
                progress.message(f"{backend}: {level_name(specs[level])} rep {repetition + 1}: "
                                 f"{record['rps']:,.0f} req/s, p99 {_ms(record['p99_us'])}, errors {errors}"
                                 + (f" [{', '.join(record['flags'])}]" if record["flags"] else ""))
                done += 1
                if done % self.scenario.repeat == 0:
                    level = min(level + 1, len(specs) - 1)

    def finish(self, status: str) -> None:
        flag_high_spread(self.results["steps"])
        self.results["status"] = status
        self.save()
        write_summary_csv(self.run_dir, self.results["steps"])


def level_name(spec: DriverSpec) -> str:
    return f"users={spec.users}" if spec.rate is None else f"rate={spec.rate:g}/s"


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
    """Run, store, summarize; the exit status is 0, 1 (a backend failed) or 130 (interrupted).

    `backends` maps each display name to what to launch: ours by name, or cmd:...
    """
    try:
        run = Run(scenario, backends, options)
    except (ResultsError, OSError) as error:
        print(f"concurbench: error: cannot create the results directory: {error}", file=sys.stderr)
        return 1
    planned = scenario.planned_seconds(backends=len(backends)) + DRIVER_START_S * len(backends)
    print(f"concurbench: {scenario.name} on {', '.join(backends)}; about {planned:.0f}s; results in {run.run_dir}")
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    status = "complete"
    try:
        with make_progress(planned_seconds=planned) as progress:
            run.execute(progress)
    except KeyboardInterrupt:
        status = "interrupted"
    finally:
        signal.signal(signal.SIGTERM, previous)
    try:
        run.finish(status)
    except (ResultsError, OSError) as error:
        print(f"concurbench: error: could not write the results: {error}", file=sys.stderr)
        return 1
    print(summary_table(run.results))
    if len(options.drivers) > 1:
        print(driver_ratios(run.results, options.drivers))
    if options.report and run.results["steps"]:
        _report(run.run_dir)
    print(f"\nresults: {run.run_dir / 'results.json'}\nsummary: {run.run_dir / 'summary.csv'}")
    failed = [name for name, info in run.results["backends"].items() if info["status"] != "ok"]
    if status == "interrupted":
        print("concurbench: interrupted: finished steps are kept in the results", file=sys.stderr)
        return 130
    if failed:
        print(f"concurbench: backend(s) failed: {', '.join(failed)} (see results.json for their stderr)",
              file=sys.stderr)
        return 1
    return 0


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


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
