"""What the tests share: real server processes on real sockets, an h11-checked client, and
the project's paths. Fixtures built on these live in conftest.py; tests import from here."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import h11

from servers.backends import variants

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"
FIXTURES = TESTS / "fixtures"
BENCH = ROOT / "bench"

# Every registered backend, plus the variants that change its model: from the registry,
# so a new backend is tested by every conformance test without editing one.
REGISTRY = variants()
VARIANTS: dict[str, tuple[str, ...]] = {name: variant.flags for name, variant in REGISTRY.items()}


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

    def start(self, timeout: float = 10.0) -> LiveServer:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "CONCURBENCH_CPU_ITERS_PER_MS": os.environ.get(
            "CONCURBENCH_CPU_ITERS_PER_MS", "")}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "servers", "--port", str(self.port), *self.args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, env=env, start_new_session=True,
            preexec_fn=self.preexec,
        )
        deadline = time.monotonic() + timeout
        line = self.process.stdout.readline().decode()  # type: ignore[union-attr]
        if not line.startswith("listening on http://") or time.monotonic() > deadline:
            self.kill()
            raise RuntimeError(f"server did not start: {line!r} {self.process.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
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
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
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
