"""The run's latency floor: the real driver at 1 user against a real do-nothing server."""

from __future__ import annotations

import pytest

from harness.results.summary import floor_line
from harness.run.options import default_pinning
from harness.run.floor import measure_floor


@pytest.mark.timeout(60)
def test_the_floor_is_a_loopback_round_trip_measured_by_the_driver() -> None:
    server, driver = default_pinning()
    floor = measure_floor(server_cpus=server, driver_cpus=driver, seconds=0.5)
    # A loopback round trip through the kernel: tens of microseconds, not milliseconds (a
    # broken responder or driver would show 0, None or a timeout's seconds).
    assert 5 <= floor["p50_us"] <= floor["p99_us"] < 20_000
    assert floor["rps"] > 200  # one user, no model: thousands a second on any machine
    assert floor["gap_us"] is not None and 0 <= floor["gap_us"] < floor["p50_us"]
    line = floor_line(floor)
    assert f"p50 {floor['p50_us']} µs" in line and "does nothing" in line


def test_a_run_without_a_floor_says_so() -> None:
    assert floor_line(None) == "latency floor: not measured"
