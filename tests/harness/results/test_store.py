"""Results on disk: atomic writes, versioned reads and run metadata (summary.csv: test_summary.py)."""

from __future__ import annotations

import errno
import io
import json
import os
import shutil
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

from harness.results import store
from harness.run import metadata
from harness.results.metrics import encode_histogram, new_histogram
from harness.results.store import SCHEMA_VERSION, ResultsError, new_run_dir, read_results, write_results
from harness.run.metadata import collect_cpu_model, collect_git_commit, collect_metadata, collect_packages

NOON = datetime(2025, 3, 4, 12, 30, 5, tzinfo=timezone.utc)


def step(backend: str = "threaded", users: int = 8, *, repetition: int = 0, rps: float = 1000.0,
         p50: int = 100, errors: dict | None = None, flags: tuple[str, ...] = (),
         status: str = "ok") -> dict:
    """A complete step record; the latencies above p50 follow from it."""
    return {
        "backend": backend, "users": users, "repetition": repetition, "requests": 10_000,
        "errors": errors or {"connect": 0, "timeout": 0, "reset": 0, "bad_status": 0},
        "rps": rps, "p50_us": p50, "p90_us": p50 * 2, "p99_us": p50 * 4, "p999_us": p50 * 8,
        "max_us": p50 * 10, "histogram": encode_histogram(new_histogram()), "timeseries": [],
        "server": {"cpu_percent": 99.0, "rss_bytes": 30_000_000}, "driver": {"cpu_percent": 50.0},
        "flags": list(flags), "status": status, "error": None if status == "ok" else "boom",
    }


def results(**extra) -> dict:
    return {"metadata": {"hostname": "box"}, "steps": [step()], "backends": {"threaded": {}},
            **extra}


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name != "results.json")


# --- run directories ---

def test_run_dir_is_named_by_utc_time_and_scenario(tmp_path: Path) -> None:
    run_dir = new_run_dir(tmp_path / "results", "quick", now=NOON)
    assert run_dir == tmp_path / "results" / "20250304-123005-quick"
    assert run_dir.is_dir()


def test_two_runs_in_the_same_second_get_two_dirs(tmp_path: Path) -> None:
    first, second, third = (new_run_dir(tmp_path, "quick", now=NOON) for _ in range(3))
    assert [first.name, second.name, third.name] == [
        "20250304-123005-quick", "20250304-123005-quick-2", "20250304-123005-quick-3"]


@pytest.mark.parametrize("name, suffix", [
    ("io-bound", "io-bound"), ("my scenario", "my_scenario"), ("../etc", "etc"), ("", "scenario"),
], ids=["plain", "space-replaced", "no-path-escape", "empty-name"])
def test_run_dir_name_is_safe(tmp_path: Path, name: str, suffix: str) -> None:
    run_dir = new_run_dir(tmp_path, name, now=NOON)
    assert run_dir.parent == tmp_path
    assert run_dir.name == f"20250304-123005-{suffix}"


# --- results.json ---

def test_results_round_trip(tmp_path: Path) -> None:
    written = results()
    path = write_results(tmp_path, written)
    assert path == tmp_path / "results.json"
    assert read_results(path) == {"version": SCHEMA_VERSION, **written}
    assert read_results(tmp_path) == read_results(path)  # a run directory works too


def test_results_file_is_sorted_indented_json(tmp_path: Path) -> None:
    text = write_results(tmp_path, results()).read_text()
    assert text == json.dumps(json.loads(text), sort_keys=True, indent=2) + "\n"
    assert text.startswith('{\n  "backends"')


def test_write_leaves_no_temp_files_and_readable_mode(tmp_path: Path) -> None:
    path = write_results(tmp_path, results())
    write_results(tmp_path, results(steps=[]))
    assert leftovers(tmp_path) == []
    assert path.stat().st_mode & 0o777 == 0o644


