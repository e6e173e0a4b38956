"""Our servers run from bytecode compiled before the run, never from source compiled at import.

Why it matters: on free-threaded CPython 3.13, the constants of code compiled from source
are ordinary objects whose reference count every thread writes at each use, while the
constants of code loaded from a .pyc are immortal (in the main interpreter; a sub-interpreter
leaves them mortal either way). When /cpu's loop masked with a large int constant, two
threads running it from source were slower than one (0.81x on two CPUs); /cpu now makes its
mask per call, but every other constant on the request path still differs this way. Which of
the two a server gets would otherwise depend on whether a .pyc happened to be there
(PYTHONDONTWRITEBYTECODE, a read-only checkout, the first run after a change), so the harness
decides: before a backend starts, the servers package is compiled by the interpreter that will
run it into a cache of its own outside the checkout, and the server reads it from there
(PYTHONPYCACHEPREFIX). Deployed Python code runs from byte-compiled files too: that is the
case worth measuring.
"""

from __future__ import annotations

import functools
import subprocess
import sys
from pathlib import Path

from harness.run.processes import PROJECT_ROOT, child_env
from harness.run.pythons import cache_dir

COMPILE_TIMEOUT_S = 120.0


class BytecodeError(RuntimeError):
    """The servers package did not compile under an interpreter (one line: which and why)."""


def pycache_prefix() -> Path:
    """Where the servers' .pyc files go: beside the built interpreters, outside any checkout
    (the prefix mirrors each source's absolute path, so checkouts do not collide)."""
    return cache_dir().parent / "pycache"


@functools.cache
def compiled_env(python: str | None = None) -> tuple[tuple[str, str], ...]:
    """Compile the servers package with `python` (None: the harness's own) once per process,
    and return the environment under which a server reads it: PYTHONPYCACHEPREFIX."""
    prefix = pycache_prefix()
    prefix.mkdir(parents=True, exist_ok=True)
    env = {"PYTHONPYCACHEPREFIX": str(prefix)}
    argv = [python or sys.executable, "-m", "compileall", "-q", str(PROJECT_ROOT / "servers")]
    try:
        done = subprocess.run(argv, env=child_env(env), capture_output=True, text=True, timeout=COMPILE_TIMEOUT_S,
                              stdin=subprocess.DEVNULL, check=False)
    except (OSError, subprocess.SubprocessError) as error:
        raise BytecodeError(f"cannot compile the servers package with {python or sys.executable}: {error}") from None
    if done.returncode != 0:
        said = (done.stdout.strip() or done.stderr.strip() or "no output").splitlines()[-1]
        raise BytecodeError(f"the servers package does not compile with {python or sys.executable}: {said[:200]}")
    return tuple(env.items())
