"""The results of a run on disk: results/<UTC stamp>-<scenario>/results.json.

results.json is the source of truth that every chart and report is drawn from. It is
written atomically (temp file in the same directory, fsync, rename), so a crash or Ctrl+C
mid-write leaves the previous complete file, never half of a new one. Every file the
harness writes for others to read (summary.csv, report.html, a driver's spec and result)
goes through the same `write_atomically`.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping


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
#   3  measurement truth (issue 13; docs/ARCHITECTURE.md "What a window counts"): a request
#      belongs to the window it completes in; "rps" counts answers of any status and
#      "good_rps" the 2xx/3xx ones; the histogram and percentiles hold good answers plus
#      "censored" lower bounds; "failures", "error_share", "answers_by_class", "dropped",
#      "littles", "cycles"; "server" gains "pss_bytes", "cpu_seconds",
#      "cpu_us_per_request", "steal_percent"; "driver" gains "self_cpu_percent",
#      "cpu_percent_by_cpu", "steal_percent"; flags "littles-law" and "noisy"; a step's
#      "repetition" is the round of an interleaved run (metadata "order"). Version 2 steps
#      lack these keys: readers show them as unknown, and their figures are not comparable
#      one for one (their windows lost the requests in flight at each boundary). Metadata
#      "latency_floor" (harness/run/floor.py; null with a "floor-failed" event if it failed).
#      Later, still version 3 (issue 14; optional keys): a step's "server_cpus" (the CPUs the
#      server was pinned to) and "cores" (their count when the run sweeps it, [server] cpus;
#      null otherwise: each count is then a series of its own, see steps.level_key); a backend
#      entry's "python" (version, implementation, build, free_threaded, gil_enabled, own,
#      label) for ours; a backend under another interpreter is named "threaded@3.13".
#      Later, still version 3 (issue 15; optional keys): a step's "route" (the one request it
#      sent, when the scenario's mix is "each": a series of its own, "asyncio /sleep?ms=1");
#      a rate search's "capacity" (by series: the objective, range, every probe and where the
#      search stopped, and the rounds' verdict at the rate found, see harness/results/capacity.py);
#      metadata "order" entries with round "search"; and "findings" (harness/results/findings.py).
#      The run's "findings" (issue 15; optional, still version 3): [{"kind", "backend", "level":
#      {"users", "rate", "idle_connections", "cores"} or null, "text", "figures", "caveat"}],
#      the sentences the run told (harness/results/findings.py); `report` redraws them.
#      Later, still version 3 (issue 22; optional keys): a step's "runtime" (what our server's
#      GET /runtime said after it: "python", "free_threaded", "gil_enabled", or "error"; null
#      for a cmd: server), the flags "shared-cpu" (with the driver's
#      "share_of_server_percent") and "gil-on", and findings of kinds "scaling", "speedup" and
#      "free-threading-cost"; scenario "share_driver_cpus".
#      Later, still version 3 (optional key): a step's "server" gains "others_percent" (CPU time
#      other processes used on the server's CPUs, % of all of them), and the flag "contended".
SCHEMA_VERSION = 3

RESULTS_FILE = "results.json"
# What the "events" of a run may record (see the schema history above).
EVENT_KINDS = ("backend-failed", "driver-failed", "interrupted", "write-failed", "run-failed", "floor-failed")


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
        write_atomically(path, text)
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


def write_atomically(path: Path, text: str) -> None:
    """Write `text` to `path` so that a reader, or a crash, never sees half of it: a temp file
    beside it, fsync, rename, fsync the directory. A failure leaves the previous file."""
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
