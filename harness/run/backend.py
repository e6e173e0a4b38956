"""Start a backend in its own process group on its own CPUs, find it, watch it, stop it.

A backend is one of ours (a name from the servers registry) or any server command
(`cmd:uvicorn --port {port} app:app`). Ours start on port 0 and say where through their
`listening on` line; a command gets a free port substituted for {port}. Either way the
backend is health-checked before any load. Stopping is SIGTERM to the whole group, then
SIGKILL: nothing is left behind, whatever happened.

Every process goes through harness.run.processes.spawn (its own session, pinned, dying with
the orchestrator).

Ready-made peers are real servers serving the same app (servers/adapters.py) as `cmd:`
backends under a short name, available when installed (`pip install 'concurbench[peers]'`);
`resolve_backends` turns --backend into what to launch.
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import psutil

from harness.drivers.wire import destination_host
from harness.run.bytecode import BytecodeError, compiled_env
from harness.run.processes import child_env, child_setup, spawn, stop_group
from servers.backends import BACKENDS, variants

START_TIMEOUT = 15.0  # seconds for a backend to print its line and answer GET /
STOP_GRACE = 6.0  # SIGTERM, then this long (the servers' own grace is 5 s), then SIGKILL
STDERR_TAIL = 40  # lines of a failed backend's stderr kept for the results


class LaunchError(Exception):
    """A backend did not come up, or died; carries the tail of its stderr."""

    def __init__(self, message: str, *, stderr_tail: str = "") -> None:
        super().__init__(message)
        self.stderr_tail = stderr_tail

    def __str__(self) -> str:
        tail = f"\n--- stderr (last lines) ---\n{self.stderr_tail}" if self.stderr_tail else ""
        return super().__str__() + tail


@dataclass(frozen=True)
class Peer:
    """An external server under a short name: its command and the module it needs."""

    command: str  # {python}, {host} and {port} are filled in at launch
    needs: str | None  # the module that must be importable
    description: str


PEERS: dict[str, Peer] = {
    "uvicorn": Peer("{python} -m uvicorn --host {host} --port {port} --http httptools --loop asyncio "
                    "--no-access-log --log-level warning servers.adapters:asgi_app", "uvicorn",
                    "uvicorn (httptools parser, asyncio loop), one process"),
    "gunicorn-sync": Peer("{python} -m gunicorn -k sync -w 1 -b {host}:{port} --log-level warning "
                          "servers.adapters:wsgi_app", "gunicorn", "gunicorn sync worker, one process"),
    "gunicorn-gthread": Peer("{python} -m gunicorn -k gthread -w 1 --threads 8 -b {host}:{port} "
                             "--log-level warning servers.adapters:wsgi_app", "gunicorn",
                             "gunicorn gthread worker, one process, 8 threads"),
    # Rust I/O and HTTP parsing, Python only for the app: what keeping those in Python costs.
    # One worker, one runtime thread, as our servers and uvicorn get one process.
    "granian": Peer("{python} -m granian --interface asgi --host {host} --port {port} --workers 1 "
                    "--runtime-threads 1 --loop asyncio --http 1 --no-ws --log-level warning "
                    "servers.adapters:asgi_app", "granian",
                    "granian ASGI (Rust I/O and parser, asyncio loop), one worker"),
    "granian-wsgi": Peer("{python} -m granian --interface wsgi --host {host} --port {port} --workers 1 "
                         "--runtime-threads 1 --blocking-threads 8 --http 1 --no-ws --log-level warning "
                         "servers.adapters:wsgi_app", "granian",
                         "granian WSGI (Rust I/O and parser), one worker, 8 Python threads"),
    "http.server": Peer("{python} -m http.server --bind {host} {port}", None,
                        "the stdlib's http.server (serves a directory listing at /; GET only)"),
}


def available(name: str) -> bool:
    needs = PEERS[name].needs
    return needs is None or importlib.util.find_spec(needs) is not None


def peer_command(name: str) -> str:
    """The `cmd:` backend for a peer name."""
    return "cmd:" + PEERS[name].command.replace("{python}", sys.executable)

def resolve_backends(text: str, scenario_backends: tuple[tuple[str, str], ...] = ()) -> dict[str, str]:
    """--backend as {display name: launch target}: ours by name, a ready-made peer, a
    scenario's [backends] entry, or a literal cmd:COMMAND (which may contain commas)."""
    if text == "all":
        return {name: name for name in BACKENDS}
    if text.startswith("cmd:"):
        return {text: text}
    named = dict(scenario_backends)
    registered = variants()  # a variant by its id, e.g. forking-reuseport2: its flags go with it
    chosen: dict[str, str] = {}
    for name in (part.strip() for part in text.split(",")):
        if not name:
            continue
        if name == "all":
            chosen.update({ours: ours for ours in BACKENDS})
        elif name in registered:  # ours, or a variant: "--backend NAME FLAGS..." less "--backend"
            chosen[name] = " ".join(registered[name].flags[1:])
        elif name in named:
            chosen[name] = "cmd:" + named[name]
        elif name in PEERS:
            if not available(name):
                raise ValueError(f"backend {name!r} needs {PEERS[name].needs}, which is not installed: "
                                 "pip install 'concurbench[peers]'")
            chosen[name] = peer_command(name)
        else:
            choices = [*registered, *PEERS, *named]
            raise ValueError(f"unknown backend {name!r}; choose from: all, {', '.join(choices)}, or cmd:COMMAND")
    if not chosen:
        raise ValueError(f"no backend in {text!r}")
    return chosen


