"""Other processes on the server's CPUs (measurement rule 11, the machine's side), end to end:
one small run on a quiet server CPU and one beside a busy loop pinned to it. The hogged step
records the others' share and is flagged contended, in the summary and the report too; the
quiet one is not.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.charts.report import render_report
from harness.results.steps import CONTENDED, CONTENDED_PERCENT
from harness.results.store import read_results
from harness.results.summary import summary_table
from harness.run.sampling import read_jiffies
from support import ROOT, busy_loop_on

pytestmark = [pytest.mark.timeout(90),
              pytest.mark.skipif((os.cpu_count() or 1) < 2 or read_jiffies() is None,
                                 reason="the server and the driver need a CPU each, and /proc/stat")]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
SERVER_CPU, DRIVER_CPU = 0, 1
BUSY_BEFORE = "busy-before.txt"
SCENARIO = """
description = "others on the server's CPUs: GET / at one level"
[load]
users = [4]
duration = "1s"
warmup = "0.25s"
repeat = 2
timeout = "2s"
[[request]]
method = "GET"
path = "/"
"""


def run(scenario: Path, out: Path) -> Path:
    done = subprocess.run(
        [sys.executable, "-m", "harness.cli", "run", "--scenario", str(scenario), "--backend", "asyncio",
         "--server-cpus", str(SERVER_CPU), "--driver-cpus", str(DRIVER_CPU), "--out", str(out), "--no-report"],
        capture_output=True, text=True, cwd=ROOT, env=ENV, timeout=80)
    assert done.returncode == 0, done.stderr
    (run_dir,) = out.iterdir()
    return run_dir


def steps(run_dir: Path) -> list[dict]:
    return read_results(run_dir)["steps"]


def others(run_dir: Path) -> list[float]:
    return [step["server"]["others_percent"] for step in steps(run_dir)]


def busy_share(cpu: int, seconds: float = 1.0) -> float:
    """How busy `cpu` is over `seconds` (user + nice + system jiffies), in percent."""
    before = read_jiffies()
    time.sleep(seconds)
    after = read_jiffies()
    assert before is not None and after is not None
    return 100 * (after[cpu][2] - before[cpu][2]) / (after[cpu][1] - before[cpu][1])


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """A quiet run, then one with a busy loop pinned to the server's CPU; checks that the loop
    ran there all the while. BUSY_BEFORE: how busy the server's CPU was just before the quiet
    run, with nothing of the test's running."""
    tmp = tmp_path_factory.mktemp("contended")
    scenario = tmp / "others.toml"
    scenario.write_text(SCENARIO)
    busy_before = busy_share(SERVER_CPU)
    dirs = {"quiet": run(scenario, tmp / "quiet")}
    busy_before = max(busy_before, busy_share(SERVER_CPU))  # and just after it
    (tmp / BUSY_BEFORE).write_text(f"{busy_before:.1f}")
    with busy_loop_on(SERVER_CPU):
        dirs["hogged"] = run(scenario, tmp / "hogged")
    yield dirs


def test_a_step_beside_a_busy_loop_on_the_servers_cpu_is_contended(runs: dict[str, Path]) -> None:
    """The loop gets about half the CPU (a session of its own, as the server has): others well
    over the threshold in every step, the server's own CPU share cut."""
    hogged = steps(runs["hogged"])
    assert all(CONTENDED in step["flags"] for step in hogged), others(runs["hogged"])
    assert min(others(runs["hogged"])) > 4 * CONTENDED_PERCENT, others(runs["hogged"])
    # steal is its own figure: the hypervisor did not see the loop (whatever else it took meanwhile)
    assert all(step["server"]["others_percent"] > step["server"]["steal_percent"] for step in hogged)


def test_a_quiet_step_is_not_contended(runs: dict[str, Path]) -> None:
    busy = float((runs["quiet"].parent.parent / BUSY_BEFORE).read_text())
    if busy > CONTENDED_PERCENT:  # then the run measured the machine's other work, as it should
        pytest.skip(f"CPU {SERVER_CPU} was {busy:.0f}% busy with other work around the quiet run: no quiet run here")
    quiet = steps(runs["quiet"])
    assert all(CONTENDED not in step["flags"] for step in quiet), others(runs["quiet"])
    assert max(others(runs["quiet"])) <= CONTENDED_PERCENT


def test_the_summary_and_the_report_say_so(runs: dict[str, Path]) -> None:
    results = read_results(runs["hogged"])
    table = summary_table(results)
    assert "contended (others " in table
    assert "contended: other processes of this machine" in table  # the legend
    page = render_report(results, [])
    assert 'id="flag-contended"' in page  # the flag's meaning, once
    assert "other processes of this machine used" in page  # each step's warning, with its own figure
