"""What the tests share: real server processes on real sockets, an h11-checked client, and
the project's paths. Fixtures built on these live in conftest.py; tests import from here."""

from __future__ import annotations

import functools
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import sysconfig
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h11
import psutil
import pytest

from harness.run import pythons
from servers.backends import Variant, variants

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"
FIXTURES = TESTS / "fixtures"
BENCH = ROOT / "bench"


def doc_name(doc: Path) -> str:
    """A document (README.md, docs/...) as the docs' tests name it: relative to the checkout."""
    return str(doc.relative_to(ROOT))


@functools.cache
def doc_text(doc: Path) -> str:
    return doc.read_text(encoding="utf-8")

# Every registered backend, plus the variants that change its model: from the registry,
# so a new backend is tested by every conformance test without editing one.
REGISTRY = variants()
VARIANTS: dict[str, tuple[str, ...]] = {name: variant.flags for name, variant in REGISTRY.items()}


# -- the interpreters the servers run under ---------------------------------------------------
def kill_group(process: subprocess.Popen) -> None:
    """SIGKILL the process group `process` leads (started with start_new_session), if it is
    still there; the caller reaps it."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


@dataclass(frozen=True)
class Python:
    """An interpreter the servers run under: the harness's own, or a build of `make pythons`.
    The servers are the standard library alone, so any CPython 3.11+ runs them from the checkout."""

    tag: str  # "" for the harness's own; a build's short name otherwise ("3.13", "3.13t")
    executable: str | None  # None: not built on this machine
    version: tuple[int, int]
    free_threaded: bool
    missing: str = ""  # why there is no executable

    @property
    def name(self) -> str:
        return f"Python {self.tag}" if self.tag else f"this Python ({'.'.join(map(str, self.version))})"

    def has(self, module: str) -> bool:
        """Whether `module` imports here: the builds have the standard library only."""
        if not self.tag:
            return importlib.util.find_spec(module) is not None
        return self.executable is not None and _importable(self.executable, module)


@functools.cache
def _importable(executable: str, module: str) -> bool:
    found = subprocess.run([executable, "-c", f"import importlib.util as u; print(u.find_spec({module!r}) is not None)"],
                           capture_output=True, text=True, timeout=30)
    return found.stdout.strip() == "True"


def _build(short: str) -> Python:
    build, path = pythons.BUILDS[short], pythons.built(short)
    major, minor = build.version.split(".")[:2]
    return Python(short, str(path) if path else None, (int(major), int(minor)), build.free_threaded,
                  "" if path else pythons.missing_message(short))


OWN = Python("", sys.executable, sys.version_info[:2], bool(sysconfig.get_config_var("Py_GIL_DISABLED")))
BUILT = {short: _build(short) for short in pythons.BUILDS}  # "3.13", "3.13t"
# What a backend needs beyond the standard library, by backend name or flag: the builds of
# `make pythons` have neither, so these variants run on the harness's own interpreter only.
NEEDS = {"gevent": "gevent", "uvloop": "uvloop"}


def pythons_for(variant: str) -> tuple[Python, Python]:
    """Each variant runs twice: with the GIL and without it. With the GIL means the harness's
    own interpreter, unless the variant needs a newer one (sub-interpreters need 3.13): then
    the 3.13 build."""
    need = REGISTRY[variant].min_python
    with_gil = OWN if need is None or OWN.version >= need else BUILT["3.13"]
    return with_gil, BUILT["3.13t"]


@dataclass(frozen=True)
class ServerSpec:
    """A backend variant on an interpreter: what one case of a backend test starts."""

    variant: str  # the registry's id: "threaded-pool4"
    python: Python

    @property
    def label(self) -> str:
        """The test id, as the harness labels a backend: `threaded`, `threaded@3.13t`."""
        return f"{self.variant}@{self.python.tag}" if self.python.tag else self.variant

    @property
    def args(self) -> tuple[str, ...]:
        return VARIANTS[self.variant]

    @property
    def model(self) -> Variant:
        return REGISTRY[self.variant]

    @property
    def executable(self) -> str:
        assert self.python.executable is not None, self.python.missing
        return self.python.executable

    def cannot_run(self) -> str | None:
        """Why this variant cannot run on this interpreter here, or None."""
        python = self.python
        if python.executable is None:
            return python.missing
        need = self.model.min_python
        if need is not None and python.version < need:
            return f"{self.variant} needs Python {'.'.join(map(str, need))}+, and {python.name} is older"
        for module in filter(None, map(NEEDS.get, self.args[1:])):  # the backend's name, then its flags
            if not python.has(module):
                return f"{self.variant} needs {module}, which is not installed for {python.name}"
        return None

    def start(self, *extra: str, preexec: Callable[[], None] | None = None) -> LiveServer:
        return LiveServer((*self.args, *extra), python=self.executable, preexec=preexec, spec=self).start()


def server_specs(names: Iterable[str] = VARIANTS) -> list[Any]:
    """pytest params: each variant named, on each of its interpreters; skipped, with the reason,
    where it cannot run (3.13t not built, gevent not installed there, a Python too old)."""
    params = []
    for name in names:
        for spec in (ServerSpec(name, python) for python in pythons_for(name)):
            reason = spec.cannot_run()
            params.append(pytest.param(spec, id=spec.label, marks=[pytest.mark.skip(reason=reason)] if reason else []))
    return params


@dataclass
class LiveServer:
    """A backend in its own process group, found through its startup line."""

    args: tuple[str, ...]
    process: subprocess.Popen = field(init=False)
    host: str = "127.0.0.1"
    port: int = 0
    startup_line: str = ""
    stdout_rest: bytes = b""
    stderr: bytes = b""
    preexec: Callable[[], None] | None = None  # run in the child before exec (limits, uid)
    python: str = sys.executable  # the interpreter the server runs under
    spec: ServerSpec | None = None  # the variant and interpreter, when started from one

    @property
    def variant(self) -> str:
        """The registry's id of what runs: "threaded-pool4"."""
        assert self.spec is not None, "started from flags, not from a ServerSpec"
        return self.spec.variant

    def start(self, timeout: float = 10.0) -> LiveServer:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "CONCURBENCH_CPU_ITERS_PER_MS": os.environ.get(
            "CONCURBENCH_CPU_ITERS_PER_MS", "")}
        self.process = subprocess.Popen(
            [self.python, "-m", "servers", "--port", str(self.port), *self.args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, env=env, start_new_session=True,
            preexec_fn=self.preexec,
        )
        deadline = time.monotonic() + timeout
        line = self.process.stdout.readline().decode()  # type: ignore[union-attr]
        if not line.startswith("listening on http://") or time.monotonic() > deadline:
            self.kill()  # which keeps its stderr
            raise RuntimeError(f"server did not start: {line!r} {self.stderr.decode(errors='replace')[-2000:]}")
        self.startup_line = line
        host_port = line.strip().rsplit("/", 1)[1]
        self.host, _, port = host_port.rpartition(":")
        self.port = int(port)
        return self

    @property
    def pid(self) -> int:
        return self.process.pid

    def connect(self, timeout: float = 5.0) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        finally:
            self.kill()

    def kill(self) -> None:
        """Leave nothing behind: the whole process group, whatever state it is in.

        What the server wrote after its startup line is kept in `stdout_rest` and `stderr`.
        """
        kill_group(self.process)
        self.process.wait()
        if self.process.stdout and not self.process.stdout.closed:
            self.stdout_rest = self.process.stdout.read()
            self.stderr = self.process.stderr.read()  # type: ignore[union-attr]
            self.process.stdout.close()
            self.process.stderr.close()  # type: ignore[union-attr]

    def group_alive(self) -> bool:
        try:
            os.killpg(self.process.pid, 0)
        except ProcessLookupError:
            return False
        # Zombies of our own direct child do not count once it is reaped by wait().
        return True


# -- waits side by side -------------------------------------------------------------------------
ServerStart = Callable[..., LiveServer]  # (spec, *flags, preexec=None) -> a live server


def side_by_side(scenarios: dict[str, Callable[[ServerStart], Any]], *, at_most: int = 24) -> dict[str, Any]:
    """Run each scenario in a thread of its own, all at once; return what each returned, or
    the exception it raised, by name.

    For tests that mostly wait (a timeout to fire, a delay to pass, a window of CPU to watch):
    one after another, twenty cases of a one-second timeout take twenty seconds; side by side,
    about one. Each scenario starts its one server through the `start` it is given, which
    returns once every scenario's server is up, so no start-up lands inside anyone's timing.
    At most `at_most` run together. Every server is killed at the end."""
    outcomes: dict[str, Any] = {}
    names = list(scenarios)
    for first in range(0, len(names), at_most):
        group = names[first:first + at_most]
        line = threading.Barrier(len(group), timeout=60)
        started: list[LiveServer] = []

        def run(name: str) -> None:
            arrived = False

            def start(spec: ServerSpec, *flags: str, preexec: Callable[[], None] | None = None) -> LiveServer:
                nonlocal arrived
                try:
                    live = spec.start(*flags, preexec=preexec)
                    started.append(live)
                    return live
                finally:
                    arrived = True
                    line.wait()  # the clocks start together, once every server is up (or failed)

            try:
                outcomes[name] = scenarios[name](start)
            except BaseException as error:  # noqa: BLE001 - handed to the test it belongs to
                outcomes[name] = error
            finally:
                if not arrived:
                    line.wait()

        threads = [threading.Thread(target=run, args=(name,), daemon=True) for name in group]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for live in started:
            live.kill()
    return outcomes


@dataclass
class HttpResponse:
    status: int
    headers: dict[str, str]
    body: bytes
    raw_headers: list[tuple[bytes, bytes]]


class Client:
    """Raw bytes out; responses parsed by h11 in, so every answer is checked for framing."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_response(self, method: str = "GET") -> HttpResponse:
        conn = h11.Connection(h11.CLIENT)
        conn.send(h11.Request(method=method, target="/", headers=[("Host", "x")]))
        conn.send(h11.EndOfMessage())
        if self.buffer:
            conn.receive_data(self.buffer)
            self.buffer = b""
        response = None
        body = b""
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = self.sock.recv(65536)
                conn.receive_data(data)
                if not data and response is None:
                    raise ConnectionError("server closed the connection without a response")
                continue
            if isinstance(event, h11.Response):
                response = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                break
            elif isinstance(event, h11.ConnectionClosed):
                break
        self.buffer = conn.trailing_data[0]
        assert response is not None
        headers = {name.decode().lower(): value.decode("latin-1") for name, value in response.headers}
        return HttpResponse(response.status_code, headers, body, list(response.headers))

    def closed_by_server(self, timeout: float = 3.0) -> bool:
        """True if the server closes (EOF or reset) within `timeout`, with nothing more sent."""
        if self.buffer:
            return False
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False

    def close(self) -> None:
        self.sock.close()


def request(method: str = "GET", target: str = "/", headers: dict[str, str] | None = None, body: bytes = b"",
            *, close: bool = False) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", "Host: test"]
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    if body:
        lines.append(f"Content-Length: {len(body)}")
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class StallMeter:
    """How long this machine stalled while a measurement ran: a thread asks to wake every
    5 ms and keeps the worst lateness. A few ms on a quiet machine (the GIL's switch
    interval included); on a shared VM whose hypervisor steals the CPU, the pause that the
    server, the driver and this client suffered too. A latency bound that adds it is as
    strict as before on a quiet machine, and fails on the code's own delays, not the host's."""

    TICK_S = 0.005

    def __init__(self) -> None:
        self.worst_s = 0.0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while True:
            before = time.perf_counter()
            if self._done.wait(self.TICK_S):
                return
            self.worst_s = max(self.worst_s, time.perf_counter() - before - self.TICK_S)

    @property
    def worst_us(self) -> int:
        return int(self.worst_s * 1_000_000)

    def __enter__(self) -> StallMeter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()


@contextmanager
def busy_loop_on(cpu: int) -> Iterator[None]:
    """A `while True: pass` pinned to `cpu` for the block, in a session of its own as a
    server is (with Linux's autogroup each session gets a fair share, so a server there keeps
    about half the CPU). Afterwards it asserts the loop ran there all along, not merely
    existed: on a machine too busy to give it a third of the time, a test that blames it fails
    with that message rather than a misleading one."""
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"], start_new_session=True,
                           preexec_fn=lambda: os.sched_setaffinity(0, {cpu}))
    try:
        started = time.monotonic()
        yield
        elapsed = time.monotonic() - started
        process = psutil.Process(hog.pid)
        assert hog.poll() is None and process.cpu_affinity() == [cpu]
        ran = sum(process.cpu_times()[:2])
        assert ran > 0.3 * elapsed, f"the busy loop on CPU {cpu} ran {ran:.1f} s of {elapsed:.1f}: the machine is busy"
    finally:
        hog.kill()
        hog.wait()