def test_failed_rename_keeps_the_previous_file(tmp_path: Path, monkeypatch) -> None:
    path = write_results(tmp_path, results())
    before = path.read_bytes()

    def crash(src, dst):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(store.os, "replace", crash)
    with pytest.raises(ResultsError, match="No space left on device"):
        write_results(tmp_path, results(steps=[]))
    assert path.read_bytes() == before
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("where", ["fsync", "write"])
def test_full_disk_keeps_the_previous_file_and_no_temp_file(tmp_path: Path, monkeypatch, where: str) -> None:
    """ENOSPC as the data goes out (at the flush of the buffered write, or at fsync): the
    error names the reason, the last good file is whole, the temp file is gone."""
    path = write_results(tmp_path, results())
    before = path.read_bytes()

    def no_space(*args):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    if where == "fsync":
        monkeypatch.setattr(store.os, "fsync", no_space)
    else:  # the buffered text file flushes through os.fdopen's FileIO: fail the open file's writes
        real_fdopen = store.os.fdopen

        class Full(io.TextIOWrapper):
            def flush(self):
                no_space()

        def fdopen(fd, mode="r", **kwargs):
            return Full(real_fdopen(fd, "wb"), encoding=kwargs.get("encoding"))
        monkeypatch.setattr(store.os, "fdopen", fdopen)
    with pytest.raises(store.ResultsWriteError, match="No space left on device") as caught:
        write_results(tmp_path, results(steps=[step(), step(repetition=1)]))
    assert caught.value.reason == "No space left on device"
    assert isinstance(caught.value, ResultsError)  # what callers already catch
    assert path.read_bytes() == before
    assert leftovers(tmp_path) == []


