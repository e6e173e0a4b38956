"""`concurbench run` as a command, under faults, end to end: real backends, real Locust drivers,
a real orchestrator.

A driver killed mid-step, a Locust worker killed, Ctrl+C at each moment of a run (to the
orchestrator alone, or to its whole process group as a terminal sends it), a second Ctrl+C
while cleaning up, the orchestrator SIGKILLed, a full disk. Each time: the run records what
happened, finished steps are kept, nothing of the run is left running, and the exit status
is non-zero with one line on stderr (no traceback). Bad input is refused the same way
(exit 2), before anything starts.

Every process of a run is found by a tag in its environment (children inherit it), so one
that escaped its parent and its process group is found too.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil
import pytest

from support import ROOT
from test_runner import concurbench
from harness.run import runner
from harness.run.command import RunOptions, run_scenario
from harness.scenario import load_scenario

TAG = "CONCURBENCH_FAULT_TEST"
TINY = """
description = "tiny: one level of GET /"
[load]
users = [2]
duration = "0.6s"
warmup = "0.2s"
repeat = 2
timeout = "2s"
[[request]]
method = "GET"
path = "/"
"""
# Two levels: after the first step, a backend's driver is surely still busy with the second
# (its warm-up and window), not between rounds.
TWO_LEVELS = TINY.replace("users = [2]", "users = [1, 2]")
# A backend that never answers: the run is stuck "starting" it (START_TIMEOUT is 15 s).
SILENT = "python3 -c 'import time; time.sleep(60)' {port}"
# A backend that answers GET / but ignores SIGTERM: stopping it takes STOP_GRACE (6 s).
STUBBORN = """
import http.server, pathlib, signal, sys
# ignores SIGTERM, and leaves a mark (argv[2]) when it gets one: the harness is stopping it
signal.signal(signal.SIGTERM, lambda *_: pathlib.Path(sys.argv[2]).touch())
http.server.ThreadingHTTPServer.allow_reuse_address = True
server = http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), http.server.SimpleHTTPRequestHandler)
server.serve_forever()
"""
# Imported by every Python process of the run (it is on their PYTHONPATH): holds the /cpu
# calibration for a minute, so a Ctrl+C surely lands in it.
SLOW_CALIBRATION = """
import sys, time
if "harness.run.calibration" in " ".join(getattr(sys, "orig_argv", ())):
    time.sleep(60)
"""

# The same for the report: the orchestrator draws it for a minute, so a Ctrl+C lands in it.
SLOW_REPORT = """
import sys, time
if "harness.cli" in " ".join(getattr(sys, "orig_argv", ())):
    import harness.charts.report
    draw = harness.charts.report.write_report
    def slow(run_dir):
        time.sleep(60)
        return draw(run_dir)
    harness.charts.report.write_report = slow
"""


class Orchestrator:
    """`concurbench run` in its own process group, tagged; its stdout read as it comes."""

    def __init__(self, tmp_path: Path, *args: str, pythonpath: Path | None = None, out: Path | None = None) -> None:
        self.tag = uuid.uuid4().hex
        self.out = out or tmp_path / "results"
        path = os.pathsep.join(str(p) for p in (ROOT, pythonpath) if p)
        env = {**os.environ, "PYTHONPATH": path, TAG: self.tag, "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen([sys.executable, "-m", "harness.cli", "run", "--out", str(self.out), *args],
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env,
                                        start_new_session=True)
        self.stdout = ""
        self.stderr = ""

    @property
    def pid(self) -> int:
        return self.process.pid

    def children(self, text: str) -> list[psutil.Process]:
        """The orchestrator's descendants whose command line holds `text`."""
        found = []
        try:
            family = psutil.Process(self.pid).children(recursive=True)
        except psutil.Error:
            return []
        for proc in family:
            try:
                if text in " ".join(proc.cmdline()):
                    found.append(proc)
            except psutil.Error:
                continue
        return found

    def wait_for_child(self, text: str, timeout: float = 30) -> psutil.Process:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.children(text)
            if found:
                return found[0]
            assert self.process.poll() is None, self.finish()
            time.sleep(0.01)
        raise AssertionError(f"no child running {text!r} within {timeout}s")

    def results(self) -> dict:
        (path,) = self.out.glob("*/results.json")
        return json.loads(path.read_text())

    def wait_for(self, condition, timeout: float = 30) -> dict:  # type: ignore[no-untyped-def]
        """Poll results.json until `condition(results)`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                results = self.results()
                if condition(results):
                    return results
            except (ValueError, OSError):
                pass
            assert self.process.poll() is None, self.finish()
            time.sleep(0.02)
        raise AssertionError(f"results.json never met the condition within {timeout}s")

    def wait_for_steps(self, count: int) -> dict:
        return self.wait_for(lambda results: len(results["steps"]) >= count)

    def wait_for_line(self, text: str, timeout: float = 30) -> None:
        """Read stdout until a line holding `text` (the orchestrator is unbuffered)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()  # type: ignore[union-attr]
            self.stdout += line
            if text in line:
                return
            if not line:
                break
        raise AssertionError(f"no line with {text!r} on stdout: {self.stdout}")

    def interrupt(self, *, group: bool) -> None:
        """SIGINT to the orchestrator, or to its whole process group as a terminal does."""
        if group:
            os.killpg(self.pid, signal.SIGINT)
        else:
            os.kill(self.pid, signal.SIGINT)

    def finish(self, timeout: float = 60) -> int:
        try:
            out, err = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            out, err = self.process.communicate()
        self.stdout += out
        self.stderr += err
        return self.process.returncode

    def kill(self) -> None:
        for proc in tagged(self.tag):
            try:
                proc.kill()
            except psutil.Error:
                pass

    def one_line(self) -> str:
        """stderr must be exactly one line, and no traceback."""
        assert "Traceback" not in self.stderr, self.stderr
        lines = self.stderr.strip().splitlines()
        assert len(lines) == 1, self.stderr
        return lines[0]


