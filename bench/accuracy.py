"""Is the harness accurate? Its req/s and p50 against wrk's, same backend, same run.

    python bench/accuracy.py [--backend asyncio] [--path /sleep?ms=10] [--users 32] [--rounds 3]

The backend runs on the server CPU; the Locust driver and `wrk -t1 --latency` take turns
on the driver CPU against the same server process, alternating round by round. With a
10 ms route both are latency-bound, so req/s ~ users / (10 ms + overhead) and p50 ~ 10 ms:
a driver adding its own delay would show here. Reported: the medians and ratios.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from statistics import median

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness.drivers.spec import DriverResult, DriverSpec, RequestSpec  # noqa: E402
from harness.run.backend import default_pinning, launch_backend  # noqa: E402
from harness.run.driver import DriverProcess  # noqa: E402

_UNITS = {"us": 1.0, "ms": 1000.0, "s": 1_000_000.0}


def wrk_run(url: str, *, users: int, seconds: float, cpus: tuple[int, ...]) -> tuple[float, float]:
    """(req/s, p50 in us) from wrk -t1 --latency."""
    argv = ["taskset", "-c", ",".join(map(str, cpus)), "wrk", "-t1", f"-c{users}", f"-d{int(seconds)}s",
            "--latency", url]
    text = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=seconds + 30).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))  # type: ignore[union-attr]
    value, unit = re.search(r"\s50%\s+([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return rps, float(value) * _UNITS[unit]


def driver_run(host: str, port: int, path: str, *, users: int, seconds: float,
               cpus: tuple[int, ...]) -> tuple[float, float, float]:
    """(req/s, p50 in us, driver CPU %) from one Locust driver window after a 1 s warm-up."""
    spec = DriverSpec(host=host, port=port, requests=(RequestSpec(path=path),), users=users, duration_s=seconds,
                      warmup_s=1.0)
    with tempfile.TemporaryDirectory() as tmp:
        driver = DriverProcess([spec], workdir=Path(tmp), cpus=cpus)
        try:
            while (event := driver.events.get(timeout=seconds + 30)) is not None:
                if event["type"] == "result":
                    result = DriverResult.from_dict(json.loads(Path(event["path"]).read_text()))
                    return result.rps, float(result.p50_us or 0), result.driver_cpu_percent
        finally:
            driver.stop()
    raise RuntimeError("the driver produced no result: " + "".join(driver.stderr))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="asyncio")
    parser.add_argument("--path", default="/sleep?ms=10")
    parser.add_argument("--users", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        print("error: wrk is required (apt-get install wrk)", file=sys.stderr)
        return 2
    server_cpus, driver_cpus = default_pinning()
    backend = launch_backend(args.backend, cpus=server_cpus)
    ours: list[tuple[float, float, float]] = []
    theirs: list[tuple[float, float]] = []
    try:
        url = f"{backend.url}{args.path}"
        for round_ in range(args.rounds):
            order = ("ours", "wrk") if round_ % 2 == 0 else ("wrk", "ours")
            for who in order:
                if who == "ours":
                    ours.append(driver_run(backend.host, backend.port, args.path, users=args.users,
                                           seconds=args.seconds, cpus=driver_cpus))
                    print(f"round {round_ + 1} harness: {ours[-1][0]:,.0f} req/s  p50 {ours[-1][1] / 1000:.3f} ms  "
                          f"driver CPU {ours[-1][2]:.0f}%", flush=True)
                else:
                    theirs.append(wrk_run(url, users=args.users, seconds=args.seconds, cpus=driver_cpus))
                    print(f"round {round_ + 1} wrk:     {theirs[-1][0]:,.0f} req/s  p50 {theirs[-1][1] / 1000:.3f} ms",
                          flush=True)
    finally:
        backend.stop()
    rps_ours, rps_wrk = median(r[0] for r in ours), median(r[0] for r in theirs)
    p50_ours, p50_wrk = median(r[1] for r in ours), median(r[1] for r in theirs)
    print(f"\n{args.backend} {args.path}, {args.users} users, median of {args.rounds} x {args.seconds:.0f}s, "
          f"server CPU {server_cpus}, driver CPU {driver_cpus}")
    print(f"req/s: harness {rps_ours:,.0f}  wrk {rps_wrk:,.0f}  ratio {rps_ours / rps_wrk:.3f}  "
          f"({'within' if abs(rps_ours / rps_wrk - 1) <= 0.05 else 'OUTSIDE'} 5%)")
    print(f"p50:   harness {p50_ours / 1000:.3f} ms  wrk {p50_wrk / 1000:.3f} ms  ratio {p50_ours / p50_wrk:.3f}  "
          f"({'within' if abs(p50_ours / p50_wrk - 1) <= 0.05 else 'OUTSIDE'} 5%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
