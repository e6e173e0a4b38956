"""What a run records about where it ran, without a path of the machine (measurement rule
13), and the guard on reference results: a clean git tree and the project's own .venv."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from harness.run import command
from harness.run.command import RunOptions, reference_problem, run_command
from harness.run.metadata import collect_metadata, recorded_path
from harness.run.processes import PROJECT_ROOT


def test_metadata_names_kernel_versions_and_no_machine_path() -> None:
    builtin = PROJECT_ROOT / "harness" / "scenario" / "builtin" / "quick.toml"
    meta = collect_metadata(scenario_path=builtin, scenario_sha256="ab" * 32, pinning={"server": [0], "driver": [1]})
    assert meta["kernel"] == platform.release()
    assert meta["python"] == {"version": platform.python_version(), "implementation": platform.python_implementation()}
    assert {"gevent", "greenlet", "locust", "psutil"} <= set(meta["packages"])
    assert meta["packages"]["gevent"] and meta["packages"]["greenlet"]  # both installed with locust
    assert meta["scenario"]["path"] == "harness/scenario/builtin/quick.toml"
    assert str(PROJECT_ROOT) not in json.dumps(meta)
    assert os.sep + ".venv" not in json.dumps(meta)


def test_a_scenario_outside_the_project_keeps_its_path(tmp_path: Path) -> None:
    mine = tmp_path / "mine.toml"
    assert recorded_path(mine) == str(mine)
    assert recorded_path(PROJECT_ROOT / "bench" / "x.toml") == "bench/x.toml"


def git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid"}
    return subprocess.run(["git", "-C", str(cwd), *args], env=env, check=True, capture_output=True,
                          text=True).stdout.strip()


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project checkout of its own: one committed file, results/reference/, a .venv."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    git(tmp_path, "init", "-q")
    (tmp_path / "tracked.txt").write_text("one\n")
    git(tmp_path, "add", "tracked.txt")
    git(tmp_path, "commit", "-q", "-m", "first")
    (tmp_path / "results" / "reference").mkdir(parents=True)
    (tmp_path / ".venv").mkdir()
    return tmp_path


def test_a_clean_tree_with_its_own_venv_may_write_reference_results(project: Path) -> None:
    (project / "untracked.json").write_text("{}")  # untracked files do not count
    assert reference_problem(project / "results" / "reference", root=project, prefix=str(project / ".venv")) is None
    assert reference_problem(project / "results" / "reference" / "x", root=project,
                             prefix=str(project / ".venv")) is None


def test_a_dirty_tree_may_not(project: Path) -> None:
    (project / "tracked.txt").write_text("two\n")
    problem = reference_problem(project / "results" / "reference" / "x", root=project, prefix=str(project / ".venv"))
    assert problem and "uncommitted changes" in problem
    # anywhere else it may: only reference results must be reproducible
    assert reference_problem(project / "results" / "mine", root=project, prefix="/elsewhere") is None


def test_an_unknown_tree_may_not(project: Path) -> None:
    shutil.rmtree(project / ".git")
    problem = reference_problem(project / "results" / "reference", root=project, prefix=str(project / ".venv"))
    assert problem and "git cannot tell" in problem


def test_another_interpreter_may_not(project: Path, tmp_path_factory) -> None:
    scratch = tmp_path_factory.mktemp("scratch-venv")
    problem = reference_problem(project / "results" / "reference" / "x", root=project, prefix=str(scratch))
    assert problem and "the project's own environment" in problem and str(project / ".venv") in problem


def test_concurbench_run_into_reference_refuses_a_dirty_tree_before_anything(monkeypatch, capsys) -> None:
    """The decision's git answer is made dirty; the rest is `concurbench run` as it is."""
    out = PROJECT_ROOT / "results" / "reference" / f"test-{uuid.uuid4().hex}"
    monkeypatch.setattr(command, "collect_git_commit", lambda root: {"commit": "0" * 40, "dirty": True})
    monkeypatch.setattr(command, "run_scenario", lambda *args: pytest.fail("the run started"))
    status = run_command("quick", backend="selectors", users=(1,), duration_s=0.5, warmup_s=0.0, repeat=1,
                         options=RunOptions(out_root=out, report=False))
    assert status == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"concurbench: error: --out {out}: ") and "uncommitted" in err[0]
    assert not out.exists()  # nothing written
