"""A rate search end to end: real backends, a real driver per probe, the capacity found,
repeated in rounds, printed, stored, charted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.results.capacity import backoff_rate, capacities
from test_harness_run import concurbench, only_run_dir

pytestmark = pytest.mark.timeout(120)

# Small enough to be quick: selectors holds 3,200 req/s of GET / easily, so its search ramps
# 200, 800, 3,200 and ends above the range; iterative, with 4 keep-alive connections, serves
# one and starves three, so it misses at the lowest rate. /sleep?ms=20 over 4 connections
# cannot pass 200 req/s (4 / 20 ms): selectors' search there must end between 200 and 3,200.
SEARCH = """
description = "tiny capacity search"
[load]
slo = { p99_ms = 50, error_share = 0.01 }
rate = { search = [50, 3200], precision = 0.5, budget = "15s" }
mix = "each"
connections = 4
duration = "0.6s"
warmup = "0.3s"
repeat = 2
timeout = "2s"
[[request]]
path = "/"
[[request]]
path = "/sleep?ms=20"
"""


def test_a_search_finds_each_backends_capacity_per_request_then_repeats_it(tmp_path: Path) -> None:
    scenario = tmp_path / "search.toml"
    scenario.write_text(SEARCH)
    out = tmp_path / "runs"
    done = concurbench("run", "--scenario", str(scenario), "--backend", "selectors,iterative", "--out", str(out))
    assert done.returncode == 0, done.stderr
    run_dir = only_run_dir(out)
    results = json.loads((run_dir / "results.json").read_text())
    found = {row.series: row for row in capacities(results)}
    assert set(found) == {"selectors /", "selectors /sleep?ms=20", "iterative /", "iterative /sleep?ms=20"}

    hello = found["selectors /"]
    assert (hello.status, hello.found) == ("above-range", 3200)
    assert [p["rate"] for p in results["capacity"]["selectors /"]["path"]] == [50, 200, 800, 3200]
    sleep = found["selectors /sleep?ms=20"]
    assert sleep.status in ("found", "budget") and 50 <= sleep.found < 250  # 4 connections / 20 ms = 200 req/s
    assert sleep.missed is not None and sleep.missed > sleep.found
    for row in (hello, sleep):  # the rounds measured the rate found and 80% of it, and their cost
        assert row.at_found.rounds == row.at_backoff.rounds == 2
        assert row.at_backoff.rate == backoff_rate(row.found)
        assert row.told.cpu_us_per_request > 0
    assert hello.rate in (3200, backoff_rate(3200))
    assert found["iterative /"].status == "below-range" and found["iterative /"].found is None
    assert found["iterative /"].told is None

    steps = results["steps"]
    assert {(s["backend"], s["route"], s["rate"]) for s in steps} == {
        ("selectors", "/", 3200), ("selectors", "/", backoff_rate(3200)),
        ("selectors", "/sleep?ms=20", sleep.found), ("selectors", "/sleep?ms=20", backoff_rate(sleep.found))}
    assert sorted(s["repetition"] for s in steps) == [0, 0, 0, 0, 1, 1, 1, 1]
    assert results["metadata"]["order"][:2] == [{"backend": "selectors", "round": "search"},
                                                {"backend": "iterative", "round": "search"}]
    assert results["backends"]["iterative"]["status"] == "ok"  # it ran; it held nothing
    kinds = [f["kind"] for f in results["findings"]]
    assert kinds.count("capacity") == 4
    assert "capacity within p99 <= 50 ms" in done.stdout
    assert "selectors /sleep?ms=20" in done.stdout and "holds" in done.stdout
    assert (run_dir / "charts" / "capacity.png").exists() and (run_dir / "charts" / "capacity_search.png").exists()
