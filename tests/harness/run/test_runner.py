"""`concurbench run` end to end: real backends, a real Locust driver, results on disk."""

from __future__ import annotations

import csv
import json
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from support import ROOT
from harness.results.store import SCHEMA_VERSION
from harness.results.summary import SUMMARY_COLUMNS

pytestmark = pytest.mark.timeout(120)
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}

TINY = """
description = "tiny: two levels of GET /"
[load]
users = [1, 4]
duration = "1s"
warmup = "0.5s"
repeat = 2
timeout = "2s"
[[request]]
method = "GET"
path = "/"
"""

# Shorter warm-ups for runs whose checks never read what a warm-up leads to; and shorter steps
# for those that do not read a step's timeseries either, which needs a whole second.
SHORT_WARMUP = ("--warmup", "0.1s")
SHORT = ("--duration", "0.4s", *SHORT_WARMUP)


def concurbench(*args: str, **kwargs) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True, cwd=ROOT,
                          env=ENV, timeout=110, **kwargs)


def start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "harness.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT, env=ENV, start_new_session=True)


def _cmdline(proc: psutil.Process) -> list[str]:
    """A process's argv, or [] if it has exited meanwhile (a reaped forking child, a zombie)."""
    try:
        return proc.cmdline()
    except psutil.Error:
        return []


def only_run_dir(out: Path) -> Path:
    runs = [p for p in out.iterdir() if p.is_dir()]
    assert len(runs) == 1
    return runs[0]


