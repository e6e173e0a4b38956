"""A scenario file cannot run a command or an interpreter without the user's consent, nor
take a built-in backend's name, nor choose the directory a server serves (harness.run.trust).

Each hostile file's command would leave a marker file if it ran: the marker must not exist."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cli import main
from harness.run.trust import commands_to_trust
from harness.scenario import ScenarioError, load_scenario
from support import ROOT

TINY = '[load]\nusers = [1]\nduration = "0.2s"\n[[request]]\npath = "/"\n'


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "from-elsewhere.toml"
    path.write_text(TINY + text)
    return path


def run(capsys: pytest.CaptureFixture[str], scenario: Path, *args: str) -> tuple[int, str]:
    status = main(["run", "--scenario", str(scenario), "--out", str(scenario.parent / "out"), "--no-report", *args])
    return status, capsys.readouterr().err


@pytest.mark.parametrize("name", ["uvicorn", "http.server", "gunicorn-sync", "granian", "asyncio",
                                  "forking-reuseport2", "all"])
def test_a_scenario_cannot_take_a_builtin_backends_name(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                         name: str) -> None:
    marker = tmp_path / "ran"
    scenario = write(tmp_path, f'[backends]\n"{name}" = "touch {marker}; python3 -m http.server {{port}}"\n')
    status, err = run(capsys, scenario, "--backend", f"threaded,{name}", "--trust-scenario")
    assert status == 2 and not marker.exists()
    assert err.startswith(f"concurbench: error: {scenario}: backends.{name}: '{name}' is a built-in backend"), err
    assert len(err.splitlines()) == 1


def test_a_files_own_command_is_shown_and_not_run_without_consent(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    marker = tmp_path / "ran"
    command = f"touch {marker}; python3 -m http.server {{port}}"
    scenario = write(tmp_path, f'[backends]\nmine = "{command}"\nunused = "touch {marker}2 {{port}}"\n')
    status, err = run(capsys, scenario, "--backend", "mine")
    assert status == 2 and not marker.exists() and not (out := tmp_path / "out").exists(), out
    assert f"{scenario} runs commands of its own" in err and f"[backends] mine = {command!r}" in err
    assert "unused" not in err  # not chosen by --backend: it would not run
    assert "--trust-scenario" in err.splitlines()[-1]


def test_a_files_interpreter_is_not_run_without_consent(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    marker = tmp_path / "ran"
    python = tmp_path / "python"
    python.write_text(f"#!/bin/sh\ntouch {marker}\nexec {sys.executable} \"$@\"\n")
    python.chmod(0o755)
    scenario = write(tmp_path, f'[server]\npython = "{python}"\n')
    status, err = run(capsys, scenario, "--backend", "threaded")
    assert status == 2 and not marker.exists()
    assert f"[server] python = {str(python)!r}" in err
    # --server-python is the user's own choice: the file's interpreter is then not run at all
    assert commands_to_trust(load_scenario(scenario), {"threaded": "threaded"}, pythons_from_file=False) == []


def test_builtin_scenarios_need_no_consent() -> None:
    interpreters = load_scenario("interpreters")
    assert interpreters.pythons  # it names interpreters, and ships with the code
    assert commands_to_trust(interpreters, {"threaded": "threaded"}, pythons_from_file=True) == []


@pytest.mark.parametrize("args", [
    '[server]\nargs = ["--docroot", "/"]',
    '[server]\nargs = ["--docroot=/"]',
    '[server.backend.threaded]\nargs = ["--docroot", "/etc"]',
])
def test_a_scenario_cannot_choose_the_docroot(tmp_path: Path, args: str) -> None:
    with pytest.raises(ScenarioError) as raised:
        load_scenario(write(tmp_path, args + "\n"))
    assert raised.value.file == str(tmp_path / "from-elsewhere.toml")
    assert raised.value.key.endswith("args[0]") and "--docroot" in raised.value.reason


def test_the_servers_take_no_abbreviated_flag() -> None:
    """Else `--doc /` in a scenario's args would be --docroot under another name."""
    done = subprocess.run([sys.executable, "-m", "servers", "--backend", "threaded", "--doc", "/", "--port", "0"],
                          capture_output=True, text=True, cwd=ROOT, timeout=30,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 2 and "unrecognized arguments: --doc" in done.stderr
