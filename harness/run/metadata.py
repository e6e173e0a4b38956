"""What a run records about where it ran (measurement rule 6), collected by small
functions as pyperf does: date, host, CPU, kernel, Python, package versions, git commit.

No path of the machine goes in (measurement rule 13): the interpreter is its version and
implementation, and a scenario inside the project is recorded relative to it.
"""

from __future__ import annotations

import os
import platform
import socket
import subprocess
from datetime import datetime, timezone
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any, Mapping, Sequence

from harness.run.processes import PROJECT_ROOT

# Versions worth recording: they change what is measured. Read without importing them
# (importing locust would monkey-patch this whole process with gevent).
TRACKED_PACKAGES = ("locust", "gevent", "greenlet", "hdrhistogram", "matplotlib", "psutil")
_GIT_TIMEOUT_S = 5  # a hung git (a network filesystem, a lock) must not stall a run


def collect_date() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def collect_hostname() -> str:
    return socket.gethostname()


def collect_cpu_model(*, cpuinfo: Path = Path("/proc/cpuinfo")) -> str | None:
    """The CPU model name from /proc/cpuinfo (Linux), else what platform knows."""
    try:
        for line in cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model", "Processor") and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or None


def collect_cpu_count() -> int | None:
    return os.cpu_count()


def collect_kernel() -> str:
    return platform.release()


def collect_python() -> dict[str, str]:
    """The interpreter as its version and implementation: its path is the machine's."""
    return {"version": platform.python_version(), "implementation": platform.python_implementation()}


def recorded_path(path: Path | str, *, root: Path = PROJECT_ROOT) -> str:
    """A scenario file as the record names it: relative to the project when inside it (a
    built-in: harness/scenario/builtin/quick.toml), else as given."""
    try:
        return Path(path).resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)


def collect_packages(names: Sequence[str] = TRACKED_PACKAGES) -> dict[str, str | None]:
    """Installed versions by distribution name (None when absent), without importing."""
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def collect_git_commit(*, root: Path = PROJECT_ROOT) -> dict[str, Any] | None:
    """{"commit", "dirty"} of the project's checkout; None if it is not one (or no git)."""
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(root), *args], capture_output=True,
                                  text=True, timeout=_GIT_TIMEOUT_S, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    # An installed copy may sit inside some other repository: that commit is not ours.
    toplevel = git("rev-parse", "--show-toplevel")
    if toplevel is None or Path(toplevel).resolve() != root.resolve():
        return None
    commit = git("rev-parse", "HEAD")
    if commit is None:  # a fresh repository with no commit yet
        return None
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def collect_metadata(*, scenario_path: Path | str, scenario_sha256: str,
                     pinning: Mapping[str, Any]) -> dict[str, Any]:
    """Everything measurement rule 6 asks a run to record: machine, software, scenario, pinning."""
    return {
        "date": collect_date(),
        "hostname": collect_hostname(),
        "platform": platform.platform(),
        "kernel": collect_kernel(),
        "cpu_model": collect_cpu_model(),
        "cpu_count": collect_cpu_count(),
        "python": collect_python(),
        "packages": collect_packages(),
        "git": collect_git_commit(),
        "scenario": {"path": recorded_path(scenario_path), "sha256": scenario_sha256},
        "pinning": dict(pinning),
    }