def wait_for_steps(out: Path, count: int, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for path in out.glob("*/results.json"):
            results = json.loads(path.read_text())
            if len(results["steps"]) >= count:
                return results
        time.sleep(0.2)
    raise AssertionError(f"no {count} steps within {timeout}s")


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    return path


def test_end_to_end_writes_results_and_summary(tiny: Path, tmp_path: Path) -> None:
    out = tmp_path / "results"
    done = concurbench("run", "--scenario", str(tiny), "--backend", "selectors,threaded", "--out", str(out),
                       "--no-report", *SHORT_WARMUP)
    assert done.returncode == 0, done.stderr
    run_dir = only_run_dir(out)
    results = json.loads((run_dir / "results.json").read_text())
    assert results["version"] == SCHEMA_VERSION and results["status"] == "complete"
    meta = results["metadata"]
    assert meta["pinning"] == {"server": [0], "driver": [1]} or os.cpu_count() != 2
    assert meta["scenario"]["sha256"] and meta["cpu_count"] and meta["python"] and meta["packages"]["locust"]
    assert meta["cpu_iters_per_ms"] > 0  # /cpu calibrated once, for every backend
    assert meta["latency_floor"]["p50_us"] > 0  # measured once, before any backend
    assert f"latency floor: p50 {meta['latency_floor']['p50_us']} µs" in done.stdout
    # Rounds: each backend once per repetition, in turn (A B A B), in the order recorded.
    assert meta["order"] == [{"backend": "selectors", "round": 0}, {"backend": "threaded", "round": 0},
                             {"backend": "selectors", "round": 1}, {"backend": "threaded", "round": 1}]
    steps = results["steps"]
    assert [(s["backend"], s["users"], s["repetition"]) for s in steps] == [
        (b, u, r) for r in (0, 1) for b in ("selectors", "threaded") for u in (1, 4)]
    assert {name: (entry["status"], entry["rounds_done"]) for name, entry in results["backends"].items()} == {
        "selectors": ("ok", 2), "threaded": ("ok", 2)}
    for step in steps:
        assert step["status"] == "ok" and step["requests"] > 0 and step["rps"] > 0
        assert 0 < step["p50_us"] <= step["p90_us"] <= step["p99_us"] <= step["p999_us"] <= step["max_us"]
        assert step["histogram"] and step["timeseries"]
        server, driver = step["server"], step["driver"]
        assert server["rss_bytes"] > 0 and server["pss_bytes"] is None  # one process: RSS, no PSS
        # Cost: the server's CPU over the window, per answer; no more CPU than its CPUs had.
        assert 0 < server["cpu_seconds"] <= step["duration_s"] * len(meta["pinning"]["server"]) * 1.05
        assert server["cpu_us_per_request"] == pytest.approx(server["cpu_seconds"] * 1e6 / step["requests"], rel=0.01)
        assert 1 < server["cpu_us_per_request"] < 10_000
        assert server["cpu_percent"] == pytest.approx(100 * server["cpu_seconds"] / step["duration_s"], abs=0.2)
        assert 0 <= server["steal_percent"] <= 100 and 0 <= driver["steal_percent"] <= 100
        assert driver["cpu_percent"] > 0 and driver["self_cpu_percent"] > 0
        assert set(driver["cpu_percent_by_cpu"]) == {str(cpu) for cpu in meta["pinning"]["driver"]}
        # asked after the step, from inside the server: the harness's own interpreter, a GIL build
        assert step["runtime"] == {"python": platform.python_version(), "free_threaded": False, "gil_enabled": True}
    with open(run_dir / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == SUMMARY_COLUMNS
    assert [(r["backend"], r["users"]) for r in rows] == [("selectors", "1"), ("selectors", "4"),
                                                          ("threaded", "1"), ("threaded", "4")]
    assert all(float(r["cpu_us_per_request"]) > 0 for r in rows)
    assert "selectors" in done.stdout and "req/s" in done.stdout  # the summary table


def test_the_whole_driver_counts_and_a_process_tree_has_pss(tmp_path: Path) -> None:
    """--driver-procs 2: the master and both workers, summed per driver CPU; forking: a tree,
    whose memory is PSS beside the RSS sum."""
    scenario = tmp_path / "forking.toml"
    scenario.write_text(TINY.replace("users = [1, 4]", "users = [8]").replace("repeat = 2", "repeat = 1"))
    out = tmp_path / "results"
    done = concurbench("run", "--scenario", str(scenario), "--backend", "forking", "--driver-procs", "2",
                       "--out", str(out), "--no-report")
    assert done.returncode == 0, done.stderr
    results = json.loads((only_run_dir(out) / "results.json").read_text())
    (step,) = results["steps"]
    driver = step["driver"]
    assert driver["workers"] == 2
    # self_cpu_percent is the busiest worker alone; the driver CPUs carry both workers and the master.
    by_cpu = driver["cpu_percent_by_cpu"]
    assert driver["cpu_percent"] == max(by_cpu.values())
    assert sum(by_cpu.values()) > 1.3 * driver["self_cpu_percent"], driver  # one worker alone: about 1.0
    server = step["server"]
    assert server["pss_bytes"] and server["rss_bytes"] >= server["pss_bytes"] > 0


def test_a_backend_that_cannot_start_is_recorded_and_the_run_goes_on(tiny: Path, tmp_path: Path) -> None:
    """... without it: it sits out the later rounds. The one that goes on is a ready-made peer
    (the stdlib's http.server), recorded by its command without this machine's interpreter path."""
    scenario = tmp_path / "boom.toml"
    scenario.write_text(TINY + '[backends]\nboom = "python3 -c \'import sys; sys.exit(\\"boom on {port}\\")\'"\n')
    out = tmp_path / "results"
    done = concurbench("run", "--scenario", str(scenario), "--backend", "http.server,boom", "--users", "1",
                       "--out", str(out), "--no-report", "--trust-scenario", *SHORT)
    assert done.returncode == 1
    results = json.loads((only_run_dir(out) / "results.json").read_text())
    info = results["backends"]["boom"]
    assert info["status"] == "failed" and "boom on" in info["stderr_tail"] and info["round"] == 0
    peer = results["backends"]["http.server"]
    assert peer["status"] == "ok" and peer["rounds_done"] == 2
    assert peer["command"] == "cmd:python -m http.server --bind {host} {port}"
    assert results["metadata"]["order"] == [{"backend": "http.server", "round": 0}, {"backend": "boom", "round": 0},
                                            {"backend": "http.server", "round": 1}]
    assert [(s["backend"], s["repetition"]) for s in results["steps"]] == [("http.server", 0), ("http.server", 1)]
    assert [s["runtime"] for s in results["steps"]] == [None, None]  # not ours: no GET /runtime asked
    assert "Traceback" not in done.stderr


def test_backend_rejecting_its_flags_is_recorded_with_its_stderr(tiny: Path, tmp_path: Path) -> None:
    """A scenario passing a flag the server refuses: the failure carries the server's own words."""
    scenario = tmp_path / "bad-flag.toml"
    scenario.write_text(TINY.replace("[[request]]", '[server]\nargs = ["--max-body", "0"]\n[[request]]'))
    out = tmp_path / "results"
    done = concurbench("run", "--scenario", str(scenario), "--backend", "iterative", "--users", "1", "--repeat", "1",
                       "--out", str(out), "--no-report")
    assert done.returncode == 1
    results = json.loads((only_run_dir(out) / "results.json").read_text())
    assert results["backends"]["iterative"]["status"] == "failed"
    assert "--max-body" in results["backends"]["iterative"]["stderr_tail"]


def test_backend_killed_mid_step_is_recorded_and_nothing_is_left(tiny: Path, tmp_path: Path) -> None:
    out = tmp_path / "results"
    run = start("run", "--scenario", str(tiny), "--backend", "forking,selectors", "--out", str(out), "--no-report",
                *SHORT)
    try:
        wait_for_steps(out, 1)
        orchestrator = psutil.Process(run.pid)
        servers = [p for p in orchestrator.children(recursive=True) if "--backend" in _cmdline(p)]
        assert servers
        for proc in servers:
            proc.kill()
        stdout, stderr = run.communicate(timeout=100)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
    assert run.returncode == 1, stderr
    assert "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1, stderr
    assert stderr.startswith("concurbench: 1 of 2 backend(s) failed: forking: the backend exited (killed by SIGKILL)")
    results = json.loads((only_run_dir(out) / "results.json").read_text())
    failed = results["backends"]["forking"]
    assert failed["status"] == "failed"
    done = sum(s["backend"] == "forking" for s in results["steps"])
    assert done >= 1  # finished steps were kept
    # Which step it died in: the backend, the users level, the round (or the warm-up).
    users, rep = (1, 4)[done % 2], done // 2
    assert failed["step"]["users"] == users and failed["step"]["repetition"] == rep
    assert f"during forking users={users} " in failed["error"] and f"after {done} of 4 steps" in failed["error"]
    assert f"rep {rep + 1}/2" + (" warm-up" if failed["step"]["phase"] == "warm-up" else ",") in failed["error"]
    assert [(e["kind"], e["backend"]) for e in results["events"]] == [("backend-failed", "forking")]
    assert results["backends"]["selectors"]["status"] == "ok"  # the run went on
    assert [o["round"] for o in results["metadata"]["order"] if o["backend"] == "forking"] == list(range(rep + 1))
    assert not [p for p in psutil.process_iter(["cmdline"]) if str(out) in " ".join(p.info["cmdline"] or [])]


def test_ctrl_c_keeps_finished_steps_and_leaves_no_process(tiny: Path, tmp_path: Path) -> None:
    out = tmp_path / "results"
    run = start("run", "--scenario", str(tiny), "--backend", "asyncio,threaded", "--host", "0.0.0.0", "--out", str(out),
                "--no-report")
    try:
        wait_for_steps(out, 1)
        family = psutil.Process(run.pid).children(recursive=True)
        assert family
        os.kill(run.pid, signal.SIGINT)
        stdout, stderr = run.communicate(timeout=30)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
    assert run.returncode == 130
    assert "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1, stderr
    assert stderr.startswith("concurbench: interrupted (SIGINT) during asyncio users=")
    results = json.loads((only_run_dir(out) / "results.json").read_text())
    assert results["status"] == "interrupted" and len(results["steps"]) >= 1
    assert results["backends"]["asyncio"]["status"] == "interrupted" and results["backends"]["asyncio"]["step"]
    assert [e["kind"] for e in results["events"]] == ["interrupted"]
    time.sleep(0.5)
    assert not [p for p in family if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def test_list_shows_backends_and_scenarios() -> None:
    done = concurbench("list")
    assert done.returncode == 0
    for name in ("iterative", "asyncio", "quick", "idle-preconnect", "c10k"):
        assert name in done.stdout


def test_orchestrator_never_imports_locust_or_gevent() -> None:
    code = ("import sys, harness.cli, harness.run.runner, harness.run.command, harness.run.launch, harness.drivers.spec; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('locust', 'gevent')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=ENV, timeout=30)
    assert done.stdout.strip() == "[]", done.stderr


@pytest.mark.skipif(__import__("shutil").which("wrk") is None, reason="wrk is not installed")
def test_driver_both_runs_locust_then_wrk_on_the_same_server(tiny: Path, tmp_path: Path) -> None:
    out = tmp_path / "results"
    done = concurbench("run", "--scenario", str(tiny), "--backend", "selectors", "--users", "2", "--repeat", "1",
                       "--driver", "both", "--out", str(out), "--no-report")
    assert done.returncode == 0, done.stderr
    results = json.loads((only_run_dir(out) / "results.json").read_text())
    assert {s["backend"] for s in results["steps"]} == {"selectors", "selectors (wrk)"}
    assert all(s["requests"] > 0 for s in results["steps"])
    [wrk] = [s for s in results["steps"] if s["backend"] == "selectors (wrk)"]
    assert wrk["good_rps"] == wrk["rps"] and "littles-law" not in wrk["flags"]
    assert results["metadata"]["drivers"] == ["locust", "wrk"]
    assert "wrk / locust, per step" in done.stdout


def test_wrk_refuses_what_it_cannot_express_before_anything_starts(tmp_path: Path) -> None:
    done = concurbench("run", "--scenario", "idle-preconnect", "--driver", "wrk", "--out", str(tmp_path))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert ("idle connections" in done.stderr) or ("needs wrk" in done.stderr)
    assert not list(tmp_path.iterdir())
