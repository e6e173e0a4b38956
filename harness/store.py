"""The results of a run on disk: results/<UTC stamp>-<scenario>/{results.json,summary.csv}.

results.json is the source of truth that every chart and report is drawn from. It is
written atomically (temp file in the same directory, fsync, rename), so a crash or Ctrl+C
mid-write leaves the previous complete file, never half of a new one.
"""

from __future__ import annotations

import csv
import io
import json
import os
import platform
import re
import socket
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence


# Schema history of results.json; bump SCHEMA_VERSION on any change a reader must know of.
#   1  first version: {"version", "metadata", "steps": [step, ...], "backends": {name: {...}}}
#   2  open loop: a step may carry "rate" (offered req/s; null for closed loop) and
#      "uncorrected" (latency from the actual send); version 1 files read as closed loop.
#      Later, still version 2 (optional keys and new values, which no reader must know of):
#      the run's "status" ("running", "complete", "interrupted") may be "failed" (results.json
#      could not be written, or the /cpu calibration failed); a backend entry's "status" is
#      "running" while it runs and may end "interrupted" (a Ctrl+C); a failed
#      or interrupted one carries "step": {"users", "rate", "idle_connections", "repetition",
#      "phase"} (where it was; null if it had not reached load; "phase" "warm-up" or "measure");
#      "events": [{"t": ISO time, "kind": one of EVENT_KINDS, "backend": name or null,
#      "step": as above or null, "detail": one line}] — what happened to the run, in order.
#      A file without "events" is a run with nothing to tell.
SCHEMA_VERSION = 2

RESULTS_FILE = "results.json"
SUMMARY_FILE = "summary.csv"

# The keys of one step record (one repetition of one backend at one load level).
STEP_KEYS = (
    "backend", "users", "repetition", "requests", "errors", "rps",
    "p50_us", "p90_us", "p99_us", "p999_us", "max_us", "histogram", "timeseries",
    "server",  # {"cpu_percent", "rss_bytes"}
    "driver",  # {"cpu_percent"}
    "flags",  # e.g. ["driver-bound", "high-spread"]
    "status",  # "ok" or "failed"
    "error",  # why it failed, else None
)
ERROR_KINDS = ("connect", "timeout", "reset", "bad_status")
# What the "events" of a run may record (see the schema history above).
EVENT_KINDS = ("backend-failed", "driver-failed", "interrupted", "write-failed", "run-failed")
DRIVER_BOUND = "driver-bound"
# offered_rate is empty for closed-loop rows; for open-loop rows `users` is the number of
# connections the rate was spread across. idle_connections: held open beside the load (c10k
# sweeps it, so without it two rows of one backend and load could not be told apart).
SUMMARY_COLUMNS = ("backend", "users", "rps", "p50_us", "p90_us", "p99_us", "errors",
                   "driver_bound", "offered_rate", "idle_connections")

# Versions worth recording: they change what is measured. Read without importing them
# (importing locust would monkey-patch this whole process with gevent).
TRACKED_PACKAGES = ("locust", "hdrhistogram", "matplotlib", "psutil")
PROJECT_ROOT = Path(__file__).resolve().parent.parent
_GIT_TIMEOUT_S = 5  # a hung git (a network filesystem, a lock) must not stall a run


class ResultsError(Exception):
    """A results file that cannot be read: missing, not JSON, or of an unknown version."""


