"""The interpreter and the server's core count as dimensions of a run: --server-python /
[server] python, and --cores / [server] cpus. End to end with real interpreters, backends
and a real driver; the interpreters this machine has decide what is tested (a skip names
what is missing)."""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from support import ROOT
from harness.run.launch import launch_backend
from harness.run.targets import resolve_backends
from harness.run.command import RunOptions, cores_problem
from harness.run.interpreter import (Interpreter, InterpreterError, expand_backends, leave_out_unfit,
                                    own_interpreter, probe, resolve_interpreters, unfit)
from harness.run.plan import levels, plan_run
from harness.scenario import ScenarioError, load_scenario

pytestmark = pytest.mark.timeout(120)
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
TINY = """
[load]
users = [2]
duration = "0.4s"  # what these runs check is which steps ran where, not what a step measured
warmup = "0s"
repeat = 1
timeout = "2s"
[[request]]
path = "/"
"""


def other_python(version: str) -> str | None:
    """A CPython of `version` that is not the harness's own: on PATH, or under pyenv."""
    for candidate in [shutil.which(f"python{version}"), *sorted(glob.glob(f"/root/.pyenv/versions/{version}*/bin/"
                                                                          f"python{version}"))]:
        if candidate and not os.path.samefile(candidate, sys.executable):
            try:
                probe(candidate)
            except InterpreterError:
                continue
            return candidate
    return None


PY313 = other_python("3.13")
needs_313 = pytest.mark.skipif(PY313 is None, reason="no Python 3.13 on this machine (PATH or pyenv)")


def concurbench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True, cwd=ROOT,
                          env=ENV, timeout=110)


def scenario_file(tmp_path: Path, server: str = "") -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY + (f"[server]\n{server}\n" if server else ""))
    return path


