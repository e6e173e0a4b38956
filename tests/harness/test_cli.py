"""The command line, in process: `concurbench summary RUN_DIR [--markdown]` prints a stored
run's summary table, and refuses in one line (exit 2) what it cannot read."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from harness.cli import main
from harness.results.store import read_results
from harness.results.summary import summary_markdown, summary_rows, summary_table
from support import FIXTURES

RUN_B = FIXTURES / "runs" / "run-b"


def test_summary_prints_the_table_of_a_stored_run(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["summary", str(RUN_B)]) == 0
    out = capsys.readouterr().out
    table = summary_table(read_results(RUN_B)).lstrip("\n")
    assert out.startswith(table + "\n\nfindings:\n")  # then what the run found (test_findings tests them)
    assert out.startswith("hello: each row is the repetition with the median")
    assert "forking    FAILED: " in out  # run-b's forking did not start


def test_summary_markdown_prints_a_github_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["summary", str(RUN_B), "--markdown"]) == 0
    out = capsys.readouterr().out
    assert out == summary_markdown(read_results(RUN_B)) + "\n"
    table = [line for line in out.splitlines() if line.startswith("|")]
    assert table[0].startswith("| backend | load | req/s | good req/s |") and table[1].startswith("|:---|")
    assert len(table) == 2 + len(summary_rows(read_results(RUN_B)["steps"]))
    assert all(line.count(" | ") == table[0].count(" | ") for line in table[2:])


@pytest.mark.parametrize("make, message", [
    (lambda tmp: tmp / "absent", "no such run directory"),
    (lambda tmp: tmp, "no such results file"),
    (lambda tmp: (tmp / "results.json").write_text("{oops") and tmp, "not valid JSON"),
    (lambda tmp: (tmp / "results.json").write_text('{"version": 2, "steps": [{"status": "ok"}]}') and tmp,
     "results.json: steps[0].backend: missing"),
    (lambda tmp: (tmp / "results.json").write_text('{"version": 2, "steps": 3}') and tmp,
     "results.json: steps: must be a list, not 3"),
], ids=["missing-dir", "no-results-json", "not-json", "step-without-backend", "steps-not-a-list"])
def test_summary_refuses_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], make, message: str) -> None:
    run_dir = make(tmp_path)
    assert main(["summary", str(run_dir)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and captured.err.startswith("concurbench: error: ")
    assert message in captured.err and str(run_dir) in captured.err


def test_summary_of_a_results_file_path_works_too(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shutil.copy(RUN_B / "results.json", tmp_path / "results.json")
    assert main(["summary", str(tmp_path / "results.json")]) == 0
    assert "selectors" in capsys.readouterr().out


def test_summary_help_explains_the_row_and_the_columns(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["summary", "--help"])
    assert exited.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    for words in ("median good req/s", "own percentiles", "summed", "lower bound", "--markdown",
                  "error_share", "cpu_us_per_request", "steal_pct", "p99_lower_bound"):
        assert words in out, words


def test_summary_ends_with_the_capacity_found_and_the_findings(capsys: pytest.CaptureFixture[str]) -> None:
    run = FIXTURES / "runs" / "capacity-tiny"
    assert main(["summary", str(run)]) == 0
    out = capsys.readouterr().out
    table, capacity, findings = out.rstrip("\n").split("\n\n")[-3:]
    assert capacity.startswith("capacity within p99 <= 10 ms, errors <= 0.1%")
    assert "selectors /sleep?ms=1" in capacity and "10,800" in capacity
    assert findings.startswith("findings:\n  - selectors / holds at least 20,000 req/s")
    assert main(["summary", str(run), "--markdown"]) == 0  # a table to paste: nothing after it
    assert "findings:" not in capsys.readouterr().out


# --- a misspelt name gets the closest one ---

@pytest.mark.parametrize("args, guess", [
    (["run", "--scenario", "quik"], "(did you mean 'quick'?)"),
    (["run", "--scenario", "quick", "--backend", "asynco"], "(did you mean 'asyncio'?)"),
    (["run", "--scenario", "quick", "--backend", "threaded,selector"], "(did you mean 'selectors'?)"),
], ids=["scenario", "backend", "second-backend-of-a-list"])
def test_a_misspelt_name_gets_did_you_mean(tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str],
                                          guess: str) -> None:
    assert main([*args, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("concurbench: error: ") and guess in err
    assert list(tmp_path.iterdir()) == []  # refused before any run directory
