"""The run's latency floor: what the driver measures at 1 user against a server that does
nothing, on the same CPUs the run uses.

No backend can answer faster than this: below it, a latency is the machine's (the kernel's
TCP path, the hypervisor waking an idle CPU) and the driver's own, not the model's. It is
measured once per run, recorded in the metadata, and shown in the report. `make
bench-accuracy` puts the same driver beside wrk; there the driver adds 1-2 us to a p50.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from harness.drivers import LOCUST_DRIVER_MODULE
from harness.drivers.spec import DriverSpec, RequestSpec, read_result, write_spec
from harness.run.processes import child_env, spawn, stop_group

# At 1 user against a server that does nothing the driver makes 20,000 to 55,000 requests a
# second here: half a second holds over 10,000 of them, a p99 from over a hundred, and a tenth
# of a second warms a server that has nothing to warm. Every run pays it before its first backend.
FLOOR_SECONDS = 0.5
FLOOR_WARMUP_S = 0.1
_TIMEOUT_S = 30.0

# The cheapest HTTP server Python has: one blocking connection at a time, a fixed answer to
# every request head, nothing parsed.
RESPONDER = r"""
import socket
REPLY = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("127.0.0.1", 0))
listener.listen(8)
print(listener.getsockname()[1], flush=True)
while True:
    conn, _ = listener.accept()
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    pending = b""
    while data := conn.recv(65536):
        pending += data
        heads = pending.count(b"\r\n\r\n")
        if heads:
            conn.sendall(REPLY * heads)
            pending = pending[pending.rfind(b"\r\n\r\n") + 4:]
    conn.close()
"""


class FloorError(Exception):
    """The floor could not be measured (the run goes on without it)."""


def measure_floor(*, server_cpus: tuple[int, ...], driver_cpus: tuple[int, ...],
                  seconds: float = FLOOR_SECONDS) -> dict[str, Any]:
    """{"p50_us", "p99_us", "rps", "gap_us", "seconds"}: 1 user, keep-alive GET /, against
    RESPONDER pinned to the server CPUs, the driver pinned to the driver CPUs."""
    responder = spawn([sys.executable, "-c", RESPONDER], cpus=server_cpus, stdout=subprocess.PIPE,
                      stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    try:
        assert responder.stdout is not None  # spawned with stdout=PIPE
        line = responder.stdout.readline()
        try:
            port = int(line)
        except ValueError:
            raise FloorError(f"the do-nothing server did not start: {line.strip() or 'no output'}") from None
        with tempfile.TemporaryDirectory(prefix="concurbench-floor-") as workdir:
            spec_path, out = Path(workdir) / "spec.json", Path(workdir) / "result.json"
            write_spec(spec_path, DriverSpec(host="127.0.0.1", port=port, requests=(RequestSpec(),), users=1,
                                             duration_s=seconds, warmup_s=FLOOR_WARMUP_S))
            driver = spawn([sys.executable, "-m", LOCUST_DRIVER_MODULE, "--spec", str(spec_path), "--out", str(out)],
                           cpus=driver_cpus, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                           stdin=subprocess.DEVNULL, text=True, env=child_env())
            try:
                _, stderr = driver.communicate(timeout=_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                raise FloorError(f"the driver did not finish within {_TIMEOUT_S:g}s") from None
            finally:
                stop_group(driver, 1.0)
            if driver.returncode != 0 or not out.exists():
                last = (stderr or "").strip().splitlines()
                raise FloorError(f"the driver failed: {last[-1] if last else f'status {driver.returncode}'}")
            result = read_result(out)
    finally:
        stop_group(responder, 1.0)
    if not result.good_requests or result.p50_us is None:
        raise FloorError("no answer from the do-nothing server")
    cycles = result.cycles
    return {"p50_us": result.p50_us, "p99_us": result.p99_us, "rps": round(result.rps, 1),
            "gap_us": round(cycles.gap_sum_us / cycles.gaps, 2) if cycles and cycles.gaps else None,
            "seconds": seconds}

