"""The interpreters `make pythons` builds, and where they live.

One CPython source, built twice: as usual, and with --disable-gil, so the GIL is the only
difference between the two (the same version, compiler and flags). They live in a per-user
cache outside the checkout, so a fresh clone finds them again:

    ~/.cache/concurbench/python/3.13.5/bin/python3.13      (the GIL build)
    ~/.cache/concurbench/python/3.13.5t/bin/python3.13t    (free-threaded)

`--server-python 3.13` and `--server-python 3.13t` name them by their short names. The
cache is $CONCURBENCH_PYTHONS, else $XDG_CACHE_HOME/concurbench/python, else
~/.cache/concurbench/python.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

BUILD_COMMAND = "make pythons"
STAMP = "concurbench-build.json"  # written last by the build: a build without it is unfinished


@dataclass(frozen=True)
class PythonBuild:
    """One interpreter `make pythons` builds from Debian's source package."""

    short: str  # what --server-python accepts: "3.13", "3.13t"
    version: str  # the exact patch version: scaling changed between 3.13 patch releases
    free_threaded: bool  # configured with --disable-gil
    configure: tuple[str, ...]  # the flags beyond --prefix, recorded with every run

    @property
    def directory_name(self) -> str:
        return self.version + ("t" if self.free_threaded else "")

    @property
    def executable_name(self) -> str:
        return "python" + self.short

    def home(self, cache: Path | None = None) -> Path:
        return (cache or cache_dir()) / self.directory_name

    def executable(self, cache: Path | None = None) -> Path:
        return self.home(cache) / "bin" / self.executable_name


# Both builds take the same flags but one: --with-lto and PGO are left out, since they make
# the build several times longer and optimize the two builds differently (PGO trains each on
# its own profile); the same -O3 for both keeps the GIL the only difference.
_COMMON = ("--disable-test-modules", "--without-ensurepip")
BUILDS: dict[str, PythonBuild] = {
    "3.13": PythonBuild("3.13", "3.13.5", False, _COMMON),
    "3.13t": PythonBuild("3.13t", "3.13.5", True, (*_COMMON, "--disable-gil")),
}


def cache_dir() -> Path:
    """Where the built interpreters live (outside any checkout)."""
    explicit = os.environ.get("CONCURBENCH_PYTHONS")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "concurbench" / "python"


def built(short: str) -> Path | None:
    """The executable of the build named `short` ("3.13t"), or None if it is not built
    (or not a short name of ours)."""
    build = BUILDS.get(short)
    if build is None:
        return None
    path = build.executable()
    finished = (build.home() / STAMP).is_file()
    return path if finished and path.is_file() and os.access(path, os.X_OK) else None


def missing_message(short: str) -> str:
    """One line for a build that is not there: what to run."""
    return f"Python {short} is not built here: run `{BUILD_COMMAND}` (once per machine, about 10 minutes)"