class ResultsWriteError(ResultsError):
    """results.json could not be written (a full disk, say); the previous one is intact."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason  # the OS's words, e.g. "No space left on device"


def new_run_dir(root: Path, scenario_name: str, *, now: datetime | None = None) -> Path:
    """Create and return root/<YYYYmmdd-HHMMSS>-<scenario>, suffixed -2, -3... if taken."""
    stamp = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    safe_name = re.sub(r"[^A-Za-z0-9._-]+", "_", scenario_name).strip("._") or "scenario"
    base = f"{stamp:%Y%m%d-%H%M%S}-{safe_name}"
    root.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, 1000):
        run_dir = root / (base if attempt == 1 else f"{base}-{attempt}")
        try:
            run_dir.mkdir()  # atomic: of two runs racing for a name, one gets it
            return run_dir
        except FileExistsError:
            continue
    raise ResultsError(f"{root}: too many runs named {base}")


def write_results(run_dir: Path, results: Mapping[str, Any]) -> Path:
    """Atomically write run_dir/results.json (sorted keys, indented); return its path."""
    document = {"version": SCHEMA_VERSION, **results}
    if document["version"] != SCHEMA_VERSION:
        raise ValueError(f"results carry version {document['version']}, "
                         f"this concurbench writes {SCHEMA_VERSION}")
    path = Path(run_dir) / RESULTS_FILE
    try:  # serialise first: a value JSON cannot hold must not cost the previous file
        text = json.dumps(document, sort_keys=True, indent=2, allow_nan=False) + "\n"
    except (TypeError, ValueError) as exc:
        raise ResultsError(f"{path}: results cannot be written as JSON: {exc}") from exc
    try:
        _write_atomically(path, text)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ResultsWriteError(f"{path}: cannot write: {reason}", reason=reason) from exc
    return path


def read_results(path: Path) -> dict[str, Any]:
    """The results document from results.json (or from a run directory holding one)."""
    path = Path(path)
    if path.is_dir():
        path = path / RESULTS_FILE
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ResultsError(f"{path}: no such results file") from None
    except OSError as exc:
        raise ResultsError(f"{path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ResultsError(f"{path}: not a results file (not UTF-8 text)") from None
    except json.JSONDecodeError as exc:
        raise ResultsError(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}:"
                           f" {exc.msg})") from None
    version = document.get("version") if isinstance(document, dict) else None
    if type(version) is not int:
        raise ResultsError(f"{path}: not a concurbench results file (no schema version)")
    if version > SCHEMA_VERSION:
        raise ResultsError(f"{path}: written by a newer concurbench (schema version {version},"
                           f" this one reads up to {SCHEMA_VERSION}); upgrade to read it")
    if version < 1:
        raise ResultsError(f"{path}: unknown results schema version {version}")
    return document  # older versions lack only optional keys (see the history above)


def total_errors(step: Mapping[str, Any]) -> int:
    """All errors of a step, summed over the kinds."""
    return sum(step.get("errors", {}).values())


def write_summary_csv(run_dir: Path, steps: Iterable[Mapping[str, Any]]) -> Path:
    """run_dir/summary.csv: per backend and load level, medians over the good repetitions."""
    from harness.summary import summary_rows  # the one grouping, shared with the printed table

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(SUMMARY_COLUMNS)
    for row in summary_rows(steps):
        medians = ["" if row[key] is None else _number(row[key]) for key in ("rps", "p50_us", "p90_us", "p99_us")]
        writer.writerow([row["backend"], row["users"], *medians, _number(row["errors"]),
                         str(row["driver_bound"]).lower(), "" if row["rate"] is None else _number(row["rate"]),
                         row["idle"]])
    path = Path(run_dir) / SUMMARY_FILE
    _write_atomically(path, buffer.getvalue())
    return path


def _number(value: float) -> str:
    """An integral value without ".0", anything else to one decimal."""
    return str(int(value)) if float(value).is_integer() else f"{value:.1f}"


def _write_atomically(path: Path, text: str) -> None:
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temp, 0o644)  # mkstemp makes 0600; results are for everyone to read
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable; some filesystems cannot, which is fine."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# --- metadata, collected by small functions as pyperf does ---

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


def collect_python() -> dict[str, str]:
    return {"version": platform.python_version(),
            "implementation": platform.python_implementation(),
            "executable": sys.executable}


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
    """Everything DESIGN.md's measurement rule 6 asks a run to record."""
    return {
        "date": collect_date(),
        "hostname": collect_hostname(),
        "platform": platform.platform(),
        "cpu_model": collect_cpu_model(),
        "cpu_count": collect_cpu_count(),
        "python": collect_python(),
        "packages": collect_packages(),
        "git": collect_git_commit(),
        "scenario": {"path": str(scenario_path), "sha256": scenario_sha256},
        "pinning": dict(pinning),
    }
