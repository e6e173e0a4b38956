"""`concurbench run` as a command: a Run from start to end, whatever happens on the way.

The run itself (the plan, the steps, the results on disk) is harness.run.runner. This module
owns what surrounds it: the summary table and the report at the end, the one line on
stderr that says why the exit status is not 0, the signals (a Ctrl+C at any moment), and
the guarantee that no process of the run is left behind; and the guard on reference
results (measurement rule 13): a run writes under results/reference/ only from a clean git
tree with the project's own .venv, or it does not start.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

from harness.run.metadata import collect_git_commit
from harness.run.processes import PROJECT_ROOT, kill_all, reap_all
from harness.run.progress import make_progress
from harness.run.faults import RunFailed, first_line, plural_steps
from harness.run.options import RunOptions
from harness.run.position import Activity, Position
from harness.run.runner import Run
from harness.run.targets import resolve_backends
from harness.run.trust import check_backend_names, commands_to_trust, consent_problem
from harness.run.interpreter import Interpreter, expand_backends, leave_out_unfit, resolve_interpreters
from harness.run.driver import wrk_problem
from harness.scenario import Scenario, ScenarioError, load_scenario
from harness.results.store import RESULTS_FILE, ResultsError
from harness.results.findings import findings_text
from harness.results.model import Run as Results
from harness.results.printed import capacity_table, summary_table
from harness.results.summary import load_label, summary_rows

__all__ = ["RunOptions", "reference_problem", "run_command", "run_scenario"]


def reference_problem(out_root: Path, *, root: Path = PROJECT_ROOT, prefix: str | None = None) -> str | None:
    """Why a run may not write into `out_root` (None: it may): anywhere under the project's
    results/reference/ takes a clean git tree (`git status --porcelain --untracked-files=no`
    empty) and the project's own interpreter (sys.prefix is root/.venv)."""
    reference = (root / "results" / "reference").resolve()
    if not Path(out_root).resolve().is_relative_to(reference):
        return None
    git = collect_git_commit(root=root)
    if git is None or git.get("dirty") is None:
        return (f"--out {out_root}: reference results come from a clean git tree, and git cannot tell this "
                "one's state; write elsewhere with --out")
    if git["dirty"]:
        return (f"--out {out_root}: reference results come from a clean git tree, and this one has uncommitted "
                "changes (git status --porcelain --untracked-files=no); commit them, or write elsewhere with --out")
    venv = root / ".venv"
    prefix = sys.prefix if prefix is None else prefix
    if Path(prefix).resolve() != venv.resolve():
        return (f"--out {out_root}: reference results come from the project's own environment: run it with "
                f"{venv / 'bin' / 'concurbench'} (this interpreter is {prefix}'s)")
    return None


def run_command(scenario_name: str, *, backend: str, users: tuple[int, ...] | None, duration_s: float | None,
                warmup_s: float | None, repeat: int | None, options: RunOptions,
                pythons: tuple[str, ...] | None = None, cores: tuple[int, ...] | None = None,
                rtts_ms: tuple[float, ...] | None = None, trust_scenario: bool = False) -> int:
    """`concurbench run`: the scenario with its overrides, against the --backend list (each of
    ours under each --server-python); 2 (and one line on stderr) for a scenario, backend,
    interpreter, CPU count, driver or emulated link that cannot be used, before anything starts (a
    reference run from a dirty tree or another environment too, and a scenario file's own
    commands without `trust_scenario`: harness.run.trust); otherwise what run_scenario returns."""
    problem = reference_problem(options.out_root)
    if problem:
        print(f"concurbench: error: {problem}", file=sys.stderr)
        return 2
    try:
        loaded = load_scenario(scenario_name)
        check_backend_names(loaded)
        scenario = loaded.with_overrides(
            users=users, duration_s=duration_s, warmup_s=warmup_s, repeat=repeat, pythons=pythons, cpus=cores,
            rtts_ms=rtts_ms)
        backends = resolve_backends(backend, scenario.backends)
        commands = commands_to_trust(scenario, backends, pythons_from_file=pythons is None)
        if commands and not trust_scenario:
            print(f"concurbench: error: {consent_problem(scenario, commands)}", file=sys.stderr)
            return 2
        source = "--server-python" if pythons is not None else f"{scenario.path}: server.python:"
        interpreters, skipped = resolve_interpreters(scenario.pythons, source=source,
                                                     skip_missing=scenario.skip_missing_python)
        for reason in skipped:
            print(f"concurbench: skipping an interpreter: {reason}", file=sys.stderr)
        backends, labelled_pythons = expand_backends(backends, interpreters)
        backends, left_out = leave_out_unfit(backends, labelled_pythons)
        for note in left_out:
            print(f"concurbench: leaving out {note}", file=sys.stderr)
        problem = cores_problem(scenario.cpus, options, share=scenario.share_driver_cpus,
                                source="--cores" if cores is not None else f"{scenario.path}: server.cpus")
    except (ScenarioError, ValueError) as error:
        print(f"concurbench: error: {error}", file=sys.stderr)
        return 2
    if problem:
        print(f"concurbench: error: {problem}", file=sys.stderr)
        return 2
    if scenario.network is not None:
        problem = network_problem(scenario, options)
        if problem:
            print(f"concurbench: error: {problem}", file=sys.stderr)
            return 2
        from harness.run.shaping import LinkError, sweep_leftovers

        try:
            for removed in sweep_leftovers():
                print(f"concurbench: removed what a run that died left behind: {removed}", file=sys.stderr)
        except LinkError as error:
            print(f"concurbench: error: what a run that died left behind cannot be removed: {error}", file=sys.stderr)
            return 2
    if "wrk" in options.drivers:
        problem = wrk_problem(scenario)
        if problem:
            print(f"concurbench: error: {problem}", file=sys.stderr)
            return 2
    return run_scenario(scenario, backends, options, labelled_pythons)


