"""The interpreter a server runs under: --server-python, and [server] python in a scenario.

Only our servers run there (the servers package is the standard library alone, so any
CPython 3.11+ can run it from the checkout); the harness, the drivers and the charts stay on
the harness's own interpreter. Each interpreter is probed once, before anything starts: a
path that is not a Python 3.11+ that can import the servers package is refused with one line.

An interpreter other than the harness's own puts its version in the backend's label,
`threaded@3.13` (`@3.13t` for a free-threaded build), and its version, build and GIL state
go into the results (never its path: measurement rule 13).
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.run.processes import child_env
from harness.run.pythons import BUILD_COMMAND, BUILDS, built, missing_message
from servers.backends import BACKENDS

MINIMUM = (3, 11)
PROBE_TIMEOUT_S = 20.0
# Runs in the candidate interpreter: what it is, and that it can import our servers.
_PROBE = """\
import json, platform, sys, sysconfig
try:
    import servers.backends
    problem = None
except Exception as error:
    problem = f"cannot import the servers package: {type(error).__name__}: {error}"
gil = getattr(sys, "_is_gil_enabled", None)
import importlib.util
modules = [name for name in MODULES if importlib.util.find_spec(name) is not None]
config = [arg for arg in (sysconfig.get_config_var("CONFIG_ARGS") or "").replace("'", " ").split() if "/" not in arg]
print(json.dumps({"modules": modules, "configure": config, "problem": problem, "version": platform.python_version(), "version_info": list(sys.version_info[:2]),
                  "implementation": platform.python_implementation(), "build": " ".join(platform.python_build()),
                  "compiler": platform.python_compiler(), "executable": sys.executable,
                  "free_threaded": bool(sysconfig.get_config_var("Py_GIL_DISABLED")),
                  "gil_enabled": gil() if gil else True}))
"""


# The modules beyond the standard library that some backend imports (gevent's): a probe says
# which of them each interpreter has.
_NEEDED = tuple(sorted({backend.needs for backend in BACKENDS.values() if backend.needs}))


class InterpreterError(ValueError):
    """Not a Python our servers can run on; the message says which and why, in one line."""


@dataclass(frozen=True)
class Interpreter:
    path: str  # what to run (the machine's path: kept out of the results)
    version: str  # "3.13.0"
    implementation: str  # "CPython"
    build: str  # "main May  9 2026 07:36:57" and the compiler
    free_threaded: bool  # built with Py_GIL_DISABLED (python3.13t)
    gil_enabled: bool  # sys._is_gil_enabled() where it exists: PYTHON_GIL=1 turns it back on
    own: bool  # the harness's own interpreter
    configure: tuple[str, ...] = ()  # its ./configure flags, less those naming a path (--prefix=/...: the machine's)
    modules: tuple[str, ...] = ()  # which of the modules our backends may need it can import
    version_info: tuple[int, int] = (0, 0)
    tag: str = ""  # what the label says after "@": "" for the harness's own (see tag_interpreters)

    @property
    def short(self) -> str:
        """"3.13", "3.13t" for a free-threaded build."""
        return ".".join(self.version.split(".")[:2]) + ("t" if self.free_threaded else "")

    def label(self, backend: str) -> str:
        return f"{backend}@{self.tag}" if self.tag else backend

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version, "implementation": self.implementation, "build": self.build,
                "free_threaded": self.free_threaded, "gil_enabled": self.gil_enabled, "own": self.own,
                "configure": list(self.configure), "label": self.tag or None}


def locate(path: str, *, source: str = "--server-python") -> str:
    """What to run for `path`: a short name of ours ("3.13", "3.13t": the builds `make
    pythons` makes), a command on PATH, or a file; InterpreterError if none is there."""
    if path in BUILDS:
        built_path = built(path)
        if built_path is None:
            raise InterpreterError(f"{source} {path}: {missing_message(path)}")
        return str(built_path)
    try:
        found = shutil.which(path) if os.sep not in path else (path if Path(path).is_file() else None)
    except OSError as error:  # a directory on the way this user may not enter
        raise InterpreterError(f"{source} {path}: cannot be reached: {error.strerror}") from None
    if found is None:
        raise InterpreterError(f"{source} {path}: no such interpreter (not a file, not a command on PATH, "
                               f"and not one of the short names {', '.join(BUILDS)} that `{BUILD_COMMAND}` builds)")
    return found


def probe(path: str, *, source: str = "--server-python") -> Interpreter:
    """Run `path` once and read what it is; InterpreterError (naming `source`) if it is not
    a Python 3.11+ that imports our servers package."""
    found = locate(path, source=source)
    try:
        done = subprocess.run([found, "-c", f"MODULES = {_NEEDED!r}\n" + _PROBE], capture_output=True, text=True, timeout=PROBE_TIMEOUT_S,
                              env=child_env(), stdin=subprocess.DEVNULL, check=False)
    except (OSError, subprocess.SubprocessError) as error:
        raise InterpreterError(f"{source} {path}: cannot run it: {error}") from None
    lines = done.stdout.strip().splitlines()
    try:
        info = json.loads(lines[-1]) if done.returncode == 0 and lines else None
    except ValueError:
        info = None
    if not isinstance(info, dict) or "version_info" not in info:
        said = _what_it_said(done.stderr) or _what_it_said(done.stdout) or "nothing"
        raise InterpreterError(f"{source} {path}: not a Python 3.11+ that can run the servers "
                               f"(it exited with status {done.returncode}: {said[:200]})")
    if tuple(info["version_info"]) < MINIMUM:
        raise InterpreterError(f"{source} {path}: Python {info['version']}; the servers need Python 3.11 or newer")
    if info.get("problem"):
        raise InterpreterError(f"{source} {path}: Python {info['version']} {info['problem']}")
    return Interpreter(path=found, version=info["version"], implementation=info["implementation"],
                       build=f"{info['build']} [{info['compiler']}]", free_threaded=info["free_threaded"],
                       gil_enabled=info["gil_enabled"], own=_same_file(info["executable"], sys.executable),
                       configure=tuple(info.get("configure") or ()), modules=tuple(info.get("modules") or ()),
                       version_info=(info["version_info"][0], info["version_info"][1]))


@functools.cache
def own_interpreter() -> Interpreter:
    """The harness's own, probed as any other (once): the same figures, by the same code."""
    return probe(sys.executable, source="the harness's own interpreter")


