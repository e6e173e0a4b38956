"""`concurbench compare` as CI uses it, on stored runs: the regression gate and its exit
status, the three formats, and stored baselines (results/reference/).

Fixture run-b was made with asyncio 15% faster and selectors 7% slower than run-a, and
forking failed to start; run-c comes from another machine.
"""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path
from typing import Any, Callable

import pytest

from harness.charts.compare import compare
from harness.charts.compare_gate import regressions
from harness.charts.compare_formats import AGGREGATE, JSON_SCHEMA, compare_runs
from harness.cli import main
from harness.results.store import read_results, write_results
from harness.results.printed import summary_table
from harness.results.summary import summary_rows
from support import FIXTURES, ROOT

RUNS = FIXTURES / "runs"
RUN_A, RUN_B, RUN_C = RUNS / "run-a", RUNS / "run-b", RUNS / "run-c"
REFERENCE = sorted(path for path in (ROOT / "results" / "reference").iterdir() if path.is_dir())
SEARCHES = [path for path in REFERENCE if read_results(path).get("capacity")]  # refused: see below
HELLO = next(path for path in REFERENCE if path.name.endswith("-hello"))


def cli(capsys: pytest.CaptureFixture[str], *args: Any) -> tuple[int, str, str]:
    status = main(["compare", *map(str, args)])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def gate_lines(out: str) -> list[str]:
    """The regressions the gate listed after its line."""
    return [line.strip() for line in out[out.index("regression gate"):].splitlines()[1:] if line.strip()]


def table_line(out: str, backend: str, load: str) -> str:
    """The throughput table's line for backend at load."""
    return next(line for line in out.splitlines() if line.startswith(backend) and f" {load} " in line)


def edited(tmp_path: Path, name: str, change: Callable[[dict[str, Any]], None]) -> Path:
    """A copy of run-a with change applied to each of its steps."""
    results = read_results(RUN_A)
    results.pop("version")  # written as the current schema: compare warns, and judges alike
    for step in results["steps"]:
        change(step)
    path = tmp_path / name
    path.mkdir()
    write_results(path, results)
    return path


# --- the gate ---

FORKING_FAILED = "forking in run-b: failed (forking did not come up within 10 s: exited with status 1)"  # once, with its error

@pytest.mark.parametrize("pct, listed", [
    (10, [FORKING_FAILED]),
    (5, [FORKING_FAILED,
         "selectors at 1 user, req/s in run-b: 0.94x [0.91–0.97] (1.07x slower)",
         "selectors at 8 users, req/s in run-b: 0.93x [0.88–0.97] (1.08x slower)",
         "selectors at 32 users, req/s in run-b: 0.92x [0.90–0.95] (1.08x slower)",
         "selectors at 32 users, p99 in run-b: 1.07x [1.02–1.12] (1.07x higher)"]),
], ids=["10%: only the failed backend", "5%: selectors' 7% too"])
def test_gate_exits_1_and_lists_each_regression(capsys: pytest.CaptureFixture[str], pct: int,
                                                 listed: list[str]) -> None:
    status, out, err = cli(capsys, RUN_A, RUN_B, "--fail-on-regression", pct)
    assert status == 1 and gate_lines(out) == listed
    assert err.count("\n") == 1 and err.startswith(f"concurbench: {len(listed)} regression{'s' * (len(listed) > 1)} beyond {pct}% against run-a: ")
    # threaded at 32 users reads 11% slower, but its repetitions scatter: not significant, not listed
    assert "threaded" not in "".join(listed)


