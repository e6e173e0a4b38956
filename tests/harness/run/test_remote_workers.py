"""`concurbench run --remote-workers` with `concurbench worker`, as two machines would run them
(here both on this one): the master listens only on the address --host names, prints the
command that starts a worker with the run's token, and counts in only a worker that has it."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from harness.drivers import TOKEN_ENV
from support import ROOT, kill_group

pytestmark = pytest.mark.timeout(90)
ENV = {key: value for key, value in os.environ.items() if key != TOKEN_ENV}
ENV["PYTHONPATH"] = str(ROOT)
CLI = [sys.executable, "-m", "harness.cli"]
SCENARIO = '[load]\nusers = [2]\nduration = "0.4s"\nwarmup = "0.1s"\nrepeat = 1\n[[request]]\npath = "/"\n'


def start(*args: str) -> subprocess.Popen:
    return subprocess.Popen([*CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            env=ENV, start_new_session=True)


def listeners(port: int) -> set[str]:
    return {conn.laddr.ip for conn in psutil.net_connections(kind="tcp")
            if conn.status == psutil.CONN_LISTEN and conn.laddr.port == port}


def free_port() -> int:
    """A port nobody listens on now: not Locust's 5557, which another run on this machine (or
    another test session) may hold, and whose master a worker would then join."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_only_a_worker_with_the_printed_token_joins_on_the_address_given(tmp_path: Path) -> None:
    scenario = tmp_path / "tiny.toml"
    scenario.write_text(SCENARIO)
    port = free_port()
    run = start("run", "--scenario", str(scenario), "--backend", "asyncio", "--remote-workers", "1",
                "--host", "127.0.0.1", "--master-port", str(port), "--out", str(tmp_path / "out"), "--no-report")
    workers: list[subprocess.Popen] = []
    try:
        assert run.stderr is not None
        said = run.stderr.readline() + run.stderr.readline()
        master = f"127.0.0.1:{port}"
        match = re.search(rf"concurbench worker --master {re.escape(master)} --token (\S+)", said)
        assert match, said
        deadline = time.monotonic() + 30
        while not listeners(port) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert listeners(port) == {"127.0.0.1"}  # not 0.0.0.0: nobody else on the network
        workers.append(start("worker", "--master", master, "--token", "not-" + match[1]))
        assert workers[0].stderr is not None
        assert "does not know this worker's token: left it" in workers[0].stderr.readline()
        workers.append(start("worker", "--master", master, "--token", match[1]))
        _, err = run.communicate(timeout=60)
        assert run.returncode == 0, err
        (run_dir,) = (tmp_path / "out").iterdir()
        steps = json.loads((run_dir / "results.json").read_text())["steps"]
        # the run's own local worker and the right remote one; the wrong one, which tries again
        # each second, was never counted in, nor stopped the run
        assert len(steps) == 1 and steps[0]["driver"]["workers"] == 2
    finally:
        for process in (run, *workers):
            kill_group(process)
            process.communicate()


def test_a_worker_without_a_token_is_refused_in_one_line() -> None:
    done = subprocess.run([*CLI, "worker", "--master", "127.0.0.1"], capture_output=True, text=True, cwd=ROOT,
                          env=ENV, timeout=30)
    assert done.returncode == 2 and done.stderr.startswith("concurbench: error: worker: no token")
    assert len(done.stderr.splitlines()) == 1
