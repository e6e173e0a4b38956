"""`make pythons`: build CPython 3.13 twice from one source, once as usual and once with
--disable-gil, into the per-user cache (harness.run.pythons).

The source is Debian's `python3.13` source package from the trixie suite: its orig tarball
is byte for byte the python.org release, and this machine reaches Debian's archive. It is
fetched with `apt-get source --download-only` through an apt configuration of our own (a
deb-src line for trixie in the cache, passed with -o Dir::Etc::sourcelist=...): the system's
/etc/apt is never touched. Its sha256 is checked against the one recorded here before
anything is built. A tarball already in the cache's sources/ (Debian's or python.org's
`Python-3.13.5.tar.xz`, the same bytes) is used as it is.

Idempotent: a build whose stamp (concurbench-build.json, written last) records the same
version, flags and source is not built again. Progress goes to stdout, the compiler's output
to a log file in the cache. Anything missing is said in one line, with what to do, and the
exit status 2.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

from harness.run.pythons import BUILDS, STAMP, PythonBuild, cache_dir

VERSION = "3.13.5"
# sha256 of Python-3.13.5.tar.xz as python.org publishes it, which Debian ships unchanged
# as python3.13_3.13.5.orig.tar.xz.
SOURCE_SHA256 = "93e583f243454e6e9e4588ca2c2662206ad961659863277afcdb96801647d640"
DEBIAN_TARBALL = f"python3.13_{VERSION}.orig.tar.xz"
PYTHON_ORG_TARBALL = f"Python-{VERSION}.tar.xz"
DEB_SRC = ("deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] "
           "http://deb.debian.org/debian trixie main\n")
HEARTBEAT_S = 20.0  # how often a long step says it is still going


class BuildError(Exception):
    """One line: what is missing or what failed, and what to do."""


def say(message: str) -> None:
    print(f"make pythons: {message}", flush=True)


def read_stamp(build: PythonBuild, cache: Path) -> dict[str, object] | None:
    try:
        return json.loads((build.home(cache) / STAMP).read_text())
    except (OSError, ValueError):
        return None


def is_current(build: PythonBuild, cache: Path) -> bool:
    """Built already, from this source with these flags, and its executable is there."""
    stamp = read_stamp(build, cache)
    return (stamp is not None and stamp.get("version") == build.version and stamp.get("sha256") == SOURCE_SHA256
            and stamp.get("configure") == list(build.configure) and build.executable(cache).is_file())


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def find_source(cache: Path) -> Path | None:
    for name in (DEBIAN_TARBALL, PYTHON_ORG_TARBALL):
        path = cache / "sources" / name
        if path.is_file():
            return path
    return None


def fetch_source(cache: Path) -> Path:
    """Debian's orig tarball through our own apt configuration, or BuildError saying what
    to do where apt cannot fetch it."""
    sources = cache / "sources"
    sources.mkdir(parents=True, exist_ok=True)
    if shutil.which("apt-get") is None:
        raise BuildError(f"no apt-get here to fetch Debian's python3.13 source: put {PYTHON_ORG_TARBALL} "
                         f"(sha256 {SOURCE_SHA256}) in {sources}, or pass --server-python PATH to a Python 3.13 "
                         "you have")
    apt = cache / "apt"
    for sub in ("lists/partial", "archives/partial", "sources.list.d"):
        (apt / sub).mkdir(parents=True, exist_ok=True)
    (apt / "sources.list").write_text(DEB_SRC)
    options = ["-o", f"Dir::Etc::sourcelist={apt / 'sources.list'}",
               "-o", f"Dir::Etc::sourceparts={apt / 'sources.list.d'}",
               "-o", f"Dir::State::lists={apt / 'lists'}",
               "-o", f"Dir::Cache::archives={apt / 'archives'}",
               "-o", "Debug::NoLocking=1"]
    if os.geteuid() == 0:  # apt would hand the download to _apt, who cannot write to root's cache
        options += ["-o", "APT::Sandbox::User=root"]
    say("fetching Debian's python3.13 source package (trixie) with apt-get source")
    for argv in (["apt-get", *options, "update"],
                 ["apt-get", *options, "source", "--download-only", "python3.13/trixie"]):
        done = subprocess.run(argv, cwd=sources, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            said = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise BuildError(f"`{' '.join(argv[:1] + argv[-3:])}` failed ({said}): this needs Debian's archive; "
                             f"or put {PYTHON_ORG_TARBALL} (sha256 {SOURCE_SHA256}) in {sources}")
    source = find_source(cache)
    if source is None:
        raise BuildError(f"apt-get source fetched no {DEBIAN_TARBALL} into {sources}")
    return source


def check_tools() -> None:
    """A C compiler and make; as root with apt, installed if missing."""
    missing = [tool for tool in ("cc", "make") if shutil.which(tool) is None]
    if not missing:
        return
    if os.geteuid() == 0 and shutil.which("apt-get"):
        say(f"installing build-essential ({' and '.join(missing)} missing)")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for argv in (["apt-get", "update", "-qq"],
                     ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "build-essential"]):
            if subprocess.run(argv, env=env, capture_output=True, check=False).returncode != 0:
                raise BuildError(f"`{' '.join(argv)}` failed: install a C compiler and make")
        return
    raise BuildError(f"building CPython needs {' and '.join(missing)}: install them (on Debian: "
                     "apt-get install build-essential)")


def run_logged(argv: list[str], *, cwd: Path, log: Path, what: str) -> None:
    """Run a build step with its output in `log`, saying every HEARTBEAT_S that it goes on."""
    started = time.monotonic()
    done = threading.Event()

    def heartbeat() -> None:
        while not done.wait(HEARTBEAT_S):
            say(f"  {what}: still going ({time.monotonic() - started:.0f} s)")

    ticker = threading.Thread(target=heartbeat, daemon=True)
    ticker.start()
    try:
        with log.open("a") as out:
            out.write(f"\n$ {' '.join(argv)}\n")
            out.flush()
            code = subprocess.run(argv, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                  check=False).returncode
    finally:
        done.set()
    if code != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
        raise BuildError(f"{what} failed (exit {code}): {tail[0][:200]}; the whole log is {log}")


def build_one(build: PythonBuild, source: Path, cache: Path, jobs: int) -> float:
    """Configure, make and install one build into its home; returns the seconds it took."""
    started = time.monotonic()
    work = cache / "build" / build.directory_name
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    home = build.home(cache)
    shutil.rmtree(home, ignore_errors=True)
    log = cache / f"build-{build.directory_name}.log"
    log.write_text("")
    say(f"building Python {build.short} ({build.version}, {' '.join(build.configure)}) in {home}; log: {log}")
    with tarfile.open(source) as tar:
        tar.extractall(work, filter="data")
    tree = work / f"Python-{build.version}"
    run_logged(["./configure", f"--prefix={home}", *build.configure], cwd=tree, log=log, what="configure")
    run_logged(["make", f"-j{jobs}"], cwd=tree, log=log, what=f"make -j{jobs}")
    run_logged(["make", "install"], cwd=tree, log=log, what="make install")
    shutil.rmtree(work, ignore_errors=True)
    verify(build, cache)
    seconds = time.monotonic() - started
    stamp = {"version": build.version, "sha256": SOURCE_SHA256, "configure": list(build.configure),
             "free_threaded": build.free_threaded, "source": source.name, "build_seconds": round(seconds, 1),
             "jobs": jobs}
    (home / STAMP).write_text(json.dumps(stamp, indent=2, sort_keys=True) + "\n")
    say(f"Python {build.short} built in {seconds:.0f} s: {build.executable(cache)}")
    return seconds


_VERIFY = ("import sys, sysconfig, platform; "
           "print(platform.python_version(), bool(sysconfig.get_config_var('Py_GIL_DISABLED')), "
           "getattr(sys, '_is_gil_enabled', lambda: True)())")


def verify(build: PythonBuild, cache: Path) -> None:
    """The built interpreter runs, is the version asked for, and has the GIL it should."""
    exe = build.executable(cache)
    done = subprocess.run([str(exe), "-c", _VERIFY], capture_output=True, text=True, check=False)
    want = f"{build.version} {build.free_threaded} {not build.free_threaded}"
    if done.returncode != 0 or done.stdout.strip() != want:
        raise BuildError(f"{exe} does not check out: expected '{want}', got "
                         f"'{done.stdout.strip() or done.stderr.strip()[-200:]}'")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="make pythons", description="Build CPython 3.13 with and without the GIL, from one source, into "
        "the per-user cache; --server-python 3.13 and 3.13t then find them.")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="make -j (default: every CPU)")
    parser.add_argument("--only", choices=sorted(BUILDS), action="append",
                        help="build only this one (default: both)")
    args = parser.parse_args(argv)
    cache = cache_dir()
    wanted = [BUILDS[name] for name in (args.only or sorted(BUILDS))]
    todo = [build for build in wanted if not is_current(build, cache)]
    for build in wanted:
        if build not in todo:
            say(f"Python {build.short} is built already: {build.executable(cache)}")
    if not todo:
        return 0
    try:
        check_tools()
        source = find_source(cache) or fetch_source(cache)
        digest = sha256_of(source)
        if digest != SOURCE_SHA256:
            raise BuildError(f"{source} has sha256 {digest}, not {SOURCE_SHA256} (the python.org {VERSION} "
                             "release): remove it and run again")
        say(f"source {source.name}: sha256 checks out")
        total = sum(build_one(build, source, cache, args.jobs) for build in todo)
    except BuildError as error:
        print(f"make pythons: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("make pythons: interrupted; run it again to finish", file=sys.stderr)
        return 130
    say(f"done in {total:.0f} s; use them with --server-python 3.13 and --server-python 3.13t")
    return 0


if __name__ == "__main__":
    sys.exit(main())
