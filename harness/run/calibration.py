"""The /cpu route's work per millisecond, measured once per run on the server CPUs, in a
process of its own (`python -m harness.run.calibration` prints it)."""

from __future__ import annotations

import shutil
import subprocess
import sys

from harness.run.processes import child_env, child_setup


def calibrate_cpu_work(cpus: tuple[int, ...]) -> float:
    """Iterations of /cpu's loop per millisecond, measured once on the server CPUs.

    Every backend of a run gets this one figure (CONCURBENCH_CPU_ITERS_PER_MS), so /cpu?ms=5
    is the same work in every model; a server calibrating itself would measure whatever else
    the CPU was doing at that moment (seen: forking did a third less work than the others).
    """
    argv = [sys.executable, "-m", __name__]
    if cpus and shutil.which("taskset"):
        argv = ["taskset", "-c", ",".join(map(str, cpus)), *argv]
    env = child_env()
    # In the orchestrator's process group: a Ctrl+C at the terminal stops it too, and
    # subprocess.run kills it on any exception; the kernel does if the orchestrator dies.
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60, check=True,
                          preexec_fn=child_setup())
    return float(done.stdout.strip())


def main() -> None:
    """Print the best of three calibrations of servers.app (each its best of five runs)."""
    from servers.app import _calibrate  # the /cpu loop's own: what a server would measure

    print(max(_calibrate() for _ in range(3)))


if __name__ == "__main__":
    main()
