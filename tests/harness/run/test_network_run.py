"""`concurbench run` over an emulated link ([network], --rtt), end to end as root: real
namespaces, TUN devices, relay and backend. Each shaped step records the link as set and as
measured, and nothing the run made outlives it: not after a clean end, a Ctrl+C, nor the
orchestrator SIGKILLed (the next run removes that one's leftovers, and says so). Without
what a link needs, a shaped run is refused in one line before anything starts."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from harness.network.link import PREFIX, RELAY_MODULE, missing
from support import ROOT
from test_runner import concurbench, only_run_dir, start

pytestmark = [pytest.mark.timeout(90),
              pytest.mark.skipif(missing() is not None, reason=f"no emulated link here: {missing()}")]

SHAPED = """
[load]
users = [4]
duration = "0.5s"
warmup = "0.2s"
repeat = 1
[network]
rtt_ms = 30
[[request]]
path = "/"
"""


def namespaces(run_id: str = "") -> list[str]:
    return sorted(n for n in os.listdir("/run/netns") if n.startswith(f"{PREFIX}{run_id}")) \
        if os.path.isdir("/run/netns") else []


def relays() -> list[int]:
    return [p.pid for p in psutil.process_iter(["cmdline"]) if RELAY_MODULE in (p.info["cmdline"] or [])]


@pytest.fixture
def shaped(tmp_path: Path) -> Path:
    path = tmp_path / "shaped.toml"
    path.write_text(SHAPED)
    return path


def test_each_round_trip_is_measured_before_its_steps_and_nothing_is_left(shaped: Path, tmp_path: Path) -> None:
    before = namespaces()
    done = concurbench("run", "--scenario", str(shaped), "--backend", "asyncio", "--out", str(tmp_path / "out"),
                       "--no-report")
    assert done.returncode == 0, done.stderr
    run_dir = only_run_dir(tmp_path / "out")
    results = json.loads((run_dir / "results.json").read_text())
    network = results["metadata"]["network"]
    assert network["rtt_ms"] == [30] and network["server_ns"].startswith(f"{PREFIX}{run_dir.name}-")
    (step,) = results["steps"]
    link = step["link"]
    assert step["rtt_ms"] == link["rtt_ms"] == 30
    assert abs(link["measured_rtt_ms"] - 30) <= 3, link  # within 10% of its setting, or flagged
    assert "link-off" not in step["flags"] and link["relay_cpu_percent"] is not None
    # 4 users a round trip away make at most 4 / 30 ms = 133 req/s (Little's law), and nearly that;
    # over loopback asyncio makes thousands
    assert 100 < step["good_rps"] <= 140, step["good_rps"]
    assert "asyncio (rtt 30 ms)" in done.stdout  # a series of its own in the table
    assert namespaces() == before and relays() == []


def test_a_ctrl_c_while_the_link_carries_a_step_removes_it(shaped: Path, tmp_path: Path) -> None:
    run = start("run", "--scenario", str(shaped), "--backend", "asyncio", "--duration", "20s", "--out",
                str(tmp_path / "out"), "--no-report")
    try:
        wait_until(lambda: len(relay_children(run.pid)) == 1)  # the link is up
        wait_until(lambda: any("harness.drivers" in " ".join(c) for c in descendants(run.pid)), timeout=20)
        os.killpg(run.pid, signal.SIGINT)
        _, err = run.communicate(timeout=30)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
    assert run.returncode == 130, err
    assert not [n for n in namespaces() if _owned_by(n, run.pid)] and relays() == []


def test_a_killed_run_leaves_a_link_the_next_run_removes_and_names(shaped: Path, tmp_path: Path) -> None:
    run = start("run", "--scenario", str(shaped), "--backend", "asyncio", "--duration", "20s", "--out",
                str(tmp_path / "killed"), "--no-report")
    try:
        wait_until(lambda: len([n for n in namespaces() if _owned_by(n, run.pid)]) == 2)
        run.kill()  # SIGKILL the orchestrator alone: its children die with it (PR_SET_PDEATHSIG)
        run.communicate(timeout=30)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
    left = [n for n in namespaces() if _owned_by(n, run.pid)]
    assert len(left) == 2  # the namespaces stay: nothing in the kernel ties them to the orchestrator
    wait_until(lambda: relays() == [])  # the relay does not (PR_SET_PDEATHSIG)
    done = concurbench("run", "--scenario", str(shaped), "--backend", "asyncio", "--rtt", "0", "--duration", "0.2s",
                       "--warmup", "0", "--out", str(tmp_path / "next"), "--no-report")
    assert done.returncode == 0, done.stderr
    for name in left:
        assert f"concurbench: removed what a run that died left behind: namespace {name}" in done.stderr
    assert not [n for n in namespaces() if _owned_by(n, run.pid)]


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="no setpriv to drop capabilities")
def test_without_what_a_link_needs_a_shaped_run_is_refused_in_one_line_before_anything_starts(
        tmp_path: Path) -> None:
    """A root without CAP_NET_ADMIN (a container's), and a machine without `ip`: the built-in
    wan scenario and --rtt on a loopback one are refused, naming what asked for the link and
    what is missing, and nothing is made."""
    out, before = tmp_path / "out", namespaces()
    drop = ["setpriv", "--bounding-set=-net_admin,-sys_admin", "--inh-caps=-net_admin,-sys_admin"]
    cases = [(drop, ["--scenario", "wan"], f"{ROOT}/harness/scenario/builtin/wan.toml: [network]", "CAP_NET_ADMIN", {}),
             ([], ["--scenario", "quick", "--rtt", "0,20"], "--rtt", "iproute2", {"PATH": str(tmp_path)})]
    for prefix, args, asked, lacking, env in cases:
        done = subprocess.run([*prefix, sys.executable, "-m", "harness.cli", "run", *args, "--backend", "asyncio",
                               "--out", str(out)], capture_output=True, text=True, cwd=ROOT, timeout=60,
                              env={**os.environ, "PYTHONPATH": str(ROOT), **env})
        assert done.returncode == 2, done.stderr
        assert done.stderr.startswith(f"concurbench: error: {asked} asks for an emulated link, but "), done.stderr
        assert lacking in done.stderr and len(done.stderr.splitlines()) == 1
    assert not out.exists() and namespaces() == before


def wait_until(condition, timeout: float = 30) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _owned_by(namespace: str, pid: int) -> bool:
    return f"-{pid}-" in namespace


def descendants(pid: int) -> list[list[str]]:
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []
    out = []
    for child in children:
        try:
            out.append(child.cmdline())
        except psutil.Error:
            continue
    return out


def relay_children(pid: int) -> list[list[str]]:
    return [argv for argv in descendants(pid) if RELAY_MODULE in argv]