def default_pinning(cpu_count: int | None = None) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Split the CPUs in half: the server the first half, the driver the rest.

    On a 2-CPU machine: server on CPU 0, driver on CPU 1. On one CPU both share it (and
    the results say so through the recorded pinning).
    """
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(cpu_count or 1))
    if len(cpus) < 2:
        return tuple(cpus), tuple(cpus)
    half = len(cpus) // 2
    return tuple(cpus[:half]), tuple(cpus[half:])


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


def registry_name(target: str) -> str:
    """Which of our backends a launch target runs: "forking --workers 2" -> "forking"."""
    return target.split()[0]


@dataclass
class RunningBackend:
    name: str
    process: subprocess.Popen
    host: str
    port: int
    cpus: tuple[int, ...]
    _stderr: deque[str] = field(default_factory=lambda: deque(maxlen=STDERR_TAIL))

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def alive(self) -> bool:
        return self.process.poll() is None

    def stderr_tail(self) -> str:
        return "".join(self._stderr)

    def tree(self) -> list[psutil.Process]:
        try:
            root = psutil.Process(self.process.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def cpu_seconds(self) -> float:
        """CPU time of the whole tree so far, reaped children included (forking's)."""
        total = 0.0
        for proc in self.tree():
            try:
                times = proc.cpu_times()
            except psutil.Error:
                continue
            total += times.user + times.system + getattr(times, "children_user", 0) + getattr(
                times, "children_system", 0)
        return total

    def memory(self) -> tuple[int | None, int | None]:
        """(RSS, PSS) of the server in bytes, each under its own name.

        RSS: the sum over the tree (one process: its RSS). PSS: for a process tree (forking
        with children), the sum of each process's proportional share, None for one process
        or where the platform has none. A page shared copy-on-write by 500 children is
        counted once in PSS, 500 times in RSS (7 GiB of RSS for 50 MiB of PSS in c10k)."""
        tree = self.tree()
        rss = pss = 0
        seen = pss_known = False
        for proc in tree:
            try:
                if len(tree) > 1:
                    try:
                        full = proc.memory_full_info()
                        rss, pss, pss_known = rss + full.rss, pss + full.pss, True
                        seen = True
                        continue
                    except AttributeError:  # no PSS on this platform
                        pass
                rss += proc.memory_info().rss
                seen = True
            except psutil.Error:
                continue
        return (rss if seen else None), (pss if pss_known else None)

    def stop(self) -> int | None:
        """SIGTERM the group, wait STOP_GRACE, then SIGKILL; returns the exit status."""
        return stop_group(self.process, STOP_GRACE)


def calibrate_cpu_work(cpus: tuple[int, ...]) -> float:
    """Iterations of /cpu's loop per millisecond, measured once on the server CPUs.

    Every backend of a run gets this one figure (CONCURBENCH_CPU_ITERS_PER_MS), so /cpu?ms=5
    is the same work in every model; a server calibrating itself would measure whatever else
    the CPU was doing at that moment (seen: forking did a third less work than the others).
    """
    code = "from servers.app import _calibrate; print(max(_calibrate() for _ in range(3)))"
    argv = [sys.executable, "-c", code]
    if cpus and shutil.which("taskset"):
        argv = ["taskset", "-c", ",".join(map(str, cpus)), *argv]
    env = child_env()
    # In the orchestrator's process group: a Ctrl+C at the terminal stops it too, and
    # subprocess.run kills it on any exception; the kernel does if the orchestrator dies.
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60, check=True,
                          preexec_fn=child_setup())
    return float(done.stdout.strip())


