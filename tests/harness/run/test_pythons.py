"""`make pythons` and the short names it gives: the builds are found where the cache says,
a missing one is refused in one line naming the command, a wrong source is refused before
anything is built, and the real builds (where made) are what their stamps say."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from support import ROOT

from harness.run import build_pythons
from harness.run.interpreter import InterpreterError, probe
from harness.run.pythons import BUILDS, STAMP, built, cache_dir, missing_message


def run_builder(*args: str, cache: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "CONCURBENCH_PYTHONS": str(cache), "HOME": str(cache)}
    return subprocess.run([sys.executable, "-m", "harness.run.build_pythons", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60, check=False)


def test_cache_follows_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONCURBENCH_PYTHONS", str(tmp_path / "here"))
    assert cache_dir() == tmp_path / "here"
    monkeypatch.delenv("CONCURBENCH_PYTHONS")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "concurbench" / "python"


def test_an_unfinished_build_is_not_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An executable without the stamp the build writes last is a build that was cut short."""
    monkeypatch.setenv("CONCURBENCH_PYTHONS", str(tmp_path))
    exe = BUILDS["3.13t"].executable()
    exe.parent.mkdir(parents=True)
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    assert built("3.13t") is None
    (BUILDS["3.13t"].home() / STAMP).write_text("{}")
    assert built("3.13t") == exe


def test_a_short_name_not_built_is_refused_with_the_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONCURBENCH_PYTHONS", str(tmp_path))
    with pytest.raises(InterpreterError) as caught:
        probe("3.13t")
    assert str(caught.value) == f"--server-python 3.13t: {missing_message('3.13t')}"
    assert "make pythons" in str(caught.value) and "\n" not in str(caught.value)


def test_a_source_with_the_wrong_checksum_is_refused_before_building(tmp_path: Path) -> None:
    sources = tmp_path / "sources"
    sources.mkdir()
    (sources / build_pythons.DEBIAN_TARBALL).write_bytes(b"not the python.org tarball")
    done = run_builder("--only", "3.13", cache=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    errors = done.stderr.strip().splitlines()
    assert len(errors) == 1 and "sha256" in errors[0] and build_pythons.SOURCE_SHA256 in errors[0]
    assert not (tmp_path / "build").exists() and not BUILDS["3.13"].home(tmp_path).exists()


def test_a_current_build_is_not_built_again(tmp_path: Path) -> None:
    """Idempotent: the stamp with this source and these flags is enough (no source needed)."""
    build = BUILDS["3.13"]
    exe = build.executable(tmp_path)
    exe.parent.mkdir(parents=True)
    exe.write_text("#!/bin/sh\n")
    stamp = {"version": build.version, "sha256": build_pythons.SOURCE_SHA256, "configure": list(build.configure)}
    (build.home(tmp_path) / STAMP).write_text(json.dumps(stamp))
    done = run_builder("--only", "3.13", cache=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "built already" in done.stdout
    stamp["configure"] = ["--something-else"]
    (build.home(tmp_path) / STAMP).write_text(json.dumps(stamp))
    assert not build_pythons.is_current(build, tmp_path)


@pytest.mark.parametrize("short", list(BUILDS))
def test_the_real_builds_are_what_they_say(short: str) -> None:
    """Made by `make pythons` (CI makes them): one version, the GIL the only difference."""
    if built(short) is None:
        pytest.skip(missing_message(short))
    interpreter = probe(short)
    build = BUILDS[short]
    assert interpreter.version == build.version
    assert interpreter.free_threaded is build.free_threaded
    assert interpreter.gil_enabled is not build.free_threaded
    assert set(build.configure) <= set(interpreter.configure)
    assert not any(flag.startswith("--prefix") for flag in interpreter.configure)


def test_no_configure_flag_carries_a_path_of_this_machine() -> None:
    """Measurement rule 13: pyenv's Pythons are configured with --libdir=/root/... and
    LDFLAGS=-L/...; a flag naming a path is left out of what the results record."""
    from harness.run.interpreter import own_interpreter
    assert not any("/" in flag for flag in own_interpreter().configure)
