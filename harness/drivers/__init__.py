"""Load drivers: each runs in its own process and talks to the orchestrator through JSON.

`spec` (what to do, what was measured) and `wire` (the request bytes) are safe to import
anywhere. `locust/` and `distributed/` import locust, which monkey-patches socket, threading
and select with gevent for the whole process: never import them, run them as a module
(DRIVER_MODULES, `locust_driver_argv()`). `wrk/` runs the wrk tool.
"""

from __future__ import annotations

import os
import secrets
import sys

LOCUST_DRIVER_MODULE = "harness.drivers.locust.driver"
WRK_DRIVER_MODULE = "harness.drivers.wrk.driver"
# Load generators that speak the driver protocol (specs in, a result file per window out).
DRIVER_MODULES = {"locust": LOCUST_DRIVER_MODULE, "wrk": WRK_DRIVER_MODULE}
# A distributed run's shared secret, given to the master and every worker in their environment
# (a command line is public: ps); see distributed/protocol.py.
TOKEN_ENV = "CONCURBENCH_WORKER_TOKEN"
# Where a distributed run's master listens for remote workers (Locust's own default), and
# what a worker agrees to carry for any master unless told otherwise (distributed/worker.py).
MASTER_PORT = 5557
WORKER_MAX_USERS = 1000
WORKER_MAX_SOCKETS = 10_000


def new_token() -> str:
    """A run's fresh token. Hex, as it is pasted after `concurbench worker --token`: argparse
    takes a value that starts with "-" for a flag, and 1 in 64 of token_urlsafe's did (that
    worker exited at once, and the master waited out --expect-timeout for it)."""
    return secrets.token_hex(24)


def locust_driver_argv(
    spec_path: str | os.PathLike[str], out_path: str | os.PathLike[str], *, python: str = sys.executable
) -> list[str]:
    """The command that runs one DriverSpec file and writes its DriverResult file."""
    return [python, "-m", LOCUST_DRIVER_MODULE, "--spec", os.fspath(spec_path), "--out", os.fspath(out_path)]
