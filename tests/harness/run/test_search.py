"""The rate search as a state machine: which rate it probes next, and where it stops."""

from __future__ import annotations

import pytest

from harness.results.capacity import judge
from harness.run.search import RAMP, Search
from harness.scenario.load import RateSearch, Slo

SLO = Slo(p99_ms=10, error_share=0.001)


def step(rate: float, p99_ms: float | None = 1.0, *, errors: float = 0.0, flags: tuple[str, ...] = ()) -> dict:
    """A probe's step record, with what the search reads."""
    return {"rate": rate, "p99_us": None if p99_ms is None else p99_ms * 1000, "error_share": errors,
            "good_rps": rate, "server": {"cpu_us_per_request": 20.0}, "flags": list(flags)}


def run_search(capacity: float, *, low: float = 100, high: float = 200_000, precision: float = 0.1,
               budget_s: float = 1000, probe_s: float = 1, bound_above: float | None = None) -> Search:
    """Search a made-up server that holds every rate up to `capacity`; its driver is at its
    limit above `bound_above`, and then falls behind: late sends count as latency, a miss."""
    search = Search(RateSearch(low, high, precision, budget_s), SLO, probe_s=probe_s)
    elapsed = 0.0
    while (rate := search.next_rate(elapsed)) is not None:
        bound = bound_above is not None and rate > bound_above
        held = rate <= capacity and not bound
        search.record(step(rate, 1.0 if held else 50.0, flags=("driver-bound",) if bound else ()))
        elapsed += probe_s
    return search


def test_ramps_by_four_then_bisects_geometrically_to_the_precision() -> None:
    search = run_search(5000)
    rates = [probe.rate for probe in search.probes]
    assert rates[:4] == [100, 100 * RAMP, 100 * RAMP ** 2, 100 * RAMP ** 3]  # 100, 400, 1600, 6400 (missed)
    assert rates[4] == pytest.approx((1600 * 6400) ** 0.5, rel=0.01)  # 3200: the geometric middle
    assert search.status == "found"
    assert search.passed <= 5000 < search.missed
    assert search.missed <= search.passed * 1.1  # within the precision asked
    assert len(rates) <= 10


@pytest.mark.parametrize("capacity", [150, 999, 12_345, 150_000])
def test_the_bracket_always_holds_the_true_capacity(capacity: float) -> None:
    search = run_search(capacity)
    assert search.status == "found"
    assert search.passed <= capacity < search.missed <= search.passed * 1.1


def test_a_miss_at_the_lowest_rate_ends_below_the_range() -> None:
    search = run_search(50)
    assert [p.rate for p in search.probes] == [100]
    assert (search.status, search.passed) == ("below-range", None)


def test_holding_the_highest_rate_ends_above_the_range() -> None:
    search = run_search(1e9, high=1000)
    assert [p.rate for p in search.probes] == [100, 400, 1000]
    assert (search.status, search.passed, search.missed) == ("above-range", 1000, None)


def test_the_budget_ends_a_search_before_a_probe_would_overrun_it() -> None:
    search = run_search(5000, budget_s=4.5, probe_s=1)  # room for 4 probes, not a 5th
    assert len(search.probes) == 4
    assert search.status == "budget"
    assert (search.passed, search.missed) == (1600, 6400)  # the bracket is wider than asked, and says so


def test_a_bracket_closed_by_a_driver_bound_miss_is_a_floor() -> None:
    search = run_search(1e9, bound_above=3000)  # the driver falls behind above 3,000 req/s; the server never
    assert search.status == "driver-bound"
    assert search.passed <= 3000 < search.missed <= search.passed * 1.1  # the search narrowed below the driver's limit
    assert search.next_rate(0) is None


def test_a_driver_bound_miss_above_a_real_one_does_not_make_a_floor() -> None:
    search = run_search(2500, bound_above=6000)  # 6,400 missed with the driver at its limit; 3,200 missed for real
    assert search.status == "found"
    assert search.passed <= 2500 < search.missed <= search.passed * 1.1


def test_a_driver_bound_probe_that_holds_still_holds() -> None:
    search = Search(RateSearch(100, 1000, 0.1, 100), SLO, probe_s=1)
    search.record(step(search.next_rate(0), 1.0, flags=("driver-bound",)))  # the driver at its limit kept up
    assert search.passed == 100 and search.next_rate(1) == 400


def test_rates_are_written_with_three_figures_and_the_path_is_recorded() -> None:
    search = run_search(5000)
    assert all(probe.rate == float(f"{probe.rate:.3g}") for probe in search.probes)
    recorded = search.to_dict()
    assert recorded["status"] == "found" and recorded["slo"] == {"p99_ms": 10, "error_share": 0.001}
    assert [p["rate"] for p in recorded["path"]] == [p.rate for p in search.probes]
    assert recorded["path"][0]["passed"] is True and recorded["path"][3]["why"] == "p99 50 ms > 10 ms"


@pytest.mark.parametrize("record, held, why", [
    (step(100, 9.99), True, "within the objective"),
    (step(100, 10.01), False, "p99 10 ms > 10 ms"),
    (step(100, 1, errors=0.002), False, "errors 0.20% > 0.10%"),
    (step(100, 30, errors=0.5), False, "p99 30 ms > 10 ms and errors 50.00% > 0.10%"),
    (step(100, None), False, "no answer in the window"),
])
def test_judge_holds_a_window_to_p99_and_error_share(record: dict, held: bool, why: str) -> None:
    assert judge(record, 10, 0.001) == (held, why)


@pytest.mark.parametrize("low, high", [(12_345, 123_456), (100, 123_456), (99.99, 100_001)])
def test_a_range_with_more_figures_than_a_rate_is_written_with_still_ends_cleanly(low: float, high: float) -> None:
    above = run_search(1e9, low=low, high=high)
    assert above.status == "above-range" and above.passed == float(f"{high:.3g}") and above.missed is None
    below = run_search(0, low=low, high=high)
    assert below.status == "below-range" and [p.rate for p in below.probes] == [float(f"{low:.3g}")]
    found = run_search(high / 3, low=low, high=high)
    assert found.status == "found" and found.passed <= high / 3 < found.missed


def test_a_budget_shorter_than_one_probe_still_probes_once() -> None:
    search = run_search(5000, budget_s=0.5, probe_s=1)
    assert [p.rate for p in search.probes] == [100] and search.status == "budget"
