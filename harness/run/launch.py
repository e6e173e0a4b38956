"""Start a backend in its own process group on its own CPUs, find it, watch it, stop it.

A backend is one of ours (a name from the servers registry) or any server command
(`cmd:uvicorn --port {port} app:app`). Ours start on port 0 and say where through their
`listening on` line; a command gets a free port substituted for {port}. Either way the
backend is health-checked before any load. Stopping is SIGTERM to the whole group, then
SIGKILL: nothing is left behind, whatever happened.

Every process goes through harness.run.processes.spawn (its own session, pinned, dying with
the orchestrator).
"""

from __future__ import annotations

import shlex
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TypeVar

from harness.drivers.wire import destination_host
from harness.run.bytecode import BytecodeError, compiled_env
from harness.run.processes import child_env, spawn, stop_group

START_TIMEOUT = 15.0  # seconds for a backend to print its line and answer GET /
STOP_GRACE = 6.0  # SIGTERM, then this long (the servers' own grace is 5 s), then SIGKILL
STDERR_TAIL = 40  # lines of a failed backend's stderr kept for the results
T = TypeVar("T")


class LaunchError(Exception):
    """A backend did not come up, or died; carries the tail of its stderr."""

    def __init__(self, message: str, *, stderr_tail: str = "") -> None:
        super().__init__(message)
        self.stderr_tail = stderr_tail

    def __str__(self) -> str:
        tail = f"\n--- stderr (last lines) ---\n{self.stderr_tail}" if self.stderr_tail else ""
        return super().__str__() + tail


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((destination_host(host), 0))
        return sock.getsockname()[1]


def backend_command(backend: str, *, host: str, extra_args: tuple[str, ...] = (),
                    python: str | None = None) -> tuple[list[str], int | None]:
    """The argv for a backend, and the port if we chose it (None: read it from stdout).

    Ours is a registry name, with a variant's flags after it ("forking --workers 2
    --reuseport"), run by `python` (default: the harness's own interpreter)."""
    if backend.startswith("cmd:"):
        port = free_port(host)
        text = backend[4:].replace("{port}", str(port)).replace("{host}", host)
        return shlex.split(text), port
    name, *flags = backend.split()
    return [python or sys.executable, "-m", "servers", "--backend", name, *flags, "--host", host, "--port", "0",
            *extra_args], None


@dataclass
class RunningBackend:
    name: str
    process: subprocess.Popen
    host: str
    port: int
    cpus: tuple[int, ...]
    netns: str | None = None  # the network namespace it runs in (an emulated link's server side)
    _stderr: deque[str] = field(default_factory=lambda: deque(maxlen=STDERR_TAIL))

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def alive(self) -> bool:
        return self.process.poll() is None

    def stderr_tail(self) -> str:
        return "".join(self._stderr)

    def stop(self) -> int | None:
        """SIGTERM the group, wait STOP_GRACE, then SIGKILL; returns the exit status."""
        return stop_group(self.process, STOP_GRACE)


def launch_backend(backend: str, *, host: str = "127.0.0.1", cpus: tuple[int, ...] = (),
                   extra_args: tuple[str, ...] = (), timeout: float = START_TIMEOUT,
                   env: dict[str, str] | None = None, python: str | None = None,
                   netns: str | None = None) -> RunningBackend:
    """Start `backend` pinned to `cpus` (ours under `python`, if given; in network namespace
    `netns`, if given) and return it once it answers GET / (asked from inside `netns`)."""
    argv, port = backend_command(backend, host=host, extra_args=extra_args, python=python)
    if not backend.startswith("cmd:"):  # ours run from bytecode compiled beforehand (see bytecode.py)
        try:
            env = {**dict(compiled_env(python)), **(env or {})}
        except BytecodeError as error:
            raise LaunchError(str(error)) from None
    env = child_env(env)
    try:
        process = spawn(argv, cpus=cpus, netns=netns, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                        stdin=subprocess.DEVNULL, env=env, text=True)
    except (OSError, ValueError, subprocess.SubprocessError) as error:
        raise LaunchError(f"cannot start {backend!r}: {error}") from None
    running = RunningBackend(backend, process, destination_host(host), port or 0, cpus, netns)
    threading.Thread(target=_collect, args=(process.stderr, running._stderr), daemon=True).start()
    try:
        if port is None:
            running.port = _read_port(process, timeout)
            threading.Thread(target=_collect, args=(process.stdout, deque(maxlen=1)), daemon=True).start()
        _wait_healthy(running, timeout)
    except LaunchError as error:
        running.stop()
        time.sleep(0.05)  # let the stderr reader catch the last lines
        error.stderr_tail = running.stderr_tail()
        raise
    except BaseException:  # Ctrl+C while it starts: it must not outlive the run
        running.stop()
        raise
    return running


def _collect(stream: Iterable[str], sink: deque[str]) -> None:
    for line in stream:
        sink.append(line)


def _read_port(process: subprocess.Popen, timeout: float) -> int:
    result: list[str] = []
    stdout = process.stdout
    assert stdout is not None  # spawned with stdout=PIPE
    reader = threading.Thread(target=lambda: result.append(stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    line = result[0] if result else ""
    if not line.startswith("listening on http://"):
        status = process.poll()
        why = f"exited with status {status}" if status is not None else f"printed {line!r}" if line else \
            f"printed nothing in {timeout:.0f}s"
        raise LaunchError(f"backend did not start: it {why}")
    return int(line.strip().rsplit(":", 1)[1])


def in_namespace(name: str | None, work: Callable[[], T]) -> T:
    """`work()` here, or on a thread inside network namespace `name` (its sockets are made
    there: a server in an emulated link's namespace is reachable only from inside it)."""
    if name is None:
        return work()
    from harness.network import netns

    return netns.run_in(name, work)


def _get_root(host: str, port: int) -> bytes:
    with socket.create_connection((host, port), timeout=1) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: concurbench\r\nConnection: close\r\n\r\n")
        return sock.recv(64)


def _wait_healthy(running: RunningBackend, timeout: float) -> None:
    """GET / must answer 200 before load starts (external servers may take a while)."""
    deadline = time.monotonic() + timeout
    last_error = "no answer"
    while time.monotonic() < deadline:
        if not running.alive():
            raise LaunchError(f"backend exited with status {running.process.returncode} before answering")
        try:
            head = in_namespace(running.netns, lambda: _get_root(running.host, running.port))
            if head.startswith(b"HTTP/1.") and head[9:12] == b"200":
                return
            last_error = f"answered {head[:40]!r}"
        except OSError as error:
            last_error = str(error)
        time.sleep(0.05)
    raise LaunchError(f"backend did not answer GET / with 200 within {timeout:.0f}s ({last_error})")
