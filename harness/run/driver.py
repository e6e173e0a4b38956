"""A load driver in its own process: the specs it gets, and its stdout as events.

Every driver (the Locust one, wrk) speaks one protocol: specs in, a JSON line per event
out, a result file per measured window. This module never imports locust: it only starts
the process that does.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any, NoReturn

from harness.drivers import LOCUST_DRIVER_MODULE, MASTER_PORT, TOKEN_ENV, new_token
from harness.drivers.spec import DriverSpec, SpecError, write_spec
from harness.run.processes import child_env, spawn, stop_group
from harness.run.plan import plan_run
from harness.scenario import Scenario

# SIGTERM, then this long for a driver to write its last result and exit, then SIGKILL.
DRIVER_STOP_GRACE = 5.0


class DriverProcess:
    """A driver in its own process group on its own CPUs; its stdout as events, each
    stamped with the time.monotonic() it arrived at ("received").

    With procs > 1 (or remote workers), Locust's master/worker mode: the master writes the
    same events and results, and `procs` local workers, each in its own process group on one
    driver CPU in turn, carry the users."""

    def __init__(self, specs: list[DriverSpec], *, workdir: Path, cpus: tuple[int, ...],
                 module: str = LOCUST_DRIVER_MODULE, procs: int = 1, remote_workers: int = 0,
                 master_bind: str = "127.0.0.1", master_port: int = MASTER_PORT, token: str = "",
                 netns: str | None = None) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, "-m", module, "--out-dir", str(workdir)]
        for index, spec in enumerate(specs):
            path = workdir / f"spec-{index}.json"
            write_spec(path, spec)
            argv += ["--spec", str(path)]
        distributed = procs > 1 or remote_workers > 0
        if distributed:
            # Remote workers join on --master-port at the address the run was given (--host),
            # never on every interface; local ones on a free port of the loopback.
            where = ["--master-bind", master_bind, "--master-port", str(master_port)] if remote_workers else \
                    ["--master-bind", "127.0.0.1", "--master-port", "0"]
            argv += ["--master", "--expect-workers", str(procs + remote_workers), *where]
        # Only workers that know it are counted in: the run's, or one of this driver's own.
        self.env = child_env({TOKEN_ENV: token or new_token()} if distributed else None)
        self.events: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.stderr: deque[str] = deque(maxlen=30)
        self.workers: list[subprocess.Popen] = []
        self.netns = netns  # an emulated link's client side: the master and local workers run there
        self.process = self._start(argv, cpus, stdout=subprocess.PIPE)
        try:
            port = self._master_port() if distributed else None
            if port is not None:
                worker = [sys.executable, "-m", module, "--worker", "--master-host", "127.0.0.1",
                          "--master-port", str(port)]
                for i in range(procs):
                    self.workers.append(self._start(worker, (cpus[i % len(cpus)],) if cpus else (),
                                                    stdout=subprocess.DEVNULL))
        except BaseException:  # Ctrl+C while the workers start: none of them may outlive the run
            self.stop()
            raise
        threading.Thread(target=self._read_stdout, daemon=True).start()
        for process in (self.process, *self.workers):
            threading.Thread(target=lambda p=process: self.stderr.extend(p.stderr), daemon=True).start()

    def _start(self, argv: list[str], cpus: tuple[int, ...], *, stdout: int) -> subprocess.Popen:
        return spawn(argv, cpus=cpus, netns=self.netns, stdout=stdout, stderr=subprocess.PIPE,
                     stdin=subprocess.DEVNULL, text=True, env=self.env)

    def dead_worker(self) -> subprocess.Popen | None:
        """A local worker that has exited, if any (mid-run, that is a fault: see the runner)."""
        return next((worker for worker in self.workers if worker.poll() is not None), None)

    def _master_port(self) -> int | None:
        """The master's first line, {"type": "master", "port"}: where the workers join. None
        if it exited first (a bad spec, a busy port): Run.drive then reports its stderr."""
        assert self.process.stdout is not None  # spawned with stdout=PIPE
        line = self.process.stdout.readline()
        try:
            return int(json.loads(line)["port"])
        except (ValueError, KeyError, TypeError):
            self.stderr.append(line)
            return None

    @property
    def pids(self) -> list[int]:
        """The local processes that make the load: the driver (or master) and its workers."""
        return [process.pid for process in (self.process, *self.workers)]

    def _read_stdout(self) -> None:
        assert self.process.stdout is not None  # spawned with stdout=PIPE
        for line in self.process.stdout:
            received = time.monotonic()  # when it was said: the runner may read it later
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                self.stderr.append(line)
                continue
            if isinstance(event, dict):
                event["received"] = received
            self.events.put(event)
        self.events.put(None)  # end of stream: the driver exited

    def stop(self) -> None:
        for process in (self.process, *self.workers):  # the master first: it tells its workers to quit
            stop_group(process, DRIVER_STOP_GRACE)

    def kill(self) -> None:
        """SIGKILL at once: a driver that lost a process has nothing left to finish cleanly
        (a master waiting on a dead worker may not even heed SIGTERM)."""
        for process in (self.process, *self.workers):
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.stop()  # reaps them


def wrk_problem(scenario: Scenario) -> str | None:
    """Why the wrk driver cannot run this scenario (None if it can), before anything starts."""
    from harness.drivers.wrk.driver import check_supported

    if scenario.search is not None:
        return "--driver wrk cannot search a rate: wrk has no open loop (rate = { search = [...] } needs the Locust driver)"
    if shutil.which("wrk") is None:
        return "--driver wrk needs wrk on PATH (apt-get install wrk)"
    try:
        for spec in plan_run(scenario, ()).specs(host="127.0.0.1", port=1):
            check_supported(spec)
    except SpecError as error:
        return str(error)
    return None


def become_worker(master_host: str, master_port: int, *, token: str, limits: list[str]) -> NoReturn:
    """`concurbench worker`: replace this process with a Locust worker driver (its own
    interpreter: locust monkey-patches with gevent), given the run's token in its environment
    and `limits` as its flags (--max-users N, --allow-target HOST...). --rejoin: `concurbench
    run` starts one master per backend and round, all on the same port."""
    os.execve(sys.executable, [sys.executable, "-m", LOCUST_DRIVER_MODULE, "--worker", "--rejoin",
                               "--master-host", master_host, "--master-port", str(master_port), *limits],
              child_env({TOKEN_ENV: token}))