def launch_backend(backend: str, *, host: str = "127.0.0.1", cpus: tuple[int, ...] = (),
                   extra_args: tuple[str, ...] = (), timeout: float = START_TIMEOUT,
                   env: dict[str, str] | None = None, python: str | None = None) -> RunningBackend:
    """Start `backend` pinned to `cpus` (ours under `python`, if given) and return it once
    it answers GET /."""
    argv, port = backend_command(backend, host=host, extra_args=extra_args, python=python)
    if not backend.startswith("cmd:"):  # ours run from bytecode compiled beforehand (see bytecode.py)
        try:
            env = {**dict(compiled_env(python)), **(env or {})}
        except BytecodeError as error:
            raise LaunchError(str(error)) from None
    env = child_env(env)
    try:
        process = spawn(argv, cpus=cpus, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                        env=env, text=True)
    except (OSError, ValueError, subprocess.SubprocessError) as error:
        raise LaunchError(f"cannot start {backend!r}: {error}") from None
    running = RunningBackend(backend, process, destination_host(host), port or 0, cpus)
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


def _collect(stream, sink: deque[str]) -> None:  # type: ignore[no-untyped-def]
    for line in stream:
        sink.append(line)


def _read_port(process: subprocess.Popen, timeout: float) -> int:
    result: list[str] = []
    reader = threading.Thread(target=lambda: result.append(process.stdout.readline()), daemon=True)  # type: ignore[union-attr]
    reader.start()
    reader.join(timeout)
    line = result[0] if result else ""
    if not line.startswith("listening on http://"):
        status = process.poll()
        why = f"exited with status {status}" if status is not None else f"printed {line!r}" if line else \
            f"printed nothing in {timeout:.0f}s"
        raise LaunchError(f"backend did not start: it {why}")
    return int(line.strip().rsplit(":", 1)[1])


def _wait_healthy(running: RunningBackend, timeout: float) -> None:
    """GET / must answer 200 before load starts (external servers may take a while)."""
    deadline = time.monotonic() + timeout
    last_error = "no answer"
    while time.monotonic() < deadline:
        if not running.alive():
            raise LaunchError(f"backend exited with status {running.process.returncode} before answering")
        try:
            with socket.create_connection((running.host, running.port), timeout=1) as sock:
                sock.sendall(b"GET / HTTP/1.1\r\nHost: concurbench\r\nConnection: close\r\n\r\n")
                head = sock.recv(64)
            if head.startswith(b"HTTP/1.") and head[9:12] == b"200":
                return
            last_error = f"answered {head[:40]!r}"
        except OSError as error:
            last_error = str(error)
        time.sleep(0.05)
    raise LaunchError(f"backend did not answer GET / with 200 within {timeout:.0f}s ({last_error})")