def run_results(out: Path) -> dict:
    (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
    return json.loads((run_dir / "results.json").read_text())


# --- the scenario keys ------------------------------------------------------------------------

@pytest.mark.parametrize(("server", "pythons", "cpus"), [
    ('python = "python3.13"', ("python3.13",), ()),
    ('python = ["python3.11", "python3.13"]', ("python3.11", "python3.13"), ()),
    ("cpus = [1, 2, 4]", (), (1, 2, 4)),
])
def test_scenario_reads_python_and_cpus(tmp_path: Path, server: str, pythons: tuple, cpus: tuple) -> None:
    scenario = load_scenario(scenario_file(tmp_path, server))
    assert (scenario.pythons, scenario.cpus) == (pythons, cpus)


@pytest.mark.parametrize(("server", "key", "reason"), [
    ("python = []", "server.python", "non-empty array"),
    ("python = 3.13", "server.python", "got 3.13 (a float)"),
    ('python = ["python3.13", 3]', "server.python[1]", "non-empty string"),
    ('python = ["python3.13", "python3.13"]', "server.python", "twice"),
    ("cpus = [0]", "server.cpus[0]", "positive integer"),
    ("cpus = [2, 2]", "server.cpus", "twice"),
    ("cpu = [1]", "server.cpu", "did you mean 'cpus'"),
    ('share_driver_cpus = "yes"', "server.share_driver_cpus", "true or false"),
    ('missing_python = "ignore"', "server.missing_python", "'refuse' or 'skip'"),
])
def test_bad_python_or_cpus_names_file_key_and_reason(tmp_path: Path, server: str, key: str, reason: str) -> None:
    path = scenario_file(tmp_path, server)
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    assert (caught.value.file, caught.value.key) == (str(path), key)
    assert reason in caught.value.reason


def test_a_core_sweep_starts_each_count_in_turn_and_the_plan_counts_each_start(tmp_path: Path) -> None:
    scenario = load_scenario(scenario_file(tmp_path, "cpus = [1, 2]")).with_overrides(users=[1, 4])
    assert [(level.cores, level.users) for level in levels(scenario)] == [(1, 1), (1, 4), (2, 1), (2, 4)]
    plan = plan_run(scenario, ["threaded"])
    assert plan.core_counts == (1, 2)
    assert [step.level.users for step in plan.steps_of("threaded", 0, cores=2)] == [1, 4]
    one = plan_run(scenario.with_overrides(cpus=[1]), ["threaded"])
    assert plan.seconds - one.seconds > 2 * (scenario.warmup_s + scenario.duration_s)  # levels and a start more


# --- the interpreter --------------------------------------------------------------------------

def test_the_harness_own_interpreter_is_own_and_unlabelled() -> None:
    (own,), _ = resolve_interpreters((sys.executable,))
    assert own.own and own.tag == "" and own.label("threaded") == "threaded"
    assert own.version == own_interpreter().version


def test_a_scenario_may_skip_the_interpreters_that_are_not_there(tmp_path: Path) -> None:
    """missing_python = "skip": the run goes on with those there, and says why each other
    was left out; --server-python names each one on purpose, so there a missing one stops it."""
    missing = str(tmp_path / "no-such-python")
    path = scenario_file(tmp_path, f'python = [{sys.executable!r}, {missing!r}]\nmissing_python = "skip"')
    scenario = load_scenario(path)
    assert scenario.skip_missing_python
    (own,), (why,) = resolve_interpreters(scenario.pythons, skip_missing=True)
    assert own.own and why.startswith(f"--server-python {missing}: no such interpreter")
    with pytest.raises(InterpreterError, match="no such interpreter"):
        resolve_interpreters(scenario.pythons)
    assert not scenario.with_overrides(pythons=[sys.executable, missing]).skip_missing_python
    with pytest.raises(InterpreterError, match="none of"):
        resolve_interpreters((missing,), skip_missing=True)


@needs_313
def test_another_interpreter_is_probed_and_labelled() -> None:
    (other,), _ = resolve_interpreters((PY313,))
    assert not other.own and other.version.startswith("3.13") and other.tag in ("3.13", "3.13t")
    assert other.label("threaded") == f"threaded@{other.tag}"
    assert other.gil_enabled is (not other.free_threaded)  # a free-threaded build runs without it by default
    assert "path" not in other.to_dict()  # measurement rule 13: no path of this machine in the results


def test_two_interpreters_that_share_a_version_get_whole_versions_or_are_refused() -> None:
    def made_up(version: str, path: str) -> Interpreter:
        return Interpreter(path=path, version=version, implementation="CPython", build="", free_threaded=False,
                           gil_enabled=True, own=False)
    from harness.run.interpreter import tag_interpreters

    a, b = tag_interpreters([made_up("3.12.1", "/a"), made_up("3.12.4", "/b")])
    assert (a.tag, b.tag) == ("3.12.1", "3.12.4")
    with pytest.raises(InterpreterError, match="give each interpreter once"):
        tag_interpreters([made_up("3.12.1", "/a"), made_up("3.12.1", "/b")])


@pytest.mark.parametrize("bad", ["/nonexistent/python3", "true", "python3.10-not-here"])
def test_a_path_that_is_not_python_311_gives_one_line_and_exit_2(tmp_path: Path, bad: str) -> None:
    done = concurbench("run", "--scenario", str(scenario_file(tmp_path)), "--backend", "threaded",
                       "--server-python", bad, "--out", str(tmp_path / "out"), "--no-report")
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and done.stderr.startswith(f"concurbench: error: --server-python {bad}: ")
    assert not (tmp_path / "out").exists()  # refused before anything started


def test_an_old_python_is_refused_by_its_version(tmp_path: Path) -> None:
    candidates = [*glob.glob("/root/.pyenv/versions/3.10*/bin/python3.10"), shutil.which("python3.10")]
    old = next((p for p in candidates if p and subprocess.run([p, "-c", ""], capture_output=True).returncode == 0),
               None)
    if old is None:
        pytest.skip("no Python 3.10 on this machine")
    with pytest.raises(InterpreterError, match=r"Python 3\.10\.\d+; the servers need Python 3\.11 or newer"):
        probe(old)


def test_ours_run_once_per_interpreter_and_a_command_once() -> None:
    own, _ = resolve_interpreters((sys.executable,))
    fake = Interpreter(path="/x", version="3.13.0", implementation="CPython", build="", free_threaded=True,
                       gil_enabled=False, own=False, tag="3.13t")
    backends = {**resolve_backends("threaded,forking-reuseport2"), **resolve_backends("cmd:server --port {port}")}
    labelled, pythons = expand_backends(backends, (*own, fake))
    assert list(labelled) == ["threaded", "threaded@3.13t", "forking-reuseport2", "forking-reuseport2@3.13t",
                              "cmd:server --port {port}"]
    assert labelled["forking-reuseport2@3.13t"] == "forking --workers 2 --reuseport"
    assert pythons["threaded@3.13t"] is fake and "cmd:server --port {port}" not in pythons


@needs_313
def test_a_backend_launched_under_another_python_runs_there() -> None:
    running = launch_backend("threaded", cpus=(), python=PY313)
    try:
        assert os.path.samefile(psutil.Process(running.process.pid).exe(), os.path.realpath(PY313))
    finally:
        running.stop()


@needs_313
def test_a_run_compares_interpreters_end_to_end(tmp_path: Path) -> None:
    scenario = scenario_file(tmp_path, f'python = ["{sys.executable}", "{PY313}"]')
    done = concurbench("run", "--scenario", str(scenario), "--backend", "threaded", "--out", str(tmp_path / "out"),
                       "--no-report", "--trust-scenario")
    assert done.returncode == 0, done.stderr
    results = run_results(tmp_path / "out")
    label = f"threaded@{resolve_interpreters((PY313,))[0][0].tag}"
    assert [step["backend"] for step in results["steps"]] == ["threaded", label]
    assert all(step["requests"] > 0 for step in results["steps"])
    python = results["backends"][label]["python"]
    assert python["version"].startswith("3.13") and python["own"] is False
    assert results["backends"]["threaded"]["python"]["own"] is True
    assert str(Path(PY313).parent) not in json.dumps(results)  # no path of this machine
    assert label in done.stdout  # the summary table names it


@pytest.mark.parametrize(("target", "version", "modules", "why"), [
    ("interpreters", (3, 11), ("gevent",), "it needs Python 3.13+ (`make pythons`, then --server-python 3.13)"),
    ("interpreters", (3, 13), (), None),
    ("gevent", (3, 13), (), "gevent is not installed for Python 3.13.9"),
    ("gevent", (3, 11), ("gevent",), None),
    ("forking --workers 2", (3, 11), (), None),
    ("cmd:uvicorn --port {port}", (3, 11), (), None),
], ids=["interpreters-on-3.11", "interpreters-on-3.13", "gevent-missing", "gevent-there", "variant", "cmd"])
def test_what_a_backend_needs_of_its_interpreter(target: str, version: tuple[int, int], modules: tuple[str, ...],
                                                 why: str | None) -> None:
    interpreter = Interpreter(path="/x", version=f"{version[0]}.{version[1]}.9", implementation="CPython", build="",
                              free_threaded=False, gil_enabled=True, own=False, modules=modules,
                              version_info=version)
    assert unfit(target, interpreter) == why
    kept, notes = leave_out_unfit({"x": target, "y": "threaded"}, {"x": interpreter, "y": interpreter})
    assert (list(kept), notes) == ((["y"], (f"x: {why}",)) if why else (["x", "y"], ()))
    if why:
        with pytest.raises(InterpreterError, match="no backend can run"):
            leave_out_unfit({"x": target}, {"x": interpreter})


def test_all_leaves_out_what_cannot_run_and_says_so(tmp_path: Path) -> None:
    """On the harness's 3.11, --backend all goes on without the interpreters backend (3.13+),
    one line saying so, rather than a failed backend in every demo. The line comes before
    anything starts (here a --cores the machine cannot give then stops the run, so the test
    does not drive seven backends); the rest goes on to run."""
    if own_interpreter().version_info >= (3, 13):
        pytest.skip("the harness's own Python runs every backend")
    done = concurbench("run", "--scenario", str(scenario_file(tmp_path)), "--backend", "all", "--out",
                       str(tmp_path / "out"), "--no-report", "--cores", "99")
    assert done.returncode == 2, done.stderr
    said = done.stderr.splitlines()
    assert said[0].startswith("concurbench: leaving out interpreters: it needs Python 3.13+"), said
    assert said[1].startswith("concurbench: error: --cores 99:") and len(said) == 2
    kept, notes = leave_out_unfit(*expand_backends(resolve_backends("all"), ()))
    assert "interpreters" not in kept and "threaded" in kept and len(notes) == 1


def test_a_backend_whose_dependency_the_interpreter_lacks_is_left_out_clearly(tmp_path: Path) -> None:
    """gevent on an interpreter without gevent: left out in one line and the run goes on with
    the rest; with nothing left to run, refused before anything starts."""
    if PY313 is None:
        pytest.skip("no Python 3.13 on this machine (PATH or pyenv)")
    if subprocess.run([PY313, "-c", "import gevent"], capture_output=True).returncode == 0:
        pytest.skip(f"{PY313} has gevent")
    tag = resolve_interpreters((PY313,))[0][0].tag
    done = concurbench("run", "--scenario", str(scenario_file(tmp_path)), "--backend", "gevent,threaded",
                       "--server-python", PY313, "--out", str(tmp_path / "out"), "--no-report")
    assert done.returncode == 0, done.stderr
    assert f"leaving out gevent@{tag}: gevent is not installed for Python" in done.stderr
    results = run_results(tmp_path / "out")
    assert list(results["backends"]) == [f"threaded@{tag}"]
    alone = concurbench("run", "--scenario", str(scenario_file(tmp_path)), "--backend", "gevent",
                        "--server-python", PY313, "--out", str(tmp_path / "none"), "--no-report")
    assert alone.returncode == 2 and len(alone.stderr.strip().splitlines()) == 1
    assert "no backend can run on the interpreters given" in alone.stderr
    assert not (tmp_path / "none").exists() or not any((tmp_path / "none").iterdir())


# --- the core count ---------------------------------------------------------------------------

def test_a_count_the_machine_cannot_give_is_refused_with_the_reason() -> None:
    options = RunOptions(out_root=Path("."), server_cpus=(0,), driver_cpus=(1,))
    problem = cores_problem((1, 2), options)
    assert problem is not None and problem.startswith("--cores 2: the server can be given at most 1 CPU here")
    assert "the driver keeps 1" in problem
    assert cores_problem((1,), options) is None
    assert cores_problem((), options) is None


@pytest.mark.parametrize(("given", "counts", "share", "pinning"), [
    pytest.param(((0,), (1,)), (1, 2), True, ((0, 1), (1,)), id="2 CPUs: the server goes on into the driver's"),
    pytest.param(((0,), (1,)), (1, 2), False, ((0,), (1,)), id="not asked: unchanged"),
    pytest.param(((0,), (1,)), (1,), True, ((0,), (1,)), id="asked, not needed: unchanged"),
    pytest.param(((0,), (1,)), (), True, ((0,), (1,)), id="no sweep: unchanged"),
    pytest.param(((0, 1), (2, 3)), (1, 2, 3), True, ((0, 1, 2, 3), (2, 3)), id="4 CPUs, a sweep to 3"),
])
def test_a_sweep_may_share_the_drivers_cpus_only_when_asked_and_needed(given, counts, share, pinning) -> None:
    options = RunOptions(out_root=Path("."), server_cpus=given[0], driver_cpus=given[1])
    assert options.pinning(counts=counts, share=share) == pinning
    assert (cores_problem(counts, options, share=share) is None) is (not counts or max(counts) <= len(pinning[0]))


def test_a_count_past_the_shared_cpus_too_is_refused_and_the_key_is_suggested_where_unset() -> None:
    options = RunOptions(out_root=Path("."), server_cpus=(0,), driver_cpus=(1,))
    assert "[server] share_driver_cpus = true" in cores_problem((1, 2), options)
    problem = cores_problem((1, 3), options, share=True)
    assert problem.startswith("--cores 3: the server can be given at most 2 CPUs here")
    assert "share_driver_cpus" not in problem


def test_the_shared_sweep_runs_on_the_drivers_cpu_flagged_and_asks_each_step_its_gil(tmp_path: Path) -> None:
    """The machine's own split (server 0, driver 1 on 2 CPUs) with share_driver_cpus: CPU 0,
    then 0 and 1; the step on 1 is flagged shared-cpu with the driver's share beside it, and
    every step records what the server said of its GIL after it."""
    if os.cpu_count() != 2:
        pytest.skip("the default split this test names is a 2-CPU machine's")
    done = concurbench("run", "--scenario", str(scenario_file(tmp_path, "cpus = [1, 2]\nshare_driver_cpus = true")),
                       "--backend", "threaded", "--out", str(tmp_path / "out"), "--no-report")
    assert done.returncode == 0, done.stderr
    results = run_results(tmp_path / "out")
    assert results["metadata"]["pinning"] == {"server": [0, 1], "driver": [1]}
    one, two = results["steps"]
    assert (one["server_cpus"], "shared-cpu" in one["flags"], "share_of_server_percent" in one["driver"]) == (
        [0], False, False)
    assert (two["server_cpus"], "shared-cpu" in two["flags"]) == ([0, 1], True)
    assert two["driver"]["share_of_server_percent"] == pytest.approx(two["driver"]["cpu_percent_by_cpu"]["1"] / 2,
                                                                     abs=0.1)
    assert f"shared-cpu (driver {two['driver']['share_of_server_percent']:.1f}%" in done.stdout
    assert all(step["runtime"]["gil_enabled"] is True and step["runtime"]["free_threaded"] is False
               for step in results["steps"])


def test_cores_beyond_the_machine_exit_2_before_anything_starts(tmp_path: Path) -> None:
    too_many = (os.cpu_count() or 1) + 1
    done = concurbench("run", "--scenario", str(scenario_file(tmp_path)), "--backend", "threaded",
                       "--cores", f"1,{too_many}", "--out", str(tmp_path / "out"), "--no-report")
    assert done.returncode == 2
    assert done.stderr.startswith(f"concurbench: error: --cores {too_many}: the server can be given at most")
    assert not (tmp_path / "out").exists()


def test_a_core_sweep_restarts_the_backend_pinned_to_each_count(tmp_path: Path) -> None:
    """Counts this machine allows: with the server given CPUs 0 and 1 (the driver sharing 1
    on a 2-CPU machine), the backend runs pinned to 1, then to 2 CPUs."""
    if (os.cpu_count() or 1) < 2:
        pytest.skip("one CPU: a sweep has one count")
    done = concurbench("run", "--scenario", str(scenario_file(tmp_path, "cpus = [1, 2]")), "--backend", "threaded",
                       "--server-cpus", "0,1", "--driver-cpus", "1", "--out", str(tmp_path / "out"), "--no-report")
    assert done.returncode == 0, done.stderr
    results = run_results(tmp_path / "out")
    assert [(s["cores"], s["server_cpus"]) for s in results["steps"]] == [(1, [0]), (2, [0, 1])]
    assert "threaded (1 CPU)" in done.stdout and "threaded (2 CPUs)" in done.stdout
    said = done.stdout + done.stderr
    assert said.index("threaded: starting on CPU 0\n") < said.index("threaded: starting on CPU 0,1\n")
