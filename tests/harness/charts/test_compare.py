"""compare: ratios against the first run, verdicts that call noise noise, and a refusal to
mix machines or scenarios unless forced.

Fixture run-b was made with asyncio 15% faster and selectors 7% slower than run-a, forking
failed, and the rest unchanged; run-c comes from another machine.
"""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import pytest

from harness.charts.compare import (NOT_SIGNIFICANT, CompareError, compare_runs, t_critical_95,
                             welch_significant)
from harness.results.store import read_results, write_results
from support import FIXTURES

RUNS = FIXTURES / "runs"
RUN_A, RUN_B, RUN_C = RUNS / "run-a", RUNS / "run-b", RUNS / "run-c"


def table_rows(output: str) -> dict[tuple[str, int], list[str]]:
    """(backend, users) -> the row's cells after the users column, from the printed table."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("backend")) + 2
    rows = {}
    for line in lines[start:]:
        if not line.strip():
            break
        cells = [cell for cell in line.split("  ") if cell.strip()]
        rows[cells[0].strip(), int(cells[1])] = [cell.strip() for cell in cells[2:]]
    return rows


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


def test_ratio_is_against_the_first_run(a_vs_b: str) -> None:
    a, b = read_results(RUN_A), read_results(RUN_B)
    rps_a = sorted(s["rps"] for s in a["steps"] if s["backend"] == "asyncio" and s["users"] == 8)[1]
    rps_b = sorted(s["rps"] for s in b["steps"] if s["backend"] == "asyncio" and s["users"] == 8)[1]
    a_cell, b_cell, ratio, verdict = table_rows(a_vs_b)["asyncio", 8]
    assert (a_cell, b_cell) == (f"{rps_a:,.0f}", f"{rps_b:,.0f}")
    assert ratio == f"{rps_b / rps_a:.2f}x"
    assert verdict == f"{rps_b / rps_a:.2f}x faster"


def test_a_noisy_step_is_not_significant_despite_its_ratio(a_vs_b: str) -> None:
    # threaded at 32 users has a high spread in both runs: a 12% drop that is only noise
    _, _, ratio, verdict = table_rows(a_vs_b)["threaded", 32]
    assert ratio != "1.00x" and verdict == NOT_SIGNIFICANT


def test_header_names_the_runs_and_the_test(a_vs_b: str) -> None:
    assert "run-a:" in a_vs_b and "run-b:" in a_vs_b and "Welch" in a_vs_b


def test_refuses_runs_from_different_machines() -> None:
    with pytest.raises(CompareError, match="different machines") as caught:
        compare_runs([RUN_A, RUN_C])
    assert "bench-2" in str(caught.value) and "force" in str(caught.value)


def test_forced_comparison_of_different_machines_warns() -> None:
    output = compare_runs([RUN_A, RUN_C], force=True)
    assert "WARNING (forced)" in output and len(table_rows(output)) == 15


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
        compare_runs([RUN_A])


def test_three_runs_get_a_column_group_each() -> None:
    output = compare_runs([RUN_A, RUN_B, RUN_C], force=True)
    assert len(table_rows(output)["asyncio", 1]) == 1 + 3 + 3


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


@pytest.mark.parametrize("a, b, expected", [
    ([100, 101, 99], [100, 101, 99], False),
    ([100, 101, 99], [120, 121, 119], True),
    ([100, 120, 80], [110, 130, 90], False),  # a 10% shift inside 20% noise
    ([100, 100, 100], [100, 100, 100], False),
    ([100, 100, 100], [101, 101, 101], True),  # no noise at all: any shift is real
    ([100], [200], None),  # one repetition cannot be tested
    ([100, 101], [], None),
], ids=["same", "shifted", "noisy", "identical", "exact-shift", "one-rep", "missing"])
def test_welch_significance(a: list[float], b: list[float], expected: bool | None) -> None:
    assert welch_significant(a, b) is expected


@pytest.mark.parametrize("df, critical", [
    (1, 12.706), (2, 4.303), (2.9, 4.303), (4, 2.776), (30, 2.042), (35, 2.042),
    (100, 2.000), (500, 1.980), (10 ** 6, 1.960), (0.5, 12.706),
])
def test_t_critical_values_round_df_down(df: float, critical: float) -> None:
    assert t_critical_95(df) == critical


def test_results_directory_or_file_both_work(tmp_path: Path) -> None:
    output = compare_runs([RUN_A / "results.json", RUN_B])
    assert table_rows(output)["asyncio", 1][-1].endswith("faster")
    copy = tmp_path / "run-a"
    shutil.copytree(RUN_A, copy)
    assert str(copy) in compare_runs([RUN_A, copy])  # same names: labels become paths
