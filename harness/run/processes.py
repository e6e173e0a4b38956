"""Every process the orchestrator starts (backends, drivers, their workers): spawned in its
own session, pinned, and (Linux) killed by the kernel if the orchestrator dies, even by
SIGKILL; stopped as a group; and, whatever a fault left behind, reaped by `reap_all` at the
end of a run.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
from collections.abc import Callable
import sys
from pathlib import Path
from typing import Any

import psutil

PR_SET_PDEATHSIG = 1  # linux/prctl.h
# The checkout (or installed tree) holding the servers and harness packages: every Python
# child finds them on its PYTHONPATH, whatever directory the run was started from.
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def _load_prctl() -> Callable[..., int] | None:
    """libc's prctl, looked up once here: the child after fork() only calls it."""
    if not sys.platform.startswith("linux"):
        return None
    for name in (None, "libc.so.6"):  # None: the symbols already loaded, libc's among them
        try:
            return ctypes.CDLL(name, use_errno=True).prctl
        except (OSError, AttributeError):
            continue
    return None


_PRCTL = _load_prctl()
# Process groups started by `spawn` and not yet stopped: `reap_all` kills what is left of them.
_STARTED: dict[int, subprocess.Popen] = {}
SPAWNED_BY = "CONCURBENCH_SPAWNED_BY"  # in a spawned child's environment: the orchestrator's pid


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of every Python child: ours, `extra`, and PROJECT_ROOT first on
    PYTHONPATH (before what was there, so a test's sitecustomize still loads)."""
    path = os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, **(extra or {}), "PYTHONPATH": path}


def child_setup(cpus: tuple[int, ...] = (), netns: str | None = None) -> Callable[[], None]:
    """The preexec_fn of every child: pin it to `cpus`, move it into the network namespace
    `netns` (an emulated link's side, harness.network), and have the kernel SIGKILL it when
    the orchestrator dies, however it dies (Linux; elsewhere only the pinning).

    PR_SET_PDEATHSIG fires when the *thread* that forked the child exits, not the process:
    every Popen here runs on the orchestrator's main thread, which lives as long as it does.
    """
    parent = os.getpid()
    enter: Callable[[], None] | None = None
    if netns is not None:
        from harness.network.link import setns_preexec

        enter = setns_preexec(netns)

    def setup() -> None:
        if _PRCTL is not None:
            _PRCTL(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
            if os.getppid() != parent:  # the orchestrator died before prctl took effect
                os.kill(os.getpid(), signal.SIGKILL)
        if cpus and hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, cpus)
        if enter is not None:
            enter()

    return setup


def spawn(argv: list[str], *, cpus: tuple[int, ...] = (), netns: str | None = None, **popen: Any) -> subprocess.Popen:
    """Popen in a new session (a Ctrl+C at the terminal is the orchestrator's alone to
    handle), pinned, in network namespace `netns` if given, dying with the orchestrator, and
    registered for `reap_all`."""
    env = {**(popen.pop("env", None) or os.environ), SPAWNED_BY: str(os.getpid())}
    process = subprocess.Popen(argv, start_new_session=True, preexec_fn=child_setup(cpus, netns), env=env, **popen)
    _STARTED[process.pid] = process
    return process


def forget(process: subprocess.Popen) -> None:
    """`process` was stopped and reaped, its group killed: no more of `reap_all`'s business."""
    _STARTED.pop(process.pid, None)


def kill_all() -> None:
    """SIGKILL every process group still registered, without waiting (a second Ctrl+C)."""
    for pid in list(_STARTED):
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def reap_all() -> list[int]:
    """Kill and reap what a fault left behind: every registered process group, and any child
    `spawn` started (its environment says so) that never got registered, a Popen cut short
    by a Ctrl+C before it returned. Returns the pids of those still running (normally none)."""
    left = []
    for pid, process in list(_STARTED.items()):
        if process.poll() is None:
            left.append(pid)
        _kill_group(process)
        forget(process)
    try:
        children = psutil.Process().children()
    except psutil.Error:
        children = []
    for child in children:
        try:
            if child.environ().get(SPAWNED_BY) != str(os.getpid()) or os.getsid(child.pid) != child.pid:
                continue  # not one `spawn` started
            os.killpg(child.pid, signal.SIGKILL)
            child.wait(5)
            left.append(child.pid)
        except (OSError, psutil.Error):
            continue
    return left


def _kill_group(process: subprocess.Popen) -> None:
    """SIGKILL `process`'s group, and reap `process`."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        process.wait(5)
    except subprocess.TimeoutExpired:
        pass




def stop_group(process: subprocess.Popen, grace: float) -> int | None:
    """SIGTERM `process`'s group, wait up to `grace` for it, then SIGKILL the group (its
    stragglers too: children, grandchildren) and reap it; returns its exit status."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        status = process.wait(grace)
    except subprocess.TimeoutExpired:
        status = None
    _kill_group(process)
    forget(process)
    return status if status is not None else process.poll()
