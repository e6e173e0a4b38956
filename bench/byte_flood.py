"""What a byte flood costs everyone else: the keep-alive `GET /` req/s that 32 wrk connections
get from a backend, quiet and while N clients send their requests one byte at a time.

Method: the server runs on CPU 0; wrk -t1 and the flooder share CPU 1. The flooder opens N
connections and, every millisecond, sends each the next byte of a `GET /`, reading whatever
answer has come. Each run starts a fresh server and, for a flooded run, the flood half a
second before wrk. Quiet and flooded runs alternate round by round, so a drift in machine load
hits both alike. Each is reported as its median over the rounds; the ratio is flooded / quiet.

    python bench/byte_flood.py [--only selectors-pool,threaded] [--clients 200] [--duration 3] [--rounds 3]
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from server_bench import PY, REPO, WRK_CPU, LaunchError, WrkError, installed, ours, requests_per_second, start, stop, wrk

sys.path.insert(0, str(REPO))
from servers._help import DefaultsOnce  # noqa: E402
from servers.backends import BACKENDS  # noqa: E402

REQUEST = b"GET / HTTP/1.1\r\nHost: flood\r\nUser-Agent: byte-flood\r\n\r\n"
CONNS = 32
FLOOD_LEAD_S = 0.5  # the flood is under way before wrk starts


def flood(port: int, clients: int, seconds: float) -> None:
    """The flooder's loop (run in its own process on the wrk CPU)."""
    conns = []
    for _ in range(clients):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        conns.append(sock)
    end, i = time.monotonic() + seconds, 0
    while conns and time.monotonic() < end:
        byte = REQUEST[i % len(REQUEST):][:1]
        i += 1
        for sock in list(conns):
            try:
                sock.send(byte)
                sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                conns.remove(sock)  # the server dropped it (a limit, or it is stopping): the rest go on
                sock.close()
        time.sleep(0.001)


def measure(backend: str, *, flooded: bool, clients: int, seconds: int, log: Path) -> float:
    proc, port = start(ours(backend), log)
    flooder = None
    try:
        if flooded:
            flooder = subprocess.Popen(["taskset", "-c", WRK_CPU, PY, __file__, "--flood", str(port), str(clients),
                                        str(seconds + 2 * FLOOD_LEAD_S + 1)])
            time.sleep(FLOOD_LEAD_S)
        return requests_per_second(wrk(port, conns=CONNS, seconds=seconds), backend)
    finally:
        if flooder is not None:
            flooder.kill()
            flooder.wait()
        stop(proc)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=DefaultsOnce)
    parser.add_argument("--only", default="", help="comma-separated backends (default: every one this Python runs)")
    parser.add_argument("--clients", type=int, default=200, help="flooding connections")
    parser.add_argument("--duration", type=int, default=3, help="seconds per measured wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="quiet and flooded runs of each backend, alternating")
    parser.add_argument("--flood", nargs=3, type=float, metavar=("PORT", "CLIENTS", "SECONDS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.flood:
        port, clients, seconds = args.flood
        flood(int(port), int(clients), seconds)
        return 0
    names = [name for name in args.only.split(",") if name] or [
        name for name, backend in BACKENDS.items()
        if sys.version_info >= (backend.min_python or (0, 0)) and (backend.needs is None or installed(backend.needs))]
    unknown = [name for name in names if name not in BACKENDS]
    if unknown:
        parser.error(f"unknown backend {', '.join(unknown)}; choose from {', '.join(BACKENDS)}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "server.log"
        for backend in names:
            runs: dict[bool, list[float]] = {False: [], True: []}
            try:
                for round_ in range(1, args.rounds + 1):
                    for flooded in (False, True) if round_ % 2 else (True, False):
                        value = measure(backend, flooded=flooded, clients=args.clients, seconds=args.duration, log=log)
                        runs[flooded].append(value)
                        print(f"  {backend:<15} round {round_}: {'flooded' if flooded else 'quiet':<8} {value:>9,.0f} req/s",
                              flush=True)
            except (LaunchError, WrkError) as error:
                print(f"  {backend}: not measured: {error}", flush=True)
                continue
            quiet, flooded_ = statistics.median(runs[False]), statistics.median(runs[True])
            rows.append((backend, quiet, flooded_))
    print(f"\nmedian of {args.rounds} rounds x {args.duration} s, {CONNS} wrk connections; "
          f"{args.clients} clients sending a byte per connection per ms")
    print(f"{'backend':<16}{'quiet req/s':>12}{'flooded req/s':>15}{'flooded/quiet':>15}")
    for backend, quiet, flooded_ in rows:
        print(f"{backend:<16}{quiet:>12,.0f}{flooded_:>15,.0f}{flooded_ / quiet:>15.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