def tagged(tag: str) -> list[psutil.Process]:
    """Every live (not zombie) process carrying the run's tag in its environment."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get(TAG) == tag and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except psutil.Error:
            continue
    return found


def assert_nothing_left(run: Orchestrator, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while (left := tagged(run.tag)) and time.monotonic() < deadline:
        time.sleep(0.05)
    described = []
    for proc in left:
        try:
            described.append(f"{proc.pid}: {' '.join(proc.cmdline())}")
        except psutil.Error:
            continue
    assert not described, "left running:\n" + "\n".join(described)


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    return path


@pytest.fixture
def two_levels(tmp_path: Path) -> Path:
    path = tmp_path / "two-levels.toml"
    path.write_text(TWO_LEVELS)
    return path


def during(where: str, step: dict) -> str:
    """The phrase for a step of the second level, which a fault may catch in its warm-up or window."""
    return f"during {where} users=2 rep {step['repetition'] + 1}/2" + (" warm-up" if step["phase"] == "warm-up" else "")


@pytest.fixture
def orchestrators():  # type: ignore[no-untyped-def]
    """Start orchestrators; whatever a failing test leaves is killed at the end."""
    started: list[Orchestrator] = []

    def start(*args, **kwargs) -> Orchestrator:  # type: ignore[no-untyped-def]
        run = Orchestrator(*args, **kwargs)
        started.append(run)
        return run

    yield start
    for run in started:
        if run.process.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.process.wait()
        run.kill()


# --- the driver killed mid-step ---

@pytest.mark.timeout(60)
def test_driver_killed_mid_step_fails_its_backend_and_the_run_goes_on(two_levels: Path, tmp_path: Path,
                                                                      orchestrators) -> None:
    run = orchestrators(tmp_path, "--scenario", str(two_levels), "--backend", "selectors,threaded", "--no-report")
    run.wait_for_steps(1)
    run.wait_for_child("harness.drivers.locust.driver").kill()
    assert run.finish() == 1
    line = run.one_line()
    results = run.results()
    assert results["status"] == "complete"
    failed = results["backends"]["selectors"]
    step = failed["step"]
    assert step == {"users": 2, "rate": None, "idle_connections": 0, "repetition": 0, "phase": step["phase"]}
    assert line.startswith("concurbench: 1 of 2 backend(s) failed: selectors: the driver exited (killed by SIGKILL) "
                           f"{during('selectors', step)}, after 1 of 4 steps"), line
    assert failed["status"] == "failed" and during("selectors", step) in failed["error"] and failed["round"] == 0
    assert results["backends"]["threaded"]["status"] == "ok"  # the run went on
    # The finished step was kept; selectors sat out round 2, threaded ran both.
    assert [(s["backend"], s["users"], s["repetition"]) for s in results["steps"]] == [
        ("selectors", 1, 0), ("threaded", 1, 0), ("threaded", 2, 0), ("threaded", 1, 1), ("threaded", 2, 1)]
    assert [(o["backend"], o["round"]) for o in results["metadata"]["order"]] == [
        ("selectors", 0), ("threaded", 0), ("threaded", 1)]
    (event,) = results["events"]
    assert event["kind"] == "driver-failed" and event["backend"] == "selectors" and event["step"] == step
    table = run.stdout.split("\nbackend ")[1]  # the table names it, with why
    assert f"selectors  FAILED: the driver exited (killed by SIGKILL) {during('selectors', step)}" in table
    assert_nothing_left(run)


@pytest.mark.timeout(60)
def test_a_locust_worker_killed_mid_step_fails_the_backend(two_levels: Path, tmp_path: Path, orchestrators) -> None:
    run = orchestrators(tmp_path, "--scenario", str(two_levels), "--backend", "selectors", "--driver-procs", "2",
                        "--no-report")
    run.wait_for_steps(1)
    workers = run.children("--worker")
    assert len(workers) == 2
    workers[0].kill()
    assert run.finish() == 1
    line = run.one_line()
    results = run.results()
    failed = results["backends"]["selectors"]
    assert line.startswith("concurbench: 1 of 1 backend(s) failed: selectors: "), line
    assert f"{during('selectors', failed['step'])}, after 1 of 4 steps" in line
    assert failed["status"] == "failed" and failed["step"]["repetition"] == 0 and failed["step"]["users"] == 2
    assert [e["kind"] for e in results["events"]] == ["driver-failed"]
    assert len(results["steps"]) == 1
    assert results["metadata"]["order"] == [{"backend": "selectors", "round": 0}]  # no round 2 for it
    assert_nothing_left(run)


# --- Ctrl+C ---

@pytest.mark.timeout(60)
def test_ctrl_c_to_the_process_group_mid_step(two_levels: Path, tmp_path: Path, orchestrators) -> None:
    """In round 1, threaded's second level: threaded is interrupted in that step, and
    selectors, done with round 1 but not with round 2, is interrupted between its rounds."""
    run = orchestrators(tmp_path, "--scenario", str(two_levels), "--backend", "selectors,threaded", "--no-report")
    run.wait_for_steps(3)
    run.interrupt(group=True)
    assert run.finish(timeout=30) == 130
    line = run.one_line()
    results = run.results()
    assert results["status"] == "interrupted" and len(results["steps"]) == 3
    entry = results["backends"]["threaded"]
    step = entry["step"]
    assert line.startswith(f"concurbench: interrupted (SIGINT) {during('threaded', step)}: 3 steps kept in "), line
    assert entry["status"] == "interrupted"
    assert step == {"users": 2, "rate": None, "idle_connections": 0, "repetition": 0, "phase": step["phase"]}
    waiting = results["backends"]["selectors"]
    assert waiting["status"] == "interrupted" and waiting["step"] is None and waiting["rounds_done"] == 1
    assert waiting["error"] == f"interrupted (SIGINT) {during('threaded', step)}, after 1 of 2 rounds"
    (event,) = results["events"]
    assert event["kind"] == "interrupted" and event["backend"] == "threaded"
    assert f"threaded   INTERRUPTED: interrupted (SIGINT) {during('threaded', step)}" in run.stdout  # the table
    assert_nothing_left(run)


@pytest.mark.timeout(60)
def test_ctrl_c_during_the_cpu_calibration(tiny: Path, tmp_path: Path, orchestrators) -> None:
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(SLOW_CALIBRATION)
    run = orchestrators(tmp_path, "--scenario", str(tiny), "--backend", "selectors", "--no-report", pythonpath=hook)
    run.wait_for_child("harness.run.calibration")
    run.interrupt(group=True)  # the calibration child gets it too
    assert run.finish(timeout=30) == 130
    line = run.one_line()
    assert line.startswith("concurbench: interrupted (SIGINT) during the /cpu calibration: 0 steps kept in "), line
    results = run.results()
    assert results["status"] == "interrupted" and results["steps"] == [] and results["backends"] == {}
    assert [(e["kind"], e["detail"]) for e in results["events"]] == [
        ("interrupted", "SIGINT during the /cpu calibration")]
    assert_nothing_left(run)


@pytest.mark.timeout(60)
def test_ctrl_c_while_a_backend_starts(tmp_path: Path, orchestrators) -> None:
    scenario = tmp_path / "silent.toml"
    scenario.write_text(TINY + f'[backends]\nsilent = "{SILENT}"\n')
    run = orchestrators(tmp_path, "--scenario", str(scenario), "--backend", "selectors,silent", "--users", "1",
                        "--repeat", "1", "--no-report", "--trust-scenario")
    run.wait_for(lambda results: "selectors" in results["backends"]
                 and results["backends"]["selectors"]["status"] == "ok")
    run.wait_for_child("time.sleep(60)")
    run.interrupt(group=False)
    assert run.finish(timeout=30) == 130
    line = run.one_line()
    assert line.startswith("concurbench: interrupted (SIGINT) while silent was starting: 1 step kept in "), line
    results = run.results()
    assert results["status"] == "interrupted"
    assert results["backends"]["selectors"]["status"] == "ok"
    entry = results["backends"]["silent"]
    assert entry["status"] == "interrupted" and entry["step"] is None and "was starting" in entry["error"]
    assert_nothing_left(run)


@pytest.mark.timeout(60)
def test_ctrl_c_between_backends_then_again_while_cleaning_up(tmp_path: Path, orchestrators) -> None:
    """Ctrl+C while a backend that ignores SIGTERM is in its 6 s stop grace: the run does not
    wait the grace out but kills it, and a second Ctrl+C on the heels of the first changes
    nothing but the speed (no traceback, the same one line)."""
    server = tmp_path / "stubborn.py"
    server.write_text(STUBBORN)
    scenario = tmp_path / "one.toml"
    scenario.write_text(TINY.replace("repeat = 2", "repeat = 1")
                        + f'[backends]\nstubborn = "{sys.executable} {server} {{port}} {tmp_path / "sigterm"}"\n')
    run = orchestrators(tmp_path, "--scenario", str(scenario), "--backend", "stubborn,selectors", "--no-report", "--trust-scenario")
    run.wait_for_steps(1)
    deadline = time.monotonic() + 20
    while not (tmp_path / "sigterm").exists():  # the harness has asked it to stop: it is in the grace
        assert time.monotonic() < deadline, "the backend was never asked to stop"
        time.sleep(0.02)
    first = time.monotonic()
    run.interrupt(group=False)
    time.sleep(0.05)
    if run.process.poll() is None:
        run.interrupt(group=False)
    assert run.finish(timeout=30) == 130
    assert time.monotonic() - first < 3  # not the 6 s grace
    line = run.one_line()
    assert line.startswith("concurbench: interrupted (SIGINT) while stubborn"), line
    assert "1 step kept" in line
    results = run.results()
    assert results["status"] == "interrupted" and len(results["steps"]) == 1
    assert results["backends"]["stubborn"]["status"] == "ok"  # all its steps were measured; then the Ctrl+C
    (event,) = results["events"]
    assert event["kind"] == "interrupted" and event["backend"] == "stubborn" and event["step"] is None
    assert "selectors" not in results["backends"]  # the next backend never started
    assert_nothing_left(run)


@pytest.mark.timeout(60)
def test_ctrl_c_while_the_report_is_drawn(tmp_path: Path, orchestrators) -> None:
    scenario = tmp_path / "one.toml"
    scenario.write_text(TINY.replace("repeat = 2", "repeat = 1"))
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(SLOW_REPORT)
    run = orchestrators(tmp_path, "--scenario", str(scenario), "--backend", "selectors", pythonpath=hook)
    run.wait_for_line("backend ")  # the summary table's header: the report comes next
    time.sleep(0.3)
    run.interrupt(group=True)
    assert run.finish(timeout=30) == 130
    line = run.one_line()
    assert line.startswith("concurbench: interrupted (SIGINT) while drawing the report (the results are saved)"
                           ": 1 step kept in "), line
    results = run.results()
    assert results["status"] == "complete"  # every step was measured: only the report is missing
    assert [e["kind"] for e in results["events"]] == ["interrupted"]
    assert not list(run.out.glob("*/report.html"))
    assert_nothing_left(run)


@pytest.mark.timeout(60)
def test_orchestrator_sigkilled_mid_step_leaves_nothing(tiny: Path, tmp_path: Path, orchestrators) -> None:
    """PR_SET_PDEATHSIG: the kernel kills the backend, the Locust master and its workers."""
    if not sys.platform.startswith("linux"):
        pytest.skip("PR_SET_PDEATHSIG is Linux's")
    run = orchestrators(tmp_path, "--scenario", str(tiny), "--backend", "selectors", "--driver-procs", "2",
                        "--no-report")
    run.wait_for_steps(1)
    assert len(run.children("--worker")) == 2 and run.children("servers")
    assert len(tagged(run.tag)) >= 5  # the orchestrator, the backend, the master, two workers
    os.kill(run.pid, signal.SIGKILL)
    run.finish()
    assert_nothing_left(run)


# --- a full disk ---

@pytest.fixture
def small_disk(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A real 64 KiB tmpfs (needs root, or CAP_SYS_ADMIN)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill: {done.stderr.strip() or done.returncode}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(directory: Path) -> None:
    """Write until the filesystem has not a byte left."""
    with open(directory / "filler", "wb", buffering=0) as file:
        for chunk in (4096, 1):
            try:
                while True:
                    file.write(b"\0" * chunk)
            except OSError as error:
                assert error.errno == errno.ENOSPC


@pytest.mark.timeout(60)
def test_full_disk_stops_the_run_and_keeps_the_last_good_results(two_levels: Path, tmp_path: Path, small_disk: Path,
                                                                orchestrators) -> None:
    run = orchestrators(tmp_path, "--scenario", str(two_levels), "--backend", "selectors,threaded", out=small_disk)
    run.wait_for_steps(1)
    fill(small_disk)
    assert run.finish() == 1
    line = run.one_line()
    assert line.startswith("concurbench: error: cannot write results (No space left on device): stopped after 2 "
                           "steps; "), line
    assert line.endswith("results.json holds the 1 step written before"), line
    (run_dir,) = (p for p in small_disk.iterdir() if p.is_dir())
    assert sorted(p.name for p in run_dir.iterdir()) == ["results.json"]  # no temp file, no summary, no report
    results = run.results()
    assert results["status"] == "running" and len(results["steps"]) == 1  # the last good file, whole
    assert "selectors" in run.stdout.split("\nbackend ")[1]  # what was measured is still told
    assert_nothing_left(run)


# --- before anything starts ---

@pytest.mark.parametrize(("args", "message"), [
    pytest.param(("--scenario", "nope"), "nope", id="unknown-scenario"),
    pytest.param(("--scenario", "quick", "--backend", "fibers"), "fibers", id="unknown-backend"),
    pytest.param(("--scenario", "quick", "--users", "0"), "positive", id="bad-users"),
])
def test_bad_input_exits_2_with_one_line(args: tuple[str, ...], message: str, tmp_path: Path) -> None:
    done = concurbench("run", *args, "--out", str(tmp_path))
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr
    assert not list(tmp_path.iterdir())  # nothing started, nothing written


def test_bad_scenario_file_names_file_key_and_reason(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text(TINY.replace("repeat = 2", "repeat = \"two\""))
    done = concurbench("run", "--scenario", str(path), "--out", str(tmp_path / "out"))
    assert done.returncode == 2
    assert str(path) in done.stderr and "load.repeat" in done.stderr


# --- in-process: the moments too short to hit from outside ---

def fake_step(backend: str = "selectors") -> dict:
    return {"backend": backend, "users": 2, "repetition": 0, "status": "ok", "error": None, "requests": 10,
            "errors": {"connect": 0, "timeout": 0, "reset": 0, "bad_status": 0}, "rps": 10.0, "p50_us": 100,
            "p90_us": 200, "p99_us": 400, "p999_us": 800, "max_us": 1000, "mean_us": 150, "histogram": "",
            "timeseries": [], "server": {}, "driver": {}, "flags": [], "rate": None, "starved_users": 0}


@pytest.fixture
def fake_run(monkeypatch, tmp_path: Path, tiny: Path):  # type: ignore[no-untyped-def]
    """run_scenario with every step already measured: no process is started."""
    def execute(self, progress) -> None:  # type: ignore[no-untyped-def]
        self.results["backends"]["selectors"] = {"status": "ok", "error": None}
        self.results["steps"].append(fake_step())
        self.save()

    monkeypatch.setattr(runner, "calibrate_cpu_work", lambda cpus: 1000.0)
    monkeypatch.setattr(runner.Run, "execute", execute)
    scenario = load_scenario(str(tiny))
    options = RunOptions(out_root=tmp_path / "results", report=False)
    return lambda **changes: run_scenario(scenario, {"selectors": "selectors"},
                                          RunOptions(**{**options.__dict__, **changes}))


def read_only_run(out: Path) -> dict:
    (path,) = out.glob("*/results.json")
    return json.loads(path.read_text())


def test_ctrl_c_while_saving_the_results_saves_them_anyway(fake_run, monkeypatch, tmp_path: Path, capsys) -> None:
    calls = []
    # Not always default_int_handler: a CI job started in the background (`cmd &` in a
    # script, nohup) runs with SIGINT ignored, and the run must put back what it found.
    handler_before = signal.getsignal(signal.SIGINT)

    def summary_csv(run_dir, steps):  # type: ignore[no-untyped-def]
        calls.append(run_dir)
        if len(calls) == 1:
            os.kill(os.getpid(), signal.SIGINT)  # the handler raises in the next bytecode
            time.sleep(1)
        return run_dir / "summary.csv"

    monkeypatch.setattr(runner, "write_summary_csv", summary_csv)
    assert fake_run() == 130
    assert len(calls) == 2  # saved again, the Ctrl+C notwithstanding
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("concurbench: interrupted (SIGINT) while saving the results: 1 step"), err
    results = read_only_run(tmp_path / "results")
    assert results["status"] == "complete"
    assert [(e["kind"], e["detail"]) for e in results["events"]] == [
        ("interrupted", "SIGINT while saving the results")]
    assert signal.getsignal(signal.SIGINT) is handler_before  # put back


def test_a_full_disk_for_summary_and_report_is_a_warning(fake_run, monkeypatch, tmp_path: Path, capsys) -> None:
    def no_space(*args):  # type: ignore[no-untyped-def]
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(runner, "write_summary_csv", no_space)
    monkeypatch.setattr("harness.charts.report.write_report", no_space)
    assert fake_run(report=True) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["concurbench: warning: summary.csv not written: No space left on device",
                   "concurbench: warning: the report could not be drawn: [Errno 28] No space left on device"]
    assert read_only_run(tmp_path / "results")["status"] == "complete"


def test_reap_all_kills_a_child_that_was_never_registered() -> None:
    """A Popen cut short by a Ctrl+C never returns its child: reap_all finds it by its mark."""
    from harness.run import processes

    marked = subprocess.Popen(["sleep", "30"], start_new_session=True,
                              env={**os.environ, processes.SPAWNED_BY: str(os.getpid())})
    stranger = subprocess.Popen(["sleep", "30"], start_new_session=True)  # not the run's: left alone
    try:
        reaped = processes.reap_all()
        assert reaped == [marked.pid], (reaped, marked.pid, [(c.pid, c.cmdline()) for c in psutil.Process().children()])
        assert stranger.poll() is None
    finally:
        stranger.kill()
        stranger.wait()
        marked.wait()


def test_summary_table_and_report_tell_failed_and_interrupted_backends() -> None:
    from harness.charts.report import render_report
    from harness.results.model import Run
    from harness.results.printed import summary_table

    results = {"scenario": {"name": "tiny"}, "metadata": {}, "status": "interrupted", "steps": [fake_step()],
               "backends": {"selectors": {"status": "ok"},
                            "forking": {"status": "failed", "error": "the backend exited (killed by SIGKILL) during "
                                                                     "forking users=2 rep 1/2, after 0 of 2 steps"},
                            "threaded": {"status": "interrupted",
                                         "error": "interrupted (SIGINT) during threaded users=2 warm-up"}},
               "events": [{"t": "2025-01-01T00:00:00.000+00:00", "kind": "interrupted", "backend": "threaded",
                           "step": None, "detail": "SIGINT during threaded users=2 warm-up"}]}
    lines = summary_table(results).splitlines()
    assert lines[-2] == ("forking    FAILED: the backend exited (killed by SIGKILL) during forking users=2 rep 1/2, "
                         "after 0 of 2 steps")
    assert lines[-1] == "threaded   INTERRUPTED: interrupted (SIGINT) during threaded users=2 warm-up"
    assert "SIGINT during threaded users=2 warm-up" in render_report(Run.of(results), [])


def test_driver_ratios_name_each_load_level_as_the_summary_does() -> None:
    """--driver both: run-b's steps again as a second driver's, twice as fast."""
    from harness.results.model import Run
    from harness.results.store import read_results
    from harness.run.command import driver_ratios
    from support import FIXTURES

    document = read_results(FIXTURES / "runs" / "run-b")
    wrk = [{**step, "backend": f"{step['backend']} (wrk)", "rps": (step.get("rps") or 0) * 2}
           for step in document["steps"]]
    text = driver_ratios(Run.of({**document, "steps": document["steps"] + wrk}), ("locust", "wrk"))
    assert "threaded" in text and " 1 user " in text and "1 users" not in text and " 8 users " in text
    assert "2.000" in text
