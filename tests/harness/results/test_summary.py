"""The summary of a run (issue 13): one repetition per row, the median by goodput, with its
own percentiles; errors and dropped summed, starved and steal the largest, flags the union;
lower-bound percentiles marked; results from before those keys read without a crash."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest

from harness.results.metrics import encode_histogram, new_histogram, percentiles
from harness.results.steps import FLAG_MEANINGS
from harness.results.figures import ServerFigures
from harness.results.model import steps_of
from harness.results.store import read_results
from harness.results.printed import summary_markdown, summary_table
from harness.results.summary import (COLUMN_NOTES, SummaryRow, LOWER_BOUND_SLACK, SUMMARY_COLUMNS, pick_repetition,
                                     summary_rows, write_summary_csv)
from support import FIXTURES, ROOT

NO_ERRORS = {"connect": 0, "timeout": 0, "reset": 0, "bad_status": 0}
# The keys a step carries since issue 13 (DriverResult version 3 and the orchestrator's sampling).
NEW_KEYS = ("good_requests", "good_rps", "answers_by_class", "failures", "error_share", "censored",
            "censored_min_us", "dropped", "dropped_max_us", "littles")


def step(backend: str = "threaded", users: int = 8, *, repetition: int = 0, rps: float = 1000.0,
         good_rps: float | None = None, p50: int = 100, p99: int | None = None,
         errors: dict | None = None, flags: tuple[str, ...] = (), status: str = "ok",
         censored: int = 0, censored_min_us: int | None = None, starved: int = 0, dropped: int | None = None,
         cpu_us: float | None = 50.0, steal: tuple[float | None, float | None] = (0.5, 1.0),
         rate: float | None = None, idle: int = 0, old: bool = False) -> dict[str, Any]:
    """A step record as results.json holds it after issue 13; old=True: as it was before
    (no goodput, censoring, dropped, CPU cost or steal)."""
    errors = {**NO_ERRORS, **(errors or {})}
    good_rps = rps if good_rps is None else good_rps
    record = {
        "backend": backend, "users": users, "repetition": repetition, "status": status,
        "error": None if status == "ok" else "boom", "requests": int(rps * 10), "duration_s": 10.0,
        "rps": rps, "good_requests": int(good_rps * 10), "good_rps": good_rps,
        "answers_by_class": {"2xx": int(good_rps * 10), "3xx": 0, "4xx": 0,
                             "5xx": int((rps - good_rps) * 10), "other": 0},
        "errors": errors, "failures": errors["connect"] + errors["timeout"] + errors["reset"],
        "error_share": 0.0,
        "p50_us": p50, "p90_us": p50 * 2, "p99_us": p50 * 4 if p99 is None else p99, "p999_us": p50 * 8,
        "max_us": p50 * 10, "mean_us": p50 * 1.2, "histogram": encode_histogram(new_histogram()),
        "timeseries": [], "censored": censored, "censored_min_us": censored_min_us,
        "dropped": dropped, "dropped_max_us": None, "starved_users": starved,
        "unfinished": 0, "unfinished_max_us": 0, "littles": None if rate else {
            "users": users, "predicted": float(users), "ratio": 1.0, "gap_us": 20.0, "cycle_us": 1000.0,
            "tolerance": 0.06},
        "server": {"cpu_percent": 99.0, "rss_bytes": 30_000_000, "pss_bytes": None, "cpu_seconds": 1.0,
                   "cpu_us_per_request": cpu_us, "steal_percent": steal[0]},
        "driver": {"cpu_percent": 50.0, "steal_percent": steal[1]},
        "flags": list(flags), "rate": rate, "uncorrected": None, "idle_connections": idle,
    }
    if old:
        for key in NEW_KEYS:
            record.pop(key)
        record["server"] = {"cpu_percent": 99.0, "rss_bytes": 30_000_000}
        record["driver"] = {"cpu_percent": 50.0}
    return record


def only_row(steps: list[dict[str, Any]]) -> SummaryRow:
    (row,) = summary_rows(steps)
    return row


def run(steps: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"scenario": {"name": "tiny"}, "metadata": {}, "steps": steps, "backends": {}, **extra}


def table_lines(results: dict[str, Any]) -> dict[str, list[str]]:
    """backend -> its row's cells (split on two or more spaces), from the printed table."""
    lines = summary_table(results).splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("backend")) + 2
    return {line.split()[0]: [c.strip() for c in line.split("  ") if c.strip()] for line in lines[start:]}


def csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open() as file:
        return list(csv.DictReader(file))


# --- the repetition a row is ---

def test_row_is_the_median_goodput_repetition_with_its_own_percentiles() -> None:
    # by rps the median is repetition 2 (1,500), by goodput repetition 1 (1,000 of 1,100)
    reps = [step(rps=2000, good_rps=900, p99=400),
            step(rps=1100, good_rps=1000, p99=9000, repetition=1, cpu_us=70.0),
            step(rps=1500, good_rps=1500, p99=300, repetition=2, cpu_us=40.0)]
    row = only_row(reps)
    assert (row.repetition, row.rps, row.good_rps) == (1, 1100, 1000)
    assert (row.p50_us, row.p99_us, row.cpu_us_per_request) == (100, 9000, 70.0)  # its own, not medians


def test_even_count_takes_the_lower_middle_repetition() -> None:
    reps = [step(good_rps=1000 + 100 * i, p99=400 + i, repetition=i) for i in (3, 0, 2, 1)]
    assert only_row(reps).repetition == 1 and only_row(reps).p99_us == 401
    (only,) = steps_of(reps[:1])
    assert pick_repetition([only]) is only


def test_older_steps_are_ranked_by_rps() -> None:
    reps = [step(rps=r, p99=r, repetition=i, old=True) for i, r in enumerate((900, 5000, 1000))]
    row = only_row(reps)
    assert (row.repetition, row.rps, row.p99_us, row.good_rps) == (2, 1000, 1000, None)


# --- what is summed, what is the largest ---

def test_errors_are_summed_over_repetitions_never_a_median() -> None:
    # issue 13's iterative: 7, 31 and 127 timeouts; the median repetition had 31
    reps = [step(good_rps=1000 + i, errors={"timeout": n}, repetition=i) for i, n in enumerate((7, 31, 127))]
    reps[2]["errors"]["bad_status"] = 5
    row = only_row(reps)
    assert row.errors == 7 + 31 + 127 + 5
    attempted = sum(r["requests"] for r in reps) + 7 + 31 + 127
    assert row.error_share == pytest.approx((7 + 31 + 127 + 5) / attempted)
    assert table_lines(run(reps))["threaded"][6] == "170"


def test_error_share_counts_refusals() -> None:
    # c10k's threaded: every answer a 503; it answered, so rps is high, goodput nothing
    refused = step(rps=1000, good_rps=0, errors={"bad_status": 10_000})
    row = only_row([refused])
    assert (row.rps, row.good_rps, row.error_share) == (1000, 0, 1.0)
    cells = table_lines(run([refused]))["threaded"]
    assert (cells[2], cells[3], cells[7]) == ("1,000", "0.0", "100.0%")


def test_starved_is_the_largest_over_repetitions() -> None:
    reps = [step(good_rps=1000 + i, starved=n, repetition=i) for i, n in enumerate((0, 64, 3))]
    assert only_row(reps).starved == 64  # the median repetition had 3


def test_dropped_is_summed_and_steal_is_the_largest_of_either_side() -> None:
    reps = [step(rate=500.0, dropped=10, steal=(0.5, 7.5)),
            step(rate=500.0, dropped=0, steal=(2.0, None), repetition=1),
            step(rate=500.0, dropped=5, steal=(None, None), repetition=2)]
    row = only_row(reps)
    assert (row.dropped, row.steal_pct) == (15, 7.5)


def test_flags_are_the_union() -> None:
    reps = [step(flags=("noisy",)), step(flags=("driver-bound", "littles-law"), repetition=1),
            step(flags=("noisy", "high-spread"), repetition=2)]
    row = only_row(reps)
    assert row.flags == ("driver-bound", "high-spread", "littles-law", "noisy") and row.driver_bound


