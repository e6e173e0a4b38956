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


from harness.results.schema import SCHEMA_VERSION  # its history: harness/results/schema.py

RESULTS_FILE = "results.json"
# What the "events" of a run may record (schema.py, version 2).
EVENT_KINDS = ("backend-failed", "driver-failed", "interrupted", "write-failed", "run-failed", "floor-failed",
               "link-failed", "link-unmeasured")


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
    base = f"{stamp:%Y%m%d-%H%M%S}-{file_name(scenario_name, fallback='scenario')}"
    root.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, 1000):
        run_dir = root / (base if attempt == 1 else f"{base}-{attempt}")
        try:
            run_dir.mkdir()  # atomic: of two runs racing for a name, one gets it
            return run_dir
        except FileExistsError:
            continue
    raise ResultsError(f"{root}: too many runs named {base}")


def file_name(text: str, *, fallback: str) -> str:
    """`text` as part of a file name: runs of anything but letters, digits, ".", "_" and "-"
    become one "_", no leading or trailing "." or "_" (so never ".." or a hidden file), at most
    60 characters; `fallback` when nothing is left."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._")[:60] or fallback


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
    """The results document from results.json (or from a run directory holding one), as it was
    written: the orchestrator's own. Every reader of a run's data uses model.load() instead."""
    path, document = read_document(Path(path))
    check_version(document, str(path))
    return document


def read_document(path: Path) -> tuple[Path, dict[str, Any]]:
    """The JSON object in results.json (or in a run directory holding one), and its path."""
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
    if not isinstance(document, dict):
        raise ResultsError(f"{path}: not a concurbench results file (no schema version)")
    return path, document


def check_version(document: Mapping[str, Any], source: str) -> int:
    """The schema version `document` was written with, if this concurbench can read it."""
    version = document.get("version")
    if type(version) is not int:
        raise ResultsError(f"{source}: not a concurbench results file (no schema version)")
    if version > SCHEMA_VERSION:
        raise ResultsError(f"{source}: written by a newer concurbench (schema version {version},"
                           f" this one reads up to {SCHEMA_VERSION}); upgrade to read it")
    if version < 1:
        raise ResultsError(f"{source}: unknown results schema version {version}")
    return version


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
