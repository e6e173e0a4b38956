"""compare: ratios against the first run with their confidence intervals, verdicts that call
noise noise, a refusal to mix machines or scenarios unless forced, and the text table.

Fixture run-b was made with asyncio 15% faster and selectors 7% slower than run-a, forking
failed, and the rest unchanged; run-c comes from another machine.
"""

from __future__ import annotations

import math
import random
import shutil
import statistics
import struct
from pathlib import Path

import pytest

from harness.charts.compare import NOT_SIGNIFICANT, CompareError, compare
from harness.charts.compare_formats import compare_runs
from harness.charts.compare_stats import ratio_interval
from harness.results.store import read_results, write_results
from support import FIXTURES

RUNS = FIXTURES / "runs"
RUN_A, RUN_B, RUN_C = RUNS / "run-a", RUNS / "run-b", RUNS / "run-c"


def table_rows(output: str, title: str = "throughput") -> dict[tuple[str, int], list[str]]:
    """(backend, users) -> the row's cells after the load column, from the table under the
    line starting with title."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(title))
    start = next(i for i in range(start, len(lines)) if lines[i].startswith("backend")) + 2
    rows = {}
    for line in lines[start:]:
        if not line.strip():
            break
        cells = [cell for cell in line.split("  ") if cell.strip()]
        rows[cells[0].strip(), int(cells[1].split()[0])] = [cell.strip() for cell in cells[2:]]
    return rows


def geometric_mean(values: list[float]) -> float:
    """What compare prints for a run: the geometric mean of log(1 + x), as its docstring says."""
    return math.expm1(statistics.fmean(math.log1p(v) for v in values))


def level_values(run: Path, backend: str, users: int, key: str) -> list[float]:
    return [s[key] for s in read_results(run)["steps"] if s["backend"] == backend and s["users"] == users]


@pytest.fixture(scope="module")
def a_vs_b() -> str:
    return compare_runs([RUN_A, RUN_B])


@pytest.mark.parametrize("backend, verdict", [
    ("asyncio", "faster"),
    ("selectors", "slower"),
    ("iterative", NOT_SIGNIFICANT),
    ("forking", "failed in run-b"),
])
def test_verdict_per_backend(a_vs_b: str, backend: str, verdict: str) -> None:
    rows = table_rows(a_vs_b)
    for users in (1, 8, 32):
        assert rows[backend, users][-1].endswith(verdict), rows[backend, users]


def test_ratio_and_interval_are_against_the_first_run(a_vs_b: str) -> None:
    rps_a, rps_b = (level_values(run, "asyncio", 8, "rps") for run in (RUN_A, RUN_B))
    a_cell, b_cell, ratio, interval, verdict = table_rows(a_vs_b)["asyncio", 8]
    mean_a, mean_b = geometric_mean(rps_a), geometric_mean(rps_b)
    assert (a_cell, b_cell) == (f"{mean_a:,.0f}", f"{mean_b:,.0f}")
    assert ratio == f"{mean_b / mean_a:.2f}x" and verdict == f"{mean_b / mean_a:.2f}x faster"
    low, high = (float(x) for x in interval.split("–"))
    assert 1 < low < mean_b / mean_a < high  # significant: the interval excludes 1


def test_p99_gets_a_table_of_its_own(a_vs_b: str) -> None:
    rows = table_rows(a_vs_b, "p99")
    p99_a, p99_b = (level_values(run, "asyncio", 32, "p99_us") for run in (RUN_A, RUN_B))
    a_cell, b_cell, ratio, _, verdict = rows["asyncio", 32]
    assert (a_cell, b_cell) == (f"{geometric_mean(p99_a) / 1000:.2f}", f"{geometric_mean(p99_b) / 1000:.2f}")
    assert verdict.endswith("x lower")  # faster asyncio: a shorter tail
    assert rows["forking", 8][-1] == "failed in run-b" and rows["iterative", 32][-1] == NOT_SIGNIFICANT


def test_a_noisy_step_is_not_significant_despite_its_ratio(a_vs_b: str) -> None:
    # threaded at 32 users has a high spread in both runs: an 11% drop that is only noise
    _, _, ratio, interval, verdict = table_rows(a_vs_b)["threaded", 32]
    low, high = (float(x) for x in interval.split("–"))
    assert float(ratio[:-1]) < 0.9 and low < 1 < high and verdict == NOT_SIGNIFICANT


def test_header_names_the_runs_and_the_test(a_vs_b: str) -> None:
    assert "run-a (base):" in a_vs_b and "run-b:" in a_vs_b
    assert "scipy.stats.ttest_ind" in a_vs_b and "95% CI" in a_vs_b


@pytest.mark.parametrize("base, other, significant, low_above_1", [
    ([100, 101, 99], [100, 101, 99], False, False),
    ([100, 101, 99], [120, 121, 119], True, True),
    ([100, 120, 80], [110, 130, 90], False, False),  # a 10% shift inside 20% noise
    ([100, 100, 100], [100, 100, 100], False, False),
    ([100, 100, 100], [101, 101, 101], True, True),  # no noise at all: any shift is real
    ([7000, 7100, 6900], [0, 0, 0], True, False),  # stalled: down to 0, still a ratio
    ([100], [200], None, False),  # one repetition cannot be tested
    ([100, 102], [150], None, False),
    ([1000, 1000, 1000], [1000, 1001, 1000], False, False),  # one side flat: scipy would warn
], ids=["same", "shifted", "noisy", "identical", "exact-shift", "stalled", "one-rep", "one-side", "one-flat"])
@pytest.mark.filterwarnings("error")  # a warning on the compare gate's output is a defect
def test_ratio_interval(base: list[float], other: list[float], significant: bool | None,
                        low_above_1: bool) -> None:
    ratio = ratio_interval(base, other)
    assert ratio.significant is significant
    if significant is not None:
        assert ratio.low <= ratio.value <= ratio.high  # type: ignore[operator]
        assert (ratio.low > 1) is low_above_1  # type: ignore[operator]
    # of log(1 + x), so that a stalled side has a logarithm: the 1 is noise beside real req/s
    assert ratio.value == pytest.approx((1 + geometric_mean(other)) / (1 + geometric_mean(base)))


def test_the_interval_is_wrong_about_5_percent_of_the_time() -> None:
    """3 against 3 repetitions of the same server (10% noise): 95% intervals should miss 1
    about 5% of the time; a test on too many or too few degrees of freedom would not."""
    rng = random.Random(15)
    misses = sum(bool(ratio_interval([rng.lognormvariate(9, 0.1) for _ in range(3)],
                                     [rng.lognormvariate(9, 0.1) for _ in range(3)]).significant)
                 for _ in range(1000))
    assert 20 <= misses <= 75  # Welch's estimated df make it a little conservative: 3 to 5%
    shifted = sum(bool(ratio_interval([rng.lognormvariate(9, 0.02) for _ in range(3)],
                                      [rng.lognormvariate(9 + math.log(0.8), 0.02) for _ in range(3)]).significant)
                  for _ in range(200))
    assert shifted >= 195  # a 20% drop in 2% noise is found every time


def test_same_runs_same_verdict() -> None:
    assert compare_runs([RUN_A, RUN_B], format="json") == compare_runs([RUN_A, RUN_B], format="json")


def test_refuses_runs_from_different_machines() -> None:
    with pytest.raises(CompareError, match="different machines") as caught:
        compare_runs([RUN_A, RUN_C])
    assert "bench-2" in str(caught.value) and "force" in str(caught.value)


def test_forced_comparison_of_different_machines_warns() -> None:
    output = compare_runs([RUN_A, RUN_C], force=True)
    assert "WARNING (forced)" in output and len(table_rows(output)) == 15 and len(table_rows(output, "p99")) == 15


@pytest.mark.parametrize("change, message", [
    ({"name": "close"}, "ran scenario 'close'"),
    ({"sha256": "0" * 64}, "different scenario files"),
], ids=["other-scenario", "edited-scenario-file"])
def test_refuses_runs_of_different_scenarios(tmp_path: Path, change: dict[str, str], message: str) -> None:
    results = read_results(RUN_B)
    if "name" in change:
        results["scenario"]["name"] = change["name"]
    else:
        results["metadata"]["scenario"]["sha256"] = change["sha256"]
    results.pop("version")
    other = tmp_path / "run-x"
    other.mkdir()
    write_results(other, results)
    with pytest.raises(CompareError, match=message):
        compare_runs([RUN_A, other])
    assert "WARNING (forced)" in compare_runs([RUN_A, other], force=True)


def test_needs_two_runs() -> None:
    with pytest.raises(CompareError, match="at least two"):
        compare([RUN_A])


def test_three_runs_get_a_column_group_each() -> None:
    output = compare_runs([RUN_A, RUN_B, RUN_C], force=True)
    assert len(table_rows(output)["asyncio", 1]) == 1 + 4 + 4


def test_overlay_charts_one_per_backend(tmp_path: Path) -> None:
    output = compare_runs([RUN_A, RUN_B], chart_dir=tmp_path)
    names = sorted(p.name for p in tmp_path.iterdir())
    backends = ("asyncio", "forking", "iterative", "selectors", "threaded")
    assert names == sorted(f"compare_{b}.{ext}" for b in backends for ext in ("png", "svg"))
    data = (tmp_path / "compare_asyncio.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", data[16:24])[0] == 800
    svg = (tmp_path / "compare_forking.svg").read_text()
    assert "run-a" in svg and "failed, not drawn: run-b" in svg
    assert "overlay charts: 5" in output


def test_results_directory_or_file_both_work(tmp_path: Path) -> None:
    output = compare_runs([RUN_A / "results.json", RUN_B])
    assert table_rows(output)["asyncio", 1][-1].endswith("faster")
    copy = tmp_path / "run-a"
    shutil.copytree(RUN_A, copy)
    assert str(copy) in compare_runs([RUN_A, copy])  # same names: labels become paths
