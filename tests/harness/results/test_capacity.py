"""Capacity from a stored rate search (a real tiny run: selectors and iterative, on / and on
/sleep?ms=1, 2 rounds): the figures, the table, the findings, the chart and the report."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from harness.charts.capacity import capacity_html, draw_capacity
from harness.results.capacity import capacities, capacity_findings, capacity_table
from harness.results.findings import findings

FIXTURE = Path(__file__).parents[2] / "fixtures" / "runs" / "capacity-tiny" / "results.json"


@pytest.fixture()
def results() -> dict:
    return json.loads(FIXTURE.read_text())


def test_each_search_gives_its_capacity_and_the_rounds_at_it(results: dict) -> None:
    rows = {row.series: row for row in capacities(results)}
    assert list(rows) == ["selectors /", "selectors /sleep?ms=1", "iterative /", "iterative /sleep?ms=1"]
    sleep = rows["selectors /sleep?ms=1"]
    assert (sleep.status, sleep.rate, sleep.missed, sleep.probes) == ("found", 10800, 12800, 7)
    assert (sleep.held, sleep.rounds, sleep.confirmed) == (2, 2, True)
    assert sleep.cpu_us_per_request == pytest.approx(17.4, abs=0.1)  # the median of the rounds' 20.0 and 14.7
    assert sleep.note == ""
    hello = rows["selectors /"]
    assert (hello.status, hello.rate, hello.missed) == ("above-range", 20000, None)
    assert hello.note == "above the range searched: a floor"
    iterative = rows["iterative /"]
    assert (iterative.status, iterative.rate, iterative.rounds, iterative.probes) == ("below-range", None, 0, 1)


def test_a_rate_not_held_in_most_rounds_says_so(results: dict) -> None:
    changed = copy.deepcopy(results)
    round_ = next(s for s in changed["steps"] if s["route"] == "/sleep?ms=1")
    round_["p99_us"] = 25_000  # over the 10 ms objective
    sleep = {row.series: row for row in capacities(changed)}["selectors /sleep?ms=1"]
    assert (sleep.held, sleep.rounds, sleep.confirmed) == (1, 2, False)
    assert sleep.note == "held in only 1 of 2 rounds"
    assert "held in 1 of 2 rounds" in next(f["text"] for f in capacity_findings(changed)
                                           if f["backend"] == "selectors /sleep?ms=1")


def test_the_table_prints_every_search(results: dict) -> None:
    table = capacity_table(results)
    assert "capacity within p99 <= 10 ms, errors <= 0.1%" in table
    line = next(line for line in table.splitlines() if line.startswith("selectors /sleep?ms=1"))
    assert line.split()[2:5] == ["10,800", "2/2", "8.54"]
    assert "missed at the lowest rate searched" in next(line for line in table.splitlines()
                                                        if line.startswith("iterative /sleep"))
    assert capacity_table({"steps": []}) == ""


def test_findings_say_each_capacity_with_its_cost_first(results: dict) -> None:
    found = findings(results)
    capacity = [f for f in found if f["kind"] == "capacity"]
    assert found[:4] == capacity
    texts = {f["backend"]: f["text"] for f in capacity}
    assert texts["selectors /sleep?ms=1"] == (
        "selectors /sleep?ms=1 holds 10,800 req/s within p99 <= 10 ms, errors <= 0.1% (held in 2 of 2 rounds, "
        "at 17 µs of server CPU per request); 12,800 req/s missed")
    assert texts["selectors /"].startswith("selectors / holds at least 20,000 req/s")
    assert "capacity is above the range" in texts["selectors /"]
    assert texts["iterative /"] == ("iterative / holds no rate within p99 <= 10 ms, errors <= 0.1%: it missed at "
                                    "the lowest rate searched, 200 req/s")
    assert json.loads(json.dumps(capacity)) == capacity
    assert capacity_findings({"steps": []}) == []


def test_the_chart_and_the_report_section(results: dict, tmp_path: Path) -> None:
    paths = draw_capacity(results, tmp_path)
    assert sorted(p.name for p in paths) == ["capacity.png", "capacity.svg", "capacity_search.png",
                                             "capacity_search.svg"]
    svg = (tmp_path / "capacity.svg").read_text()
    assert "20,000+ · 16 µs CPU/req" in svg and "10,800 · 17 µs CPU/req" in svg  # the floor is marked +
    assert "missed at the lowest rate" in svg
    assert draw_capacity({"steps": []}, tmp_path / "none") == []
    section = capacity_html(results)
    assert "<h2>Capacity within p99 &lt;= 10 ms, errors &lt;= 0.1%</h2>" in section
    assert "200 ✓ → 800 ✓ → 3,200 ✓ → 12,800 ✗ → 6,400 ✓ → 9,050 ✓ → 10,800 ✓" in section
    assert capacity_html({"steps": []}) == ""
