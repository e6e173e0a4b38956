"""Load drivers: each runs in its own process and talks to the orchestrator through JSON.

`spec` holds the DriverSpec/DriverResult data and is safe to import anywhere.
`locust_driver` imports locust, which monkey-patches socket, threading and select with
gevent for the whole process: never import it, run it with `locust_driver_argv()`.
"""

from __future__ import annotations

import os
import sys

LOCUST_DRIVER_MODULE = "harness.drivers.locust_driver"


def locust_driver_argv(
    spec_path: str | os.PathLike[str], out_path: str | os.PathLike[str], *, python: str = sys.executable
) -> list[str]:
    """The command that runs one DriverSpec file and writes its DriverResult file."""
    return [python, "-m", LOCUST_DRIVER_MODULE, "--spec", os.fspath(spec_path), "--out", os.fspath(out_path)]