@pytest.mark.parametrize("server, memory", [
    ({"rss_bytes": 7 * 2 ** 30, "pss_bytes": 50 * 2 ** 20}, 50 * 2 ** 20),  # forking's tree: PSS
    ({"rss_bytes": 30 * 2 ** 20, "pss_bytes": None}, 30 * 2 ** 20),  # one process: RSS
    ({"rss_bytes": 30 * 2 ** 20}, 30 * 2 ** 20),  # an older version's: rss_bytes meant this already
    ({}, None),
], ids=["tree-pss", "one-process-rss", "older", "unknown"])
def test_server_memory_is_pss_of_a_tree_else_rss(server: dict, memory: int | None) -> None:
    assert ServerFigures(**server).memory == memory


# --- lower bounds ---

def test_a_percentile_at_or_above_a_censored_wait_is_a_lower_bound() -> None:
    censored = step(p50=100, p99=5000, censored=12, censored_min_us=5000)
    row = only_row([censored])
    assert row.lower_bound == {"p50_us": False, "p90_us": False, "p99_us": True}
    cells = table_lines(run([censored]))["threaded"]
    assert cells[4:6] == ["0.10", ">=5.00"]
    assert ">= : a lower bound" in summary_table(run([censored]))


def measured(values: dict[int, int], censored: int, censored_min_us: int) -> dict[str, Any]:
    """A step whose histogram holds `values` (µs -> how many), the censored ones among them,
    with the percentiles it gives."""
    histogram = new_histogram()
    for value, count in values.items():
        histogram.record_value(value, count)
    figures = percentiles(histogram)
    return {**step(censored=censored, censored_min_us=censored_min_us), "histogram": encode_histogram(histogram),
            **{key: figures[key] for key in ("p50_us", "p90_us", "p99_us")}}


@pytest.mark.parametrize(("values", "censored", "censored_min", "bound"), [
    # 2,000 values, p50 at rank 1,000 = 1,000 µs; the censored ones, recorded at 10 µs, could
    # each rise past it and move it up one rank. 4 of them: to rank 1,004 = 1,010 µs, 1% higher.
    pytest.param({10: 4, 1000: 996, 1010: 4, 1011: 996}, 4, 10, False, id="can-move-it-1%-as-measured"),
    pytest.param({10: 5, 1000: 995, 1010: 4, 1011: 996}, 5, 10, True, id="can-move-it-past-1%-a-bound"),
    # the smallest censored wait above the percentile: rising, it cannot pass it
    pytest.param({1000: 1000, 1011: 5, 5000: 995}, 5, 1011, False, id="censored-above-it"),
    pytest.param({1000: 1000, 5000: 1000}, 5, 1000, True, id="censored-at-it"),
    # 2,000 waits at 1,000 µs: as many censored as values above the median leave 1,000 uncensored
    # ones at or below it; one more, and all above it could rise, with no end to it
    pytest.param({1000: 2000}, 1000, 1000, False, id="as-many-censored-as-values-above"),
    pytest.param({1000: 2000}, 1001, 1000, True, id="more-censored-than-values-above"),
])
def test_a_percentile_is_a_lower_bound_only_where_the_censored_reach_it(
        values: dict[int, int], censored: int, censored_min: int, bound: bool) -> None:
    assert LOWER_BOUND_SLACK == 0.01
    row = only_row([measured(values, censored, censored_min)])
    assert row.p50_us == 1000 and row.lower_bound["p50_us"] is bound


def test_four_unsent_requests_do_not_make_a_median_a_lower_bound() -> None:
    """The stored capacity run: threaded /sleep?ms=1 at 18,800/s, 4 censored of about 56,000
    (unsent slots at the window's end, the shortest 46 µs) once printed p50 ">=1.40"; c10k's
    iterative, whose waits are mostly censored, keeps its ">=" (the trimmed fixtures keep no
    histogram, so this is the full reference run)."""
    capacity = read_results(ROOT / "results" / "reference" / "20261130-154828-capacity")
    row = next(row for row in summary_rows(capacity["steps"])
               if row.backend == "threaded /sleep?ms=1" and row.rate == 18800)
    assert (row.censored, row.censored_min_us, row.p50_us) == (4, 46, 1402)
    assert not any(row.lower_bound.values())
    c10k = read_results(ROOT / "results" / "reference" / "20261130-125932-c10k")
    stalled = [row for row in summary_rows(c10k["steps"]) if row.backend == "iterative" and row.rate]
    assert stalled and all(all(row.lower_bound.values()) for row in stalled)