def cores_problem(counts: tuple[int, ...], options: RunOptions, *, source: str = "--cores",
                  share: bool = False) -> str | None:
    """Why the server cannot be given each of `counts` CPUs (None: it can): it has only the
    CPUs of its pinning (the driver keeps its own apart, unless the scenario `share`s them)."""
    if not counts:
        return None
    server, driver = options.pinning(counts=counts, share=share)
    largest = max(counts)
    if largest <= len(server):
        return None
    one = set(server) == set(driver)
    why = (f"the server's CPUs are {','.join(map(str, server))} and the driver keeps "
           f"{','.join(map(str, driver))}" + (" (the same ones: this machine has one CPU)" if one else ""))
    return (f"{source} {largest}: the server can be given at most {len(server)} CPU"
            f"{'' if len(server) == 1 else 's'} here: {why}; on this {os.cpu_count()}-CPU machine, "
            "--server-cpus and --driver-cpus choose the split"
            + ("" if share else ", or [server] share_driver_cpus = true lets the server use the driver's too"))


def network_problem(scenario: Scenario, options: RunOptions) -> str | None:
    """Why this run cannot have an emulated link (None: it can): what the machine lacks for
    one (root, /dev/net/tun, iproute2), or a driver that cannot go inside the link's
    namespace (remote workers are other machines)."""
    from harness.network.link import missing

    where = "--rtt" if any(o.startswith("rtt_ms=") for o in scenario.overrides) else f"{scenario.path}: [network]"
    lacking = missing()
    if lacking:
        return f"{where} asks for an emulated link, but {lacking}; scenarios without [network] run over loopback"
    if options.remote_workers:
        return f"{where}: remote workers cannot join an emulated link (it lives in this machine's namespaces)"
    if scenario.search is not None:
        return f"{where}: a rate search runs over loopback; measure the emulated link with users or rate levels"
    return None


def run_scenario(scenario: Scenario, backends: dict[str, str], options: RunOptions,
                 pythons: dict[str, Interpreter] | None = None) -> int:
    """Run, store, summarize; the exit status is 0, 1 (a backend failed, or the results
    could not be written) or 130 (interrupted). Whatever happens, it ends with one line on
    stderr saying why (if not 0), and with no process of the run left behind.

    `backends` maps each display name to what to launch: ours by name, or cmd:...
    """
    with Interrupts() as interrupts:
        try:
            return _run_scenario(scenario, backends, options, interrupts, pythons)
        except KeyboardInterrupt:  # at a moment _run_scenario does not expect one (a few bytecodes)
            run = interrupts.run
            if run is None:
                print(f"concurbench: interrupted ({interrupts.signame}) before the run started", file=sys.stderr)
                return 130
            where = run.interrupted(interrupts.signame)
            _save_quietly(run)
            print(f"concurbench: interrupted ({interrupts.signame}) {where}: {plural_steps(len(run.results['steps']))} "
                  f"kept in {run.run_dir / RESULTS_FILE}", file=sys.stderr)
            return 130
        finally:
            interrupts.closing = True
            reap_all()  # the processes inside an emulated link's namespaces first: then it can go
            if interrupts.run is not None:
                interrupts.run.close_link()


