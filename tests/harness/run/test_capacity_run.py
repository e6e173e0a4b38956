"""A rate search end to end: real backends, a real driver per probe, the capacity found,
repeated in rounds, printed, stored, charted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.results.capacity import backoff_rate, capacities
from harness.results.model import Run
from test_runner import concurbench, only_run_dir

pytestmark = pytest.mark.timeout(120)

# Small enough to be quick (a driver process per probe is most of it): selectors holds 800
# req/s of GET / easily, so its search ramps 50, 200, 800 and ends above the range; iterative,
# with 4 keep-alive connections, serves one and starves three, so it misses at the lowest
# rate. /sleep?ms=40 over 4 connections cannot pass 100 req/s (4 / 40 ms): selectors' search
# there ramps 50, 200 (a miss) and must end at or below 100 (141 misses by 41%: in 0.7 s the
# queue grows ~29 requests deep, ~280 ms). One round measures each rate found and 80% of it.
SEARCH = """
description = "tiny capacity search"
[load]
slo = { p99_ms = 50, error_share = 0.01 }
rate = { search = [50, 800], precision = 0.5, budget = "15s" }
mix = "each"
connections = 4
duration = "0.5s"
warmup = "0.2s"
repeat = 1
timeout = "2s"
[[request]]
path = "/"
[[request]]
path = "/sleep?ms=40"
[backends]
boom = "python3 -c 'import sys; sys.exit(\\"boom on {port}\\")'"
"""


def test_a_search_finds_each_backends_capacity_per_request_then_repeats_it(tmp_path: Path) -> None:
    scenario = tmp_path / "search.toml"
    scenario.write_text(SEARCH)
    out = tmp_path / "runs"
    done = concurbench("run", "--scenario", str(scenario), "--backend", "selectors,iterative,boom", "--out", str(out), "--trust-scenario")
    assert done.returncode == 1, done.stderr  # boom did not start: recorded, and the run went on
    assert "1 of 3 backend(s) failed: boom" in done.stderr
    run_dir = only_run_dir(out)
    results = json.loads((run_dir / "results.json").read_text())
    found = {row.series: row for row in capacities(Run.of(results))}
    assert set(found) == {"selectors /", "selectors /sleep?ms=40", "iterative /", "iterative /sleep?ms=40",
                          "boom /", "boom /sleep?ms=40"}
    assert found["boom /"].status == found["boom /sleep?ms=40"].status == "failed"
    assert results["backends"]["boom"]["status"] == "failed" and results["backends"]["boom"]["round"] == "search"

    hello = found["selectors /"]
    assert (hello.status, hello.found) == ("above-range", 800)
    assert [p["rate"] for p in results["capacity"]["selectors /"]["path"]] == [50, 200, 800]
    sleep = found["selectors /sleep?ms=40"]
    assert sleep.status == "found" and 50 <= sleep.found <= 100  # 4 connections / 40 ms = 100 req/s
    assert sleep.missed is not None and sleep.missed > sleep.found
    for row in (hello, sleep):  # the rounds measured the rate found and 80% of it, and their cost
        assert row.at_found.rounds == row.at_backoff.rounds == 1
        assert row.at_backoff.rate == backoff_rate(row.found)
        assert row.told.cpu_us_per_request is not None  # measured (a short window may read 0 CPU ticks)
    assert hello.rate in (800, backoff_rate(800))
    assert found["iterative /"].status == "below-range" and found["iterative /"].found is None
    assert found["iterative /"].told is None

    steps = results["steps"]
    assert {(s["backend"], s["route"], s["rate"]) for s in steps} == {
        ("selectors", "/", 800), ("selectors", "/", backoff_rate(800)),
        ("selectors", "/sleep?ms=40", sleep.found), ("selectors", "/sleep?ms=40", backoff_rate(sleep.found))}
    assert [s["repetition"] for s in steps] == [0, 0, 0, 0]
    assert results["metadata"]["order"][:2] == [{"backend": "selectors", "round": "search"},
                                                {"backend": "iterative", "round": "search"}]
    assert results["backends"]["iterative"]["status"] == "ok"  # it ran; it held nothing
    kinds = [f["kind"] for f in results["findings"]]
    assert kinds.count("capacity") == 6
    assert "capacity within p99 <= 50 ms" in done.stdout
    assert "selectors /sleep?ms=40" in done.stdout and "holds" in done.stdout
    assert (run_dir / "charts" / "capacity.png").exists() and (run_dir / "charts" / "capacity_search.png").exists()