def test_censored_values_below_the_percentile_only_when_censored() -> None:
    clean = step(p50=100, p99=5000, censored=0, censored_min_us=None)
    assert only_row([clean]).lower_bound == {"p50_us": False, "p90_us": False, "p99_us": False}
    assert ">=" not in summary_table(run([clean]))


def test_the_marks_in_the_table_are_explained_above_it() -> None:
    results = run([step(flags=("noisy",), p99=9000, censored=1, censored_min_us=8000), step("asyncio")])
    text = summary_table(results).splitlines()
    header = next(i for i, line in enumerate(text) if line.startswith("backend"))
    assert text[2:header] == [
        ">= : a lower bound: the percentile reaches requests that timed out or were still waiting, counted at "
        "their wait so far", f"noisy: {FLAG_MEANINGS['noisy']}"]
    markdown = summary_markdown(results).splitlines()
    assert markdown[2:4] == ["- \\>= : a lower bound: the percentile reaches requests that timed out or were still "
                             "waiting, counted at their wait so far", f"- noisy: {FLAG_MEANINGS['noisy']}"]
    assert "high-spread" not in summary_table(results)  # only the flags the table shows


# --- older results ---

def test_older_steps_show_dashes_and_do_not_crash(tmp_path: Path) -> None:
    old = run([step(old=True, starved=2), step("asyncio", old=True)])
    del old["steps"][1]["starved_users"]
    cells = table_lines(old)
    assert cells["threaded"][3] == "-" and cells["threaded"][9:12] == ["-", "-", "-"]  # good, dropped, CPU, steal
    assert cells["asyncio"][8] == "-"  # no starved_users either
    row = csv_rows(write_summary_csv(tmp_path, old["steps"]))[0]
    assert row["good_rps"] == row["cpu_us_per_request"] == row["steal_pct"] == row["p99_lower_bound"] == ""
    assert row["rps"] == "1000" and row["starved"] == "2"


@pytest.mark.parametrize("run_dir", [FIXTURES / "runs" / "run-b",
                                     *sorted((ROOT / "results" / "reference").glob("*-c10k"))],
                         ids=lambda path: path.name)
def test_stored_old_schema_runs_summarise(run_dir: Path) -> None:
    results = read_results(run_dir)
    text, markdown = summary_table(results), summary_markdown(results)
    assert "req/s" in text and markdown.count("\n| ") == len(summary_rows(results["steps"])) + 1


# --- markdown ---

def test_markdown_is_a_github_table() -> None:
    results = run([step(p99=9000, censored=1, censored_min_us=8000), step("cmd:a|b", good_rps=900)],
                  backends={"forking": {"status": "failed", "error": "did not come up\nstderr..."}})
    lines = summary_markdown(results).splitlines()
    table = [line for line in lines if line.startswith("|")]
    assert table[0] == ("| backend | load | req/s | good req/s | p50 ms | p99 ms | errors | error share | starved"
                        " | dropped | CPU µs/req | steal % | flags |")
    assert table[1] == "|:---|:---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---|"
    assert table[2] == "| threaded | 8 users | 1,000 | 1,000 | 0.10 | >=9.00 | 0 | 0% | 0 | - | 50.0 | 1.0 |  |"
    assert table[3].startswith("| cmd:a\\|b | 8 users | 1,000 | 900 |")
    assert lines[0].startswith("*tiny: each row is the repetition with the median good req/s")
    assert lines[-1] == "- **forking**: FAILED: did not come up"


# --- summary.csv ---

def test_every_csv_column_is_documented() -> None:
    assert SUMMARY_COLUMNS == tuple(COLUMN_NOTES)
    assert {"rps", "good_rps", "errors", "error_share", "starved", "dropped", "cpu_us_per_request",
            "steal_pct", "flags", "p99_lower_bound", "censored", "repetition"} <= set(SUMMARY_COLUMNS)
    assert "median good_rps" in COLUMN_NOTES["repetition"]


