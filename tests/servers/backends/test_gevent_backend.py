"""The gevent backend under an interpreter without gevent: one clear line and exit 2.

The harness may run servers under another Python (--server-python): the standard library
is enough for every other backend, but gevent must be installed there too. Everything else
about the backend is tested with every backend; its process isolation, in test_architecture.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess

import pytest

from support import ROOT

# Prints the interpreter's own path (a pyenv shim is not one) if it is 3.11+ without gevent.
WITHOUT_GEVENT = ("import importlib.util, sys\n"
                  "if sys.version_info >= (3, 11) and not importlib.util.find_spec('gevent'): print(sys.executable)")


def interpreter_without_gevent() -> str | None:
    """A Python 3.11+ on this machine that cannot import gevent: on PATH, or pyenv's."""
    pyenv = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    candidates = [shutil.which(f"python3.{minor}") for minor in range(11, 16)]
    candidates += sorted(glob.glob(f"{pyenv}/versions/3.*/bin/python3.*[0-9]"))
    for path in filter(None, candidates):
        try:
            found = subprocess.run([path, "-c", WITHOUT_GEVENT], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if found.stdout.strip():
            return found.stdout.strip()
    return None


def test_without_gevent_the_backend_says_so_in_one_line_and_exits_2() -> None:
    python = interpreter_without_gevent()
    if python is None:
        pytest.skip("no Python 3.11+ without gevent on this machine to run the server under")
    result = subprocess.run([python, "-m", "servers", "--backend", "gevent", "--port", "0"], cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert [line for line in result.stderr.splitlines() if line.startswith("error:")] == [
        f"error: the gevent backend needs gevent, which is not installed for this interpreter ({python}): "
        "pip install gevent"]
