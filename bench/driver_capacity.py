"""How much load can the Locust driver make on one CPU? Measured against wrk.

A minimal asyncio server (far faster than any backend under test) runs on one CPU; our
driver and `wrk -t1` take turns on another, with the same connection count and duration.
Besides req/s it reports each tool's own CPU time per request, which, unlike req/s, holds
still when other processes share the machine, and how much CPU those processes took.

    python bench/driver_capacity.py [--users 32] [--duration 10] [--rounds 3] [--close]

--close compares a new connection per request: keep_alive=false against
`wrk -H "Connection: close"`; the server closes after answering such a request.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from harness.drivers import locust_driver_argv  # noqa: E402
from harness.drivers.spec import read_result  # noqa: E402

T = TypeVar("T")
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, World!"
RESPONSE_CLOSE = RESPONSE.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n")


def serve() -> None:
    """The fast server: answers every request head with RESPONSE, pipelining included; a
    request with `Connection: close` gets RESPONSE_CLOSE and the connection is closed."""
    import asyncio
    import socket

    class Hello(asyncio.Protocol):
        def connection_made(self, transport: asyncio.Transport) -> None:
            self.transport, self.buf = transport, b""
            transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def data_received(self, data: bytes) -> None:
            buf = self.buf + data
            if n := buf.count(b"\r\n\r\n"):
                if b"onnection: close" in buf:
                    self.transport.write(RESPONSE_CLOSE)
                    self.transport.close()
                    return
                self.transport.write(RESPONSE * n)
                buf = buf[buf.rfind(b"\r\n\r\n") + 4 :]
            self.buf = buf

    async def listen() -> None:
        server = await asyncio.get_running_loop().create_server(Hello, "127.0.0.1", 0, backlog=1024)
        print(server.sockets[0].getsockname()[1], flush=True)
        await server.serve_forever()

    asyncio.run(listen())


@dataclass(frozen=True)
class Round:
    tool: str
    rps: float
    cpu_us_per_request: float  # the load tool's own CPU time per request
    server_cpu: float  # percent of one CPU
    other_cpu: float  # percent of one CPU taken by processes other than the server and the tool


def pinned(cpu: int | None, argv: list[str]) -> list[str]:
    return ["taskset", "-c", str(cpu), *argv] if cpu is not None and shutil.which("taskset") else argv


def measured(server_pid: int, run: Callable[[], T]) -> tuple[T, float, float, float]:
    """Run a child to completion; return its output, its CPU seconds, and the server's and
    everybody else's CPU share (percent of one CPU) meanwhile."""
    server = psutil.Process(server_pid)
    children = resource.RUSAGE_CHILDREN
    s0, c0, m0, t0 = server.cpu_times(), resource.getrusage(children), psutil.cpu_times(), time.monotonic()
    out = run()
    s1, c1, m1, t1 = server.cpu_times(), resource.getrusage(children), psutil.cpu_times(), time.monotonic()
    server_s = (s1.user - s0.user) + (s1.system - s0.system)
    tool_s = (c1.ru_utime - c0.ru_utime) + (c1.ru_stime - c0.ru_stime)
    busy_s = (sum(m1) - m1.idle - m1.iowait) - (sum(m0) - m0.idle - m0.iowait)
    wall = t1 - t0
    return out, tool_s, 100 * server_s / wall, 100 * max(0.0, busy_s - server_s - tool_s) / wall


def run_driver(
    port: int, *, users: int, duration: float, close: bool, cpu: int | None, server_pid: int, workdir: Path
) -> Round:
    spec = {
        "host": "127.0.0.1",
        "port": port,
        "requests": [{"method": "GET", "path": "/", "body": "", "weight": 1}],
        "users": users,
        "duration_s": duration,
        "warmup_s": 1.0,
        "keep_alive": not close,
    }
    (workdir / "spec.json").write_text(json.dumps(spec))
    out = workdir / "result.json"
    argv = locust_driver_argv(workdir / "spec.json", out)
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    def run() -> None:
        subprocess.run(pinned(cpu, argv), cwd=REPO, env=env, stdout=subprocess.DEVNULL, check=True)

    # Shares are taken over the driver's whole run, start-up and warm-up included.
    _, _, server_cpu, other_cpu = measured(server_pid, run)
    result = read_result(out)
    if result.errors.total or not result.requests:
        raise SystemExit(f"driver run failed: {result.requests} requests, errors {result.errors}")
    cpu_s = result.driver_cpu_percent / 100 * result.duration_s  # the window only, not the locust import
    return Round("locust_driver", result.rps, 1e6 * cpu_s / result.requests, server_cpu, other_cpu)