def resolve_interpreters(paths: tuple[str, ...], *, source: str = "--server-python", skip_missing: bool = False
                         ) -> tuple[tuple[Interpreter, ...], tuple[str, ...]]:
    """The interpreters to run our servers under, each tagged for its labels (() means the
    harness's own alone), and why each one left out was (with `skip_missing`; otherwise the
    first that cannot be used raises InterpreterError). Two that would carry the same label
    are refused; so is a list with none left."""
    if not paths:
        return (), ()
    probed: list[Interpreter] = []
    skipped: list[str] = []
    for path in paths:
        try:
            probed.append(probe(path, source=source))
        except InterpreterError as error:
            if not skip_missing:
                raise
            skipped.append(str(error))
    if not probed:
        raise InterpreterError(f"{source} none of {', '.join(paths)} can run the servers here: "
                               + "; ".join(skipped))
    return tag_interpreters(probed, source=source), tuple(skipped)


def tag_interpreters(interpreters: list[Interpreter], *, source: str = "--server-python") -> tuple[Interpreter, ...]:
    """Each its label tag: none for the harness's own, "3.13" (or "3.13t"), or the whole
    version where two would share the short one (Debian's 3.11.2 beside the harness's 3.11.7)."""
    own_short = own_interpreter().short
    tagged: list[Interpreter] = []
    for interpreter in interpreters:
        if interpreter.own:
            tag = ""
        elif interpreter.short == own_short or sum(i.short == interpreter.short for i in interpreters) > 1:
            tag = interpreter.version + ("t" if interpreter.free_threaded else "")
        else:
            tag = interpreter.short
        if any(t.tag == tag for t in tagged):
            same = "the harness's own interpreter" if not tag else f"Python {tag}"
            raise InterpreterError(f"{source}: {interpreter.path} is {same} again; give each interpreter once")
        tagged.append(Interpreter(**{**interpreter.__dict__, "tag": tag}))
    return tuple(tagged)


def _what_it_said(output: str) -> str:
    """The line that says why: a traceback's last, else the first (a pyenv shim with no
    version selected explains itself in its first line and adds advice after it)."""
    lines = [line.strip() for line in output.strip().splitlines() if line.strip()]
    if not lines:
        return ""
    return lines[-1] if lines[0].startswith("Traceback") else lines[0]


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def expand_backends(backends: dict[str, str], interpreters: tuple[Interpreter, ...]
                    ) -> tuple[dict[str, str], dict[str, Interpreter]]:
    """Each of our backends once per interpreter, under its label (`threaded@3.13`), with the
    interpreter it runs under; a `cmd:` backend runs its own command, once. No interpreters:
    the backends as they are, on the harness's own."""
    if not interpreters:
        return dict(backends), {}
    labelled: dict[str, str] = {}
    pythons: dict[str, Interpreter] = {}
    for name, target in backends.items():
        if target.startswith("cmd:"):
            labelled[name] = target
            continue
        for interpreter in interpreters:
            label = interpreter.label(name)
            labelled[label] = target
            pythons[label] = interpreter
    return labelled, pythons


def unfit(target: str, interpreter: Interpreter) -> str | None:
    """Why our backend `target` ("interpreters", "forking --workers 2") cannot run under
    `interpreter`, in a few words; None where it can (and for a cmd: backend)."""
    if target.startswith("cmd:"):
        return None
    backend = BACKENDS.get(target.split()[0])
    if backend is None:
        return None
    if backend.min_python and interpreter.version_info < backend.min_python:
        need = ".".join(map(str, backend.min_python))
        return f"it needs Python {need}+ (`{BUILD_COMMAND}`, then --server-python {need})"
    if backend.needs and backend.needs not in interpreter.modules:
        return f"{backend.needs} is not installed for Python {interpreter.version}"
    return None


def leave_out_unfit(backends: dict[str, str], pythons: dict[str, Interpreter]
                    ) -> tuple[dict[str, str], tuple[str, ...]]:
    """Each backend on each interpreter it can run on, and one line for each combination left
    out (the interpreters backend on 3.11, gevent where gevent is not installed), so the run
    goes on with the rest; InterpreterError where nothing is left to run."""
    kept: dict[str, str] = {}
    notes: list[str] = []
    for label, target in backends.items():
        why = unfit(target, pythons.get(label) or own_interpreter())
        if why is None:
            kept[label] = target
        else:
            notes.append(f"{label}: {why}")
    if not kept:
        raise InterpreterError("no backend can run on the interpreters given: " + "; ".join(notes))
    return kept, tuple(notes)