def _run_scenario(scenario: Scenario, backends: dict[str, str], options: RunOptions,
                  interrupts: Interrupts, pythons: dict[str, Interpreter] | None = None) -> int:
    try:
        run = Run(scenario, backends, options, pythons)
    except ResultsError as error:
        print(f"concurbench: error: cannot write results: {error}; nothing was run", file=sys.stderr)
        return 1
    except OSError as error:
        print(f"concurbench: error: cannot create the results directory: {error}", file=sys.stderr)
        return 1
    interrupts.run = run
    planned = run.plan.seconds
    status = "complete"
    where: Position | None = None  # where a Ctrl+C found the run
    try:
        print(f"concurbench: {scenario.name} on {', '.join(backends)}; about {planned:.0f}s; results in {run.run_dir}")
        if run.fd_limit.warning:
            print(f"concurbench: warning: {run.fd_limit.warning}", file=sys.stderr)
        run.calibrate()
        print(f"concurbench: {run.measure_floor()}")
        linked = run.open_link()
        if linked:
            print(f"concurbench: {linked}")
        with make_progress(planned_seconds=planned) as progress:
            run.execute(progress)
    except KeyboardInterrupt:
        status, where = "interrupted", run.interrupted(interrupts.signame)
    except ResultsError as error:
        print(run.write_failed(error), file=sys.stderr)
        _print_summary(run.typed())  # what was measured, though it could not all be stored
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
        _print_summary(run.typed())
        return 1
    results_path = run.run_dir / RESULTS_FILE
    try:
        run.position = Position(Activity.PRINTING)
        results = run.typed()
        _print_summary(results)
        if len(options.drivers) > 1:
            print(driver_ratios(results, options.drivers))
        if options.report and run.results["steps"] and where is None:
            run.position = Position(Activity.REPORTING)
            _report(run.run_dir)
        print(f"\nresults: {results_path}\nsummary: {run.run_dir / 'summary.csv'}")
    except KeyboardInterrupt:
        where = run.interrupted(interrupts.signame)
        _save_quietly(run)
    interrupts.closing = True  # what is left is quick: a Ctrl+C now changes nothing
    if where is not None:
        steps = plural_steps(len(run.results["steps"]))
        print(f"concurbench: interrupted ({interrupts.signame}) {where}: {steps} kept in {results_path}",
              file=sys.stderr)
        return 130
    failed = {name: info for name, info in run.results["backends"].items() if info["status"] != "ok"}
    if failed:
        reasons = "; ".join(f"{name}: {first_line(info.get('error') or 'failed')}" for name, info in failed.items())
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


def driver_ratios(results: Results, drivers: tuple[str, ...]) -> str:
    """--driver both: each step's figures by the second driver over the first's."""
    rows = {(r.backend, r.users, r.rate): r for r in summary_rows(results.steps)}
    first, second = drivers[0], drivers[1]
    lines = [f"\n{second} / {first}, per step (medians over repetitions):",
             f"{'backend':<12} {'load':>15} {'req/s ratio':>12} {'p50 ratio':>10}"]
    for (backend, users, rate), row in rows.items():
        other = rows.get((f"{backend} ({second})", users, rate))
        if other is None or not row.rps or not row.p50_us:
            continue
        load = load_label(users, rate)
        p50 = f"{other.p50_us / row.p50_us:.3f}" if other.p50_us else "-"
        lines.append(f"{backend:<12} {load:>15} {(other.rps or 0) / row.rps:>12.3f} {p50:>10}")
    return "\n".join(lines)


def _print_summary(results: Results) -> None:
    """The summary table, the capacity table if a search ran, and the findings."""
    print(summary_table(results))
    if results.capacity:
        print(capacity_table(results))
    _print_findings(results)


def _print_findings(results: Results) -> None:
    """The run's findings under the summary table (those Run.finish stored, else computed);
    nothing when there are none. A finding that cannot be derived costs the findings, not the run."""
    try:
        text = findings_text(results)
    except Exception as error:  # noqa: BLE001 - the results are saved; the sentences are extra
        print(f"concurbench: warning: the findings could not be derived: {error}", file=sys.stderr)
        return
    if text:
        print(f"\n{text}")


def _report(run_dir: Path) -> None:
    """Charts and report.html; a chart that fails costs the report, not the run."""
    from harness.charts.report import write_report  # here: matplotlib loads only to draw

    try:
        path = write_report(run_dir)
    except Exception as error:  # noqa: BLE001 - a chart failing must not lose a finished run
        print(f"concurbench: warning: the report could not be drawn: {error}", file=sys.stderr)
        return
    print(f"report:  {path}")