def run_wrk(port: int, *, users: int, duration: float, close: bool, cpu: int | None, server_pid: int) -> Round:
    argv = ["wrk", "-t1", f"-c{users}", f"-d{int(duration)}s", f"http://127.0.0.1:{port}/"]
    argv += ["-H", "Connection: close"] if close else []
    out, cpu_s, server_cpu, other_cpu = measured(
        server_pid, lambda: subprocess.run(pinned(cpu, argv), capture_output=True, text=True, check=True).stdout
    )
    rps, requests = re.search(r"Requests/sec:\s+([\d.]+)", out), re.search(r"(\d+) requests in", out)
    if not (rps and requests):
        raise SystemExit(f"cannot read wrk output:\n{out}")
    return Round("wrk", float(rps.group(1)), 1e6 * cpu_s / int(requests.group(1)), server_cpu, other_cpu)


def describe(i: int, r: Round) -> str:
    return (
        f"round {i + 1}: {r.tool:<13} {r.rps:>9,.0f} req/s  {r.cpu_us_per_request:5.1f} us CPU/request"
        f"  (server CPU {r.server_cpu:.0f}%, other processes {r.other_cpu:.0f}%)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=32, help="connections for both tools (default: 32)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per run (default: 10)")
    parser.add_argument("--rounds", type=int, default=3, help="driver/wrk pairs, run alternately (default: 3)")
    parser.add_argument("--server-cpu", type=int, default=0, help="CPU for the server (default: 0)")
    parser.add_argument("--driver-cpu", type=int, default=1, help="CPU for the load tool (default: 1)")
    parser.add_argument("--close", action="store_true", help="a new connection per request")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve()
        return
    tools = ("locust_driver", "wrk") if shutil.which("wrk") else ("locust_driver",)
    if "wrk" not in tools:
        print("wrk not found: measuring the driver alone", file=sys.stderr)

    argv = pinned(args.server_cpu, [sys.executable, __file__, "--serve"])
    server = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)  # taskset execs: same pid
    rounds: list[Round] = []
    try:
        port = int(server.stdout.readline())
        common = dict(users=args.users, duration=args.duration, close=args.close)
        common.update(cpu=args.driver_cpu, server_pid=server.pid)
        with tempfile.TemporaryDirectory() as tmp:
            # An unmeasured first run: the first seconds of a fresh server (and of the OS's
            # caches) are slower, which would otherwise always fall on the driver's round 1.
            run_driver(port, workdir=Path(tmp), **{**common, "duration": 3.0})
            for i in range(args.rounds):
                rounds.append(run_driver(port, workdir=Path(tmp), **common))
                print(describe(i, rounds[-1]), flush=True)
                if "wrk" in tools:
                    rounds.append(run_wrk(port, **common))
                    print(describe(i, rounds[-1]), flush=True)
    finally:
        server.terminate()
        server.wait(timeout=5)

    print()
    medians = {}
    for tool in tools:
        mine = [r for r in rounds if r.tool == tool]
        medians[tool] = statistics.median(r.rps for r in mine)
        cost = statistics.median(r.cpu_us_per_request for r in mine)
        print(f"median {tool:<13} {medians[tool]:>9,.0f} req/s  {cost:5.1f} us CPU/request")
    if "wrk" in tools:
        print(f"driver/wrk req/s ratio: {medians['locust_driver'] / medians['wrk']:.2f}")
    if max(r.other_cpu for r in rounds) > 10:
        print("warning: other processes took CPU during the runs: req/s figures are noisy", file=sys.stderr)


if __name__ == "__main__":
    main()
