"""Our servers run from bytecode compiled before the run: on free-threaded 3.13 the constants
of code loaded from a .pyc are immortal, and those of code compiled from source at import are
not (every thread then writes their reference count: /cpu's loop, when it masked with a
constant, ran slower on two threads than on one)."""

from __future__ import annotations

import subprocess

import pytest

from harness.run.bytecode import compiled_env
from harness.run.processes import child_env
from harness.run.pythons import built, missing_message

# Run in the server's interpreter: is a large int constant of the servers' code (the 20,000
# iterations of /cpu's calibration) immortal there (a reference count pinned at its ceiling),
# or an ordinary object every thread that runs the code writes?
_CONSTANT_IS_IMMORTAL = """\
import sys
from servers import app
constant = next(c for c in app._calibrate.__code__.co_consts if isinstance(c, int) and c > 256)
print(sys.getrefcount(constant) > 2**30, app.__spec__.cached is not None)
"""


def constants_immortal(python: str, env: dict[str, str]) -> str:
    done = subprocess.run([python, "-c", _CONSTANT_IS_IMMORTAL], env=child_env({"PYTHONDONTWRITEBYTECODE": "1", **env}),
                          capture_output=True, text=True, timeout=60, check=True)
    return done.stdout.strip()


def test_on_the_free_threaded_build_only_precompiled_constants_are_immortal(tmp_path) -> None:
    python = built("3.13t")
    if python is None:
        pytest.skip(missing_message("3.13t"))
    # From source (an empty pycache of its own, and nothing written): an ordinary constant.
    assert constants_immortal(str(python), {"PYTHONPYCACHEPREFIX": str(tmp_path)}) == "False True"
    # As a server is started: compiled first, then read from the .pyc.
    assert constants_immortal(str(python), dict(compiled_env(str(python)))) == "True True"
