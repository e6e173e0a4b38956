"""What the orchestrator measures around a window: /proc/stat steal, counters read at the
window's boundaries, and the whole driver's CPU per driver CPU (real processes)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from harness.run.sampling import (TICKS_PER_S, Sample, WindowSampler, read_jiffies, steal_at_start, steal_percent,
                                   tree_cpu_seconds)

# /proc/stat as Linux writes it: the sum of all CPUs first, then one line per CPU: user nice
# system idle iowait irq softirq steal guest guest_nice (guest is inside user already).
STAT_BEFORE = """cpu  300 0 300 300 0 0 0 30 50 0
cpu0 100 0 100 100 0 0 0 10 50 0
cpu1 200 0 200 200 0 0 0 20 0 0
intr 1 2 3
ctxt 12345
"""
STAT_AFTER = """cpu  400 0 400 400 0 0 0 70 80 0
cpu0 120 0 130 140 0 0 0 10 80 0
cpu1 280 0 270 260 0 0 0 60 0 0
intr 1 2 3
"""


def stat(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_proc_stat_per_cpu_steal_and_all_jiffies(tmp_path: Path) -> None:
    jiffies = read_jiffies(stat(tmp_path, "stat", STAT_BEFORE))
    assert jiffies == {0: (10, 310, 200), 1: (20, 620, 400)}  # the 8th value; guest not counted twice; busy: user + nice + system
    old_kernel = read_jiffies(stat(tmp_path, "old", "cpu0 1 2 3 4\n"))
    assert old_kernel == {0: (0, 10, 6)}  # no steal column: none measured
    assert read_jiffies(tmp_path / "absent") is None
    assert read_jiffies(stat(tmp_path, "empty", "intr 1\n")) is None


def test_steal_share_over_a_window(tmp_path: Path) -> None:
    before = read_jiffies(stat(tmp_path, "before", STAT_BEFORE))
    after = read_jiffies(stat(tmp_path, "after", STAT_AFTER))
    assert steal_percent(before, after, [0]) == 0.0  # cpu0: 0 of 90 jiffies
    assert steal_percent(before, after, [1]) == 16.0  # cpu1: 40 of 250
    assert steal_percent(before, after, [0, 1]) == round(100 * 40 / 340, 2)  # of all their jiffies together
    assert steal_percent(before, after, [5]) is None  # no such CPU
    assert steal_percent(None, after, [1]) is None  # /proc/stat unreadable
    assert steal_percent(before, before, [1]) is None  # no time passed


def test_steal_at_start_of_real_cpus(tmp_path: Path) -> None:
    if read_jiffies() is None:
        pytest.skip("no /proc/stat")
    measured = steal_at_start((0,), (os.cpu_count() - 1,), seconds=0.2)
    assert set(measured) == {"server", "driver", "seconds"}
    assert 0 <= measured["server"] <= 100 and 0 <= measured["driver"] <= 100
    unreadable = steal_at_start((0,), (1,), seconds=0, path=tmp_path / "absent")
    assert unreadable["server"] is None and unreadable["driver"] is None


def sampler_with(samples: list[Sample], *, pinned: list[tuple[int, ...]] = ()) -> WindowSampler:
    sampler = WindowSampler(server_cpu=lambda: 0.0, server_memory=lambda: (None, None), driver=[],
                            server_cpus=(0,), driver_cpus=(1, 2))
    sampler._pinned = list(pinned)
    sampler.samples = samples
    return sampler


def test_counters_are_read_at_the_window_boundaries() -> None:
    """Samples at 0, 1, 2, 3 s; the window is 1.5 .. 2.5 s: each boundary lies between two
    samples, and the counter there is interpolated, not rounded to a sample."""
    tick = TICKS_PER_S / 100  # the jiffies below are for 100 a second
    busy0 = [0, 100, 230, 360]  # CPU 0 (the server's): busier than the server's own 0.5 .. 1.5 s a second
    jiffies = [{0: (0, 0, 0), 1: (0, 0, 0), 2: (0, 0, 0)}, {0: (0, 100, 100), 1: (10, 100, 0), 2: (0, 100, 0)},
               {0: (0, 200, 230), 1: (20, 200, 0), 2: (0, 200, 0)}, {0: (0, 300, 360), 1: (30, 300, 0), 2: (0, 300, 0)}]
    jiffies = [{cpu: (steal, total, int(busy0[i] * tick) if cpu == 0 else 0) for cpu, (steal, total, _) in j.items()}
               for i, j in enumerate(jiffies)]
    samples = [Sample(t, server_cpu_s=0.25 * t * t, rss_bytes=100 + int(t), pss_bytes=None,
                      driver_cpu_s=(0.9 * t, 0.2 * t), jiffies=jiffies[int(t)]) for t in (0.0, 1.0, 2.0, 3.0)]
    sampler = sampler_with(samples, pinned=[(1,), (1, 2)])
    server, driver = sampler.window(end=2.5, seconds=1.0, requests=500)
    # server CPU: linear between samples: at 1.5 s 0.25 + 0.5 * 0.75, at 2.5 s 1.0 + 0.5 * 1.25
    cpu = (1.0 + 0.625) - (0.25 + 0.375)
    assert server["cpu_seconds"] == pytest.approx(cpu)
    assert server["cpu_percent"] == pytest.approx(100 * cpu, abs=0.1)
    assert server["cpu_us_per_request"] == pytest.approx(cpu * 1e6 / 500, abs=0.1)
    assert server["rss_bytes"] == 102 and server["pss_bytes"] is None  # the peak inside the window
    assert server["steal_percent"] == 0.0
    # CPU 0 was busy 295 - 165 = 130 jiffies (1.3 s) of the window; the server's 1.0 s of it leaves 0.3 s to others
    assert server["others_percent"] == pytest.approx(30.0, abs=0.1)
    # driver: process 0 (90% of CPU 1) on CPU 1; process 1 (20%) split over CPUs 1 and 2
    assert driver["cpu_percent_by_cpu"] == {"1": 100.0, "2": 10.0}
    assert driver["cpu_percent"] == 100.0
    assert driver["steal_percent"] == 5.0  # 10 of 200 jiffies on CPUs 1 and 2
    assert sampler.window(end=2.5, seconds=1.0, requests=0)[0]["cpu_us_per_request"] is None


BUSY = "import time\nend = time.monotonic() + 20\nwhile time.monotonic() < end: pass\n"


def cpu_of(pids: list[int]) -> list[float]:
    return [sum(psutil.Process(pid).cpu_times()[:2]) for pid in pids]


@pytest.mark.timeout(30)
def test_processes_sharing_a_driver_cpu_add_up() -> None:
    """Two busy processes pinned to one CPU: the CPU's figure is the sum of both (about 100%
    on an idle machine), where either process alone (the driver's own figure) says half."""
    if not hasattr(os, "sched_setaffinity"):
        pytest.skip("no CPU pinning here")
    cpu = sorted(os.sched_getaffinity(0))[-1]
    busy = [subprocess.Popen([sys.executable, "-c", BUSY], preexec_fn=lambda: os.sched_setaffinity(0, {cpu}))
            for _ in range(2)]
    pids = [p.pid for p in busy]
    try:
        sampler = WindowSampler(server_cpu=lambda: 0.0, server_memory=lambda: (None, None), driver=pids,
                                server_cpus=(0,), driver_cpus=(cpu,))
        time.sleep(0.3)  # both running
        start, first = sampler.sample().t, cpu_of(pids)
        time.sleep(1.0)
        end, last = sampler.sample().t, cpu_of(pids)
        _, driver = sampler.window(end=end, seconds=end - start, requests=1)
    finally:
        for process in busy:
            process.kill()
            process.wait()
    each = [100 * (b - a) / (end - start) for a, b in zip(first, last)]  # psutil's own view, process by process
    assert list(driver["cpu_percent_by_cpu"]) == [str(cpu)]
    assert driver["cpu_percent"] == driver["cpu_percent_by_cpu"][str(cpu)]
    assert driver["cpu_percent"] == pytest.approx(sum(each), abs=5)
    assert driver["cpu_percent"] > 1.5 * max(each)  # not the busiest process: the CPU


LIGHT_CHILDREN = r"""
import os, sys, time
go_r, go_w = os.pipe()
for _ in range(int(sys.argv[1])):
    if os.fork() == 0:
        os.read(go_r, 1)
        end = time.process_time() + float(sys.argv[2])  # this child's own CPU time
        while time.process_time() < end:
            pass
        os.write(1, b"x")
        time.sleep(60)
        os._exit(0)
os.write(1, b"ready\n")
sys.stdin.readline()
os.write(go_w, b"g" * int(sys.argv[1]))
time.sleep(60)
"""


@pytest.mark.timeout(30)
def test_a_tree_of_light_children_is_counted_whole() -> None:
    """40 forked children, each using 4 ms of CPU: under a clock tick each, so /proc's
    tick counts read 0 for every one of them (forking's children at 50 requests a second
    each read 0 for a whole step), where the tree used 160 ms."""
    children, each_s = 40, 0.004
    tree = subprocess.Popen([sys.executable, "-c", LIGHT_CHILDREN, str(children), str(each_s)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True)
    assert tree.stdin is not None and tree.stdout is not None
    try:
        assert tree.stdout.readline() == b"ready\n"
        root = psutil.Process(tree.pid)
        before = tree_cpu_seconds(root)
        tree.stdin.write(b"go\n")
        tree.stdin.flush()
        done = b""
        while len(done) < children:
            done += tree.stdout.read(children - len(done))
        after = tree_cpu_seconds(root)
    finally:
        os.killpg(tree.pid, signal.SIGKILL)
        tree.wait()
    assert before is not None and after is not None
    assert children * each_s * 0.9 <= after - before <= children * each_s * 3


LIGHT_THREADS = r"""
import sys, threading, time
def burn():
    end = time.thread_time() + float(sys.argv[2])  # this thread's own CPU time
    while time.thread_time() < end:
        pass
sys.stdout.write("ready\n"); sys.stdout.flush()
sys.stdin.readline()
threads = [threading.Thread(target=burn) for _ in range(int(sys.argv[1]))]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
sys.stdout.write("done\n"); sys.stdout.flush()
time.sleep(60)
"""


@pytest.mark.timeout(30)
def test_a_process_whose_threads_have_exited_is_counted_to_the_millisecond() -> None:
    """3 threads that use 2 ms of CPU each, then exit: /proc's ticks would say 0 or 10 ms;
    the process's CPU clock says the 6 ms (and the little the main thread did)."""
    threads, each_s = 3, 0.002
    proc = subprocess.Popen([sys.executable, "-c", LIGHT_THREADS, str(threads), str(each_s)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        assert proc.stdout.readline() == b"ready\n"
        before = tree_cpu_seconds(psutil.Process(proc.pid))
        proc.stdin.write(b"go\n")
        proc.stdin.flush()
        assert proc.stdout.readline() == b"done\n"
        after = tree_cpu_seconds(psutil.Process(proc.pid))
    finally:
        proc.kill()
        proc.wait()
    assert before is not None and after is not None
    assert threads * each_s * 0.9 <= after - before <= threads * each_s + 0.0035