def test_gate_passes_a_run_against_itself(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = cli(capsys, RUN_A, RUN_A / "results.json", "--fail-on-regression", 0)
    assert (status, err) == (0, "") and out.rstrip().endswith("or failed: none")


def test_gate_needs_the_threshold_and_significance_both(tmp_path: Path) -> None:
    def slower(step: dict[str, Any]) -> None:  # asyncio 15% slower, threaded 15% slower in one repetition
        if step["backend"] == "asyncio" or (step["backend"], step["repetition"]) == ("threaded", 0):
            step["rps"] *= 0.85
    other = edited(tmp_path, "slower", slower)
    found = {(r.row.backend, r.row.level[1], r.row.measure) for r in regressions(compare([RUN_A, other]), 10)}
    assert found == {("asyncio", users, "throughput") for users in (1, 8, 32)}  # threaded: noise
    assert regressions(compare([RUN_A, other]), 20) == []  # significant, but within 20%


def test_gate_catches_a_longer_tail_alone(tmp_path: Path) -> None:
    def tail(step: dict[str, Any]) -> None:
        if (step["backend"], step["users"]) == ("threaded", 8):
            step["p99_us"] = int(step["p99_us"] * 1.5)
    found = regressions(compare([RUN_A, edited(tmp_path, "tail", tail)]), 10)
    assert [r.line() for r in found] == ["threaded at 8 users, p99 in tail: 1.50x [1.22–1.85] (1.50x higher)"]


def test_gate_judges_from_the_base_of_an_improvement() -> None:
    # run-a against run-b: asyncio is the one that changed, 15% slower now, its tail longer
    found = regressions(compare([RUN_B, RUN_A]), 10)
    assert [(r.row.backend, r.row.level[1], r.row.measure) for r in found] == [
        ("asyncio", users, measure) for users in (1, 8, 32) for measure in ("throughput", "p99")]


def test_gate_says_what_it_could_not_judge(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    results = read_results(RUN_A)
    results.pop("version")
    results["steps"] = [step for step in results["steps"] if step["repetition"] == 0]
    for step in results["steps"]:
        step["rps"] /= 2  # halved, but one repetition: nothing to judge it by
    (tmp_path / "once").mkdir()
    write_results(tmp_path / "once", results)
    status, out, _ = cli(capsys, RUN_A, tmp_path / "once", "--fail-on-regression", 10)
    assert status == 0 and "untested: 1 repetition" in out
    assert out.rstrip().endswith("could not judge 30 comparison(s): 30 untested (1 repetition: run with "
                                 "--repeat 2 or more)")  # 5 backends x 3 levels x 2 measures


def test_gate_fails_a_backend_that_crashed_partway(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    # asyncio kept all but its last repetition, then its server died: the run's status for it says so
    results = read_results(RUN_A)
    results.pop("version")
    last = max(i for i, step in enumerate(results["steps"]) if step["backend"] == "asyncio")
    del results["steps"][last]
    results["backends"]["asyncio"].update(status="failed", error="asyncio exited with status 1\nTraceback ...")
    (tmp_path / "crashed").mkdir()
    write_results(tmp_path / "crashed", results)
    status, out, err = cli(capsys, RUN_A, tmp_path / "crashed", "--fail-on-regression", 10)
    assert status == 1 and gate_lines(out) == ["asyncio in crashed: failed (asyncio exited with status 1)"]
    assert "not significant" in table_line(out, "asyncio", "32 users")  # the steps it kept are still compared
    assert err.startswith("concurbench: 1 regression beyond 10% against run-a: asyncio in crashed: failed")


def test_gate_counts_a_missing_level_as_unjudged(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    results = read_results(RUN_A)
    results.pop("version")
    results["steps"] = [step for step in results["steps"] if (step["backend"], step["users"]) != ("threaded", 32)]
    (tmp_path / "fewer").mkdir()
    write_results(tmp_path / "fewer", results)
    status, out, _ = cli(capsys, RUN_A, tmp_path / "fewer", "--fail-on-regression", 10)
    assert status == 0 and "missing" in table_line(out, "threaded", "32 users")
    assert out.rstrip().endswith("or failed: none\n  could not judge 2 comparison(s): 2 missing (a level the base "
                                 "has and a later run lacks)")  # its throughput and its p99


def test_rate_searches_are_refused_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    # each search finds its own rates, so levels do not line up: the gate would judge nothing
    for search, gate in itertools.product([RUNS / "capacity-tiny", *SEARCHES], ((), ("--fail-on-regression", 10))):
        status, out, err = cli(capsys, search, search / "results.json", *gate)
        assert (status, out) == (2, "") and err.count("\n") == 1
        assert "compare does not judge rate searches yet: compare their capacity tables (concurbench summary)" in err


@pytest.mark.parametrize("args, message", [
    pytest.param((RUN_A,), "compare needs at least two runs", id="one-run"),
    pytest.param((RUN_A, RUN_B, "--fail-on-regression", -5), "from 0 to below 100, got -5", id="negative"),
    pytest.param((RUN_A, RUN_B, "--fail-on-regression", 100), "from 0 to below 100, got 100", id="all"),
    pytest.param((RUN_A, RUNS / "nope"), "nope: no such run directory", id="missing-run"),
    pytest.param((RUN_A, RUN_C, "--fail-on-regression", 10), "different machines", id="other-machine"),
])
def test_errors_are_one_line_and_exit_2(capsys: pytest.CaptureFixture[str], args: tuple[Any, ...],
                                        message: str) -> None:
    status, out, err = cli(capsys, *args)
    assert (status, out) == (2, "") and err.count("\n") == 1
    assert err.startswith("concurbench: error: ") and message in err


# --- formats ---

def test_json_is_for_tools(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = cli(capsys, RUN_A, RUN_B, "--format", "json", "--fail-on-regression", 10)
    document = json.loads(out)
    assert status == 1 and document["schema"] == JSON_SCHEMA
    assert set(document) == {"schema", "scenario", "machine", "test", "base", "runs", "warnings", "throughput",
                             "rows", "charts", "gate"}
    assert document["base"] == "run-a" and [run["label"] for run in document["runs"]] == ["run-a", "run-b"]
    assert len(document["rows"]) == 2 * 5 * 3  # both measures, 5 backends, 3 levels
    row = next(r for r in document["rows"] if (r["backend"], r["users"], r["measure"]) == ("asyncio", 8, "throughput"))
    assert set(row) == {"backend", "load", "users", "rate", "idle_connections", "measure", "unit", "base", "runs"}
    (cell,) = row["runs"]
    assert set(cell) == {"run", "status", "value", "ratio", "ci_low", "ci_high", "significant", "verdict"}
    assert cell["significant"] is True and 1 < cell["ci_low"] < cell["ratio"] < cell["ci_high"]
    assert cell["verdict"] == f"{cell['ratio']:.2f}x faster" and row["unit"] == "req/s"
    assert document["gate"]["threshold_pct"] == 10 and document["gate"]["untested"] == 0
    assert document["gate"]["missing"] == 0
    assert [(g["backend"], g["users"], g["status"], g["error"]) for g in document["gate"]["regressions"]] == [
        ("forking", None, "failed", "forking did not come up within 10 s: exited with status 1")]
    assert json.loads(compare_runs([RUN_A, RUN_B], format="json"))["gate"] is None


def test_markdown_is_a_table_per_measure(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = cli(capsys, RUN_A, RUN_B, "--format", "markdown", "--fail-on-regression", 10)
    lines = out.splitlines()
    assert status == 1 and lines[0].startswith("**concurbench compare**")
    assert [line for line in lines if line.startswith("#### ")] == [
        f"#### throughput: req/s (answers of any status: not every run recorded goodput), {AGGREGATE}",
        f"#### p99 latency (ms), {AGGREGATE}: lower is better"]
    tables = [line for line in lines if line.startswith("|")]
    assert len(tables) == 2 * (2 + 15)  # header, alignment, 15 rows; twice
    assert {line.count("|") for line in tables} == {8}  # 7 columns each
    assert tables[1] == "| --- | ---: | ---: | ---: | ---: | ---: | --- |"
    assert "| asyncio | 8 users |" in out and "| forking | 8 users | 10,322 | failed | — | — | failed in run-b |" in out
    assert lines[-1] == f"- {FORKING_FAILED}"


# --- baselines ---

@pytest.mark.parametrize("reference", [path for path in REFERENCE if path not in SEARCHES],
                         ids=[path.name for path in REFERENCE if path not in SEARCHES])
def test_a_stored_reference_run_is_a_baseline(capsys: pytest.CaptureFixture[str], reference: Path) -> None:
    status, out, err = cli(capsys, "--baseline", reference, reference / "results.json", "--fail-on-regression", 1)
    assert (status, err) == (0, "")
    document = json.loads(compare_runs([reference, reference / "results.json"], format="json"))
    cells = [cell for row in document["rows"] for cell in row["runs"]]
    assert len(cells) >= 40 and {cell["ratio"] for cell in cells if cell["ratio"] is not None} == {1.0}
    assert {cell["verdict"] for cell in cells} <= {"not significant", "missing"}


def test_a_reference_run_refuses_a_run_of_another_machine_unless_forced(capsys: pytest.CaptureFixture[str],
                                                                        tmp_path: Path) -> None:
    status, _, err = cli(capsys, "--baseline", HELLO, RUN_B)
    assert status == 2 and "different machines" in err and "--force" in err
    status, out, _ = cli(capsys, "--baseline", HELLO, RUN_B, "--force")
    assert status == 0 and "WARNING (forced): run-b ran on bench-1" in out
    copy = tmp_path / HELLO.name
    shutil.copytree(HELLO, copy)
    assert cli(capsys, "--baseline", HELLO, copy / "results.json", "--fail-on-regression", 5)[0] == 0


def test_an_unreadable_run_is_named_in_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text('{"version": 3, "steps": [{"status": "ok"}]}')
    status, out, err = cli(capsys, RUN_A, broken, "--force")
    assert (status, out) == (2, "") and err.count("\n") == 1
    assert err.startswith(f"concurbench: error: {broken}: steps[0].backend: missing")  # the file, the key, why


def test_compare_and_summary_each_say_which_aggregate_they_print() -> None:
    """The stored hello run: forking at 128 users reads 51,106 good req/s in the summary (the
    repetition with the median) and 40,543 in compare (the geometric mean of the repetitions,
    which its test compares): each table says which it prints."""
    results = read_results(HELLO)
    text = compare_runs([HELLO, HELLO])
    titles = [line for line in text.splitlines() if line.startswith(("throughput:", "p99 latency"))]
    assert len(titles) == 2 and all(AGGREGATE in title for title in titles)
    line = next(line for line in text.splitlines() if line.startswith("forking ") and " 128 users " in line)
    assert line.split()[3] == "40,543"
    (row,) = [row for row in summary_rows(results["steps"]) if row.backend == "forking" and row.users == 128]
    assert round(row.good_rps) == 51106
    assert "each row is the repetition with the median good req/s" in summary_table(results)