def test_interrupt_mid_write_keeps_the_previous_file(tmp_path: Path, monkeypatch) -> None:
    path = write_results(tmp_path, results())
    before = path.read_bytes()

    def interrupted(fd):
        raise KeyboardInterrupt
    monkeypatch.setattr(store.os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_results(tmp_path, results(steps=[]))
    assert path.read_bytes() == before
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("bad_value", [object(), float("nan")], ids=["not-serialisable", "nan"])
def test_unserialisable_results_keep_the_previous_file(tmp_path: Path, bad_value) -> None:
    path = write_results(tmp_path, results())
    before = path.read_bytes()
    with pytest.raises(ResultsError, match="cannot be written as JSON"):
        write_results(tmp_path, results(metadata={"oops": bad_value}))
    assert path.read_bytes() == before
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("document", [
    {"version": 1, "metadata": {}, "steps": [], "backends": {}},
    {"version": 2, "metadata": {}, "steps": [], "backends": {}, "status": "complete"},
    {"version": 2, "metadata": {}, "steps": [], "status": "failed",
     "backends": {"forking": {"status": "interrupted", "error": "interrupted (SIGINT) during forking users=8 rep 1/3",
                              "step": {"users": 8, "rate": None, "idle_connections": 0, "repetition": 0,
                                       "phase": "measure"}}},
     "events": [{"t": "2025-03-04T12:30:05.000+00:00", "kind": "interrupted", "backend": "forking", "step": None,
                 "detail": "SIGINT during forking users=8 rep 1/3"}]},
], ids=["version-1", "version-2-without-events", "version-2-with-events"])
def test_older_and_event_carrying_files_are_read(tmp_path: Path, document: dict) -> None:
    path = tmp_path / "results.json"
    path.write_text(json.dumps(document))
    assert read_results(path) == document
    assert set(store.EVENT_KINDS) >= {e["kind"] for e in document.get("events", [])}


def test_write_refuses_another_schema_version(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        write_results(tmp_path, results(version=SCHEMA_VERSION + 1))


@pytest.mark.parametrize("content, message", [
    (None, "no such results file"),
    ("{not json", "not valid JSON (line 1, column 2"),
    (b"\xff\xfe", "not UTF-8"),
    ("[1, 2]", "not a concurbench results file"),
    ('{"steps": []}', "not a concurbench results file"),
    ('{"version": "1"}', "not a concurbench results file"),
    ('{"version": true}', "not a concurbench results file"),
    (json.dumps({"version": SCHEMA_VERSION + 1}), "written by a newer concurbench"),
    ('{"version": 0}', "unknown results schema version 0"),
], ids=["missing", "invalid-json", "not-utf8", "not-an-object", "no-version", "string-version",
        "bool-version", "newer-version", "unknown-older-version"])
def test_read_refuses_what_it_cannot_trust(tmp_path: Path, content, message: str) -> None:
    path = tmp_path / "results.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    with pytest.raises(ResultsError) as caught:
        read_results(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert message in str(caught.value)


# --- metadata ---

def test_metadata_has_every_field_design_md_asks_for() -> None:
    meta = collect_metadata(scenario_path="quick.toml", scenario_sha256="ab" * 32,
                            pinning={"server": [0], "driver": [1]})
    assert set(meta) >= {"date", "hostname", "cpu_model", "cpu_count", "python", "packages",
                         "git", "scenario", "pinning"}
    assert meta["scenario"] == {"path": "quick.toml", "sha256": "ab" * 32}
    assert meta["pinning"] == {"server": [0], "driver": [1]}
    assert datetime.fromisoformat(meta["date"]).utcoffset().total_seconds() == 0
    assert set(meta["python"]) >= {"version", "implementation"}
    json.dumps(meta)  # storable as is


def test_packages_are_read_without_importing_them() -> None:
    code = ("import sys; from harness.run.metadata import collect_packages; v = collect_packages();"
            "assert 'locust' not in sys.modules and 'gevent' not in sys.modules, sys.modules;"
            "print(v)")
    done = subprocess.run([sys.executable, "-c", code], cwd=Path(store.__file__).parents[2],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


def test_package_versions_are_strings_or_none() -> None:
    versions = collect_packages(("hdrhistogram", "no-such-package-xyz"))
    assert versions["no-such-package-xyz"] is None
    assert versions["hdrhistogram"] and versions["hdrhistogram"][0].isdigit()


@pytest.mark.parametrize("cpuinfo, model", [
    ("processor\t: 0\nmodel name\t: AMD EPYC 7763 64-Core Processor\n", "AMD EPYC 7763 64-Core Processor"),
    ("processor\t: 0\nBogoMIPS\t: 50.00\nModel\t\t: Raspberry Pi 4 Model B\n", "Raspberry Pi 4 Model B"),
], ids=["x86-model-name", "arm-model"])
def test_cpu_model_from_proc_cpuinfo(tmp_path: Path, cpuinfo: str, model: str) -> None:
    path = tmp_path / "cpuinfo"
    path.write_text(cpuinfo)
    assert collect_cpu_model(cpuinfo=path) == model


def test_cpu_model_falls_back_without_proc(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(metadata.platform, "processor", lambda: "x86_64")
    assert collect_cpu_model(cpuinfo=tmp_path / "absent") == "x86_64"


def git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid"}
    return subprocess.run(["git", "-C", str(cwd), *args], env=env, check=True,
                          capture_output=True, text=True).stdout.strip()


needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    git(tmp_path, "init", "-q")
    (tmp_path / "tracked.txt").write_text("one\n")
    git(tmp_path, "add", "tracked.txt")
    git(tmp_path, "commit", "-q", "-m", "first")
    return tmp_path


@needs_git
def test_git_commit_of_a_clean_checkout(checkout: Path) -> None:
    assert collect_git_commit(root=checkout) == {"commit": git(checkout, "rev-parse", "HEAD"),
                                                 "dirty": False}


@needs_git
def test_git_commit_marks_a_changed_checkout_dirty(checkout: Path) -> None:
    (checkout / "tracked.txt").write_text("two\n")
    assert collect_git_commit(root=checkout)["dirty"] is True


@needs_git
def test_untracked_files_do_not_make_it_dirty(checkout: Path) -> None:
    (checkout / "results.json").write_text("{}")
    assert collect_git_commit(root=checkout)["dirty"] is False


@needs_git
def test_no_git_commit_inside_another_repository(checkout: Path) -> None:
    """An installed copy under some other checkout must not report that checkout's commit."""
    (checkout / "site-packages").mkdir()
    assert collect_git_commit(root=checkout / "site-packages") is None


@needs_git
@pytest.mark.parametrize("init", [False, True], ids=["not-a-checkout", "no-commit-yet"])
def test_no_git_commit_without_one(tmp_path: Path, init: bool) -> None:
    if init:
        git(tmp_path, "init", "-q")
    assert collect_git_commit(root=tmp_path) is None