def test_csv_row_holds_the_aggregation(tmp_path: Path) -> None:
    reps = [step(rps=1100, good_rps=1000, p99=9000, censored=3, censored_min_us=8000, starved=1,
                 errors={"timeout": 2}, flags=("noisy",), steal=(6.25, 0.5)),
            step(rps=900, good_rps=800, starved=4, errors={"reset": 1}, repetition=1),
            step(rps=2000, good_rps=1900, repetition=2, flags=("littles-law",))]
    (row,) = csv_rows(write_summary_csv(tmp_path, reps))
    assert row == {
        "backend": "threaded", "users": "8", "offered_rate": "", "idle_connections": "0", "reps": "3",
        "repetition": "0", "rps": "1100", "good_rps": "1000", "p50_us": "100", "p90_us": "200", "p99_us": "9000",
        "censored": "3", "p50_lower_bound": "false", "p90_lower_bound": "false", "p99_lower_bound": "true",
        "errors": "3", "error_share": f"{3 / (11000 + 9000 + 20000 + 3):.6f}".rstrip("0"), "starved": "4",
        "dropped": "", "cpu_us_per_request": "50", "steal_pct": "6.25", "driver_share_pct": "",
        "others_pct": "", "driver_bound": "false", "flags": "littles-law;noisy"}


CSV_ORDER_CASES = [
    ("failed-repetition-left-out",
     [step(rps=1000), step(rps=1, status="failed", repetition=1), step(rps=1200, repetition=2)],
     [("threaded", "8", "", "0", "2")]),
    ("backend-with-only-failures-has-no-row",
     [step("iterative", status="failed"), step("asyncio", rps=2000)],
     [("asyncio", "8", "", "0", "1")]),
    ("backends-in-run-order-users-ascending",
     [step("selectors", 64), step("selectors", 1), step("forking", 8), step("selectors", 8)],
     [("selectors", "1", "", "0", "1"), ("selectors", "8", "", "0", "1"), ("selectors", "64", "", "0", "1"),
      ("forking", "8", "", "0", "1")]),
    ("no-steps-header-only", [], []),
    ("open-loop-levels-after-closed-loop-by-rate",
     [step("asyncio", 32, rate=2000.0), step("asyncio", 8), step("asyncio", 32, rate=500.0)],
     [("asyncio", "8", "", "0", "1"), ("asyncio", "32", "500", "0", "1"), ("asyncio", "32", "2000", "0", "1")]),
    ("idle-levels-are-rows-of-their-own",
     [step("selectors", 8, idle=1000), step("selectors", 8)],
     [("selectors", "8", "", "0", "1"), ("selectors", "8", "", "1000", "1")]),
]


@pytest.mark.parametrize("steps, rows", [case[1:] for case in CSV_ORDER_CASES],
                         ids=[case[0] for case in CSV_ORDER_CASES])
def test_csv_rows_per_level_in_order(tmp_path: Path, steps: list[dict[str, Any]], rows: list[tuple]) -> None:
    path = write_summary_csv(tmp_path, steps)
    assert path == tmp_path / "summary.csv"
    assert path.read_text().splitlines()[0] == ",".join(SUMMARY_COLUMNS)
    assert [(r["backend"], r["users"], r["offered_rate"], r["idle_connections"], r["reps"])
            for r in csv_rows(path)] == rows


@pytest.mark.parametrize(("shares", "shown"), [
    pytest.param((2.5, 3.4), "shared-cpu (driver 3.4%)", id="a small share"),
    pytest.param((2.5, 7.0), "shared-cpu (driver 7.0%: may be low)", id="over 5%: may be low"),
])
def test_a_shared_cpu_row_shows_the_drivers_largest_share(tmp_path: Path, shares: tuple, shown: str) -> None:
    reps = [step(flags=("shared-cpu",), repetition=i) for i in range(len(shares))]
    for rep, share in zip(reps, shares):
        rep["driver"]["share_of_server_percent"] = share
    (row,) = summary_rows(reps)
    assert row.driver_share_pct == max(shares)
    assert shown in summary_table(run(reps))
    assert "shared-cpu: the server's CPUs included a driver CPU" in summary_table(run(reps))  # the legend
    (csv_row,) = csv_rows(write_summary_csv(tmp_path, reps))
    assert csv_row["driver_share_pct"] == f"{max(shares):g}" and csv_row["flags"] == "shared-cpu"
