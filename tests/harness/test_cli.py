"""The command line, in process: every command and flag explains itself in --help, with its
default shown once; a misspelt name or flag gets the closest one; `concurbench summary RUN_DIR
[--markdown]` prints a stored run's summary table, and refuses in one line (exit 2) what it
cannot read."""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import harness.cli
import servers.__main__
from harness.arguments import build_parser
from harness.cli import main, worker_command
from harness.drivers import new_token
from harness.results.store import read_results
from harness.results.printed import summary_markdown, summary_table
from harness.results.summary import summary_rows
from harness.run.listing import RUN_START_S, WIDTH, default_seconds
from harness.run.plan import DRIVER_START_S, START_STOP_S
from harness.run.pythons import BUILDS
from harness.scenario import builtin_scenarios, load_scenario
from servers.backends import BACKENDS, variants
from support import FIXTURES, ROOT

RUN_B = FIXTURES / "runs" / "run-b"


def test_summary_prints_the_table_of_a_stored_run(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["summary", str(RUN_B)]) == 0
    out = capsys.readouterr().out
    table = summary_table(read_results(RUN_B)).lstrip("\n")
    assert out.startswith(table + "\n\nfindings:\n")  # then what the run found (test_findings tests them)
    assert out.startswith("hello: each row is the repetition with the median")
    assert "forking    FAILED: " in out  # run-b's forking did not start


def test_summary_markdown_prints_a_github_table_then_the_findings(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["summary", str(RUN_B), "--markdown"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(summary_markdown(read_results(RUN_B)) + "\n\n**Findings**\n\n- ")
    table = [line for line in out.splitlines() if line.startswith("|")]
    assert table[0].startswith("| backend | load | req/s | good req/s |") and table[1].startswith("|:---|")
    assert len(table) == 2 + len(summary_rows(read_results(RUN_B)["steps"]))
    assert all(line.count(" | ") == table[0].count(" | ") for line in table[2:])
    findings = out[out.index("**Findings**"):].splitlines()[2:]
    assert findings and all(line.startswith("- ") for line in findings)


def test_summary_markdown_keeps_the_capacity_table(capsys: pytest.CaptureFixture[str]) -> None:
    """What the plain summary prints of a rate search, the markdown prints too."""
    run = FIXTURES / "runs" / "capacity-tiny"
    assert main(["summary", str(run)]) == 0
    text = capsys.readouterr().out
    assert main(["summary", str(run), "--markdown"]) == 0
    markdown = capsys.readouterr().out
    assert "\ncapacity within p99 <= 10 ms" in text and "\n*capacity within p99 <= 10 ms" in markdown
    header = next(line for line in markdown.splitlines() if line.startswith("| series |"))
    assert header == ("| series | capacity req/s | held | median p99 ms | median good req/s | median CPU µs/req "
                      "| search found | probes | note |")
    in_text = text.split("\nseries ")[1].split("\n\n")[0].splitlines()[2:]  # under the header and its dashes
    in_markdown = markdown.split("\n| series |")[1].split("\n\n")[0].splitlines()[2:]
    assert len(in_markdown) == len(in_text) == 4
    assert [line.split(" | ")[1] for line in in_markdown] == [line.split()[2] for line in in_text]  # capacity req/s
    findings = [line[4:] for line in text.splitlines() if line.startswith("  - ")]
    assert findings and all(f"\n- {finding}" in markdown for finding in findings)


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


# --- --help ---

COMMANDS = harness.cli._commands(build_parser())
ACTIONS = [pytest.param(parser, action, id=f"{name} {'/'.join(action.option_strings) or action.dest}")
           for name, parser in (COMMANDS | {"python -m servers": servers.__main__.build_parser()}).items()
           for action in parser._actions]


def flag_help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    """One flag's entry in the command's --help, as printed, on one line."""
    formatter = parser._get_formatter()
    formatter.add_argument(action)
    return " ".join(formatter.format_help().split())


@pytest.mark.parametrize("parser, action", ACTIONS)
def test_every_flag_says_what_it_does_and_its_default_at_most_once(parser: argparse.ArgumentParser,
                                                                   action: argparse.Action) -> None:
    text = flag_help(parser, action)
    assert action.help, text
    assert "(default: None)" not in text and "(default: False)" not in text
    assert text.count("default") <= 1, text


def test_a_default_is_shown_where_the_help_does_not_say_it() -> None:
    run = COMMANDS["run"]
    helps = {action.option_strings[-1]: flag_help(run, action) for action in run._actions if action.option_strings}
    assert helps["--master-port"].endswith("(default: 5557)")
    assert helps["--out"].endswith("(default: results)")
    assert helps["--server-cpus"].endswith("(default: the first half)")


@pytest.mark.parametrize("name", [name for name in COMMANDS if name != "serve"])  # serve: python -m servers' help
def test_every_command_has_a_description(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    description = COMMANDS[name].description
    assert description and description.endswith(".")
    with pytest.raises(SystemExit):
        main([name, "--help"])
    assert " ".join(description.split()) in " ".join(capsys.readouterr().out.split())


def test_the_top_level_help_names_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert f"\n    {name} " in out, name
    assert set(harness.cli.__doc__.splitlines()[0].split(": ")[1].rstrip(".").split(" | ")) == set(COMMANDS)


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


@pytest.mark.parametrize("args, usage, message", [
    (["run", "--scenarioo", "x"], "usage: concurbench run ", "unknown flag --scenarioo (did you mean '--scenario'?)"),
    (["run", "--scenario", "quick", "--bakend=threaded"], "usage: concurbench run ",
     "unknown flag --bakend (did you mean '--backend'?)"),
    (["summary", str(RUN_B), "--markdwn"], "usage: concurbench summary ",
     "unknown flag --markdwn (did you mean '--markdown'?)"),
    (["report", str(RUN_B), "extra"], "usage: concurbench report ", "unrecognized arguments: extra"),
], ids=["missing-required-too", "with-value", "summary", "extra-positional"])
def test_a_wrong_argument_gets_the_commands_usage(capsys: pytest.CaptureFixture[str], args: list[str], usage: str,
                                                   message: str) -> None:
    with pytest.raises(SystemExit) as exited:
        main(args)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(usage) and err.rstrip("\n").endswith(f": error: {message}")


def test_a_flag_abbreviated_or_after_a_double_dash_is_not_misspelt(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["summary", "--mark", str(RUN_B)]) == 0  # argparse takes a flag's unique prefix
    assert main(["summary", "--", str(RUN_B)]) == 0


@pytest.mark.parametrize("token", [new_token(), "-starts-like-a-flag", "--two-dashes", "a space; and $HOME"],
                         ids=["new", "dash", "two-dashes", "shell"])
def test_the_printed_worker_command_gives_the_worker_the_runs_token(token: str) -> None:
    """`concurbench run --remote-workers` prints it to be pasted. Once in 64 runs, a token of
    token_urlsafe's began with "-": the worker's argparse took it for a flag and exited, and
    the run waited out its 60 s for that worker (test_remote_workers failed so in CI)."""
    argv = shlex.split(worker_command("127.0.0.1:5557", token))
    assert argv[:4] == ["concurbench", "worker", "--master", "127.0.0.1:5557"]
    harness.cli._refuse_unknown_flags(COMMANDS["worker"], argv[2:])
    assert build_parser().parse_args(argv[1:]).token == token


def test_a_new_token_never_starts_like_a_flag() -> None:
    assert not [token for token in (new_token() for _ in range(1000)) if token.startswith("-")]


# --- stored runs: summary, report, compare ---

@pytest.mark.parametrize("args", [["summary"], ["report"], ["compare", str(RUN_B)]], ids=lambda args: args[0])
def test_a_missing_run_directory_is_told_in_one_wording(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                        args: list[str]) -> None:
    absent = tmp_path / "absent"
    assert main([*args, str(absent)]) == 2
    assert capsys.readouterr().err == f"concurbench: error: {absent}: no such run directory\n"


def test_report_out_writes_the_page_and_its_charts_elsewhere(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    shutil.copytree(RUN_B, run)
    out = tmp_path / "made" / "here"
    assert main(["report", str(run), "--out", str(out)]) == 0
    assert capsys.readouterr().out == f"report: {out / 'report.html'}\n"
    assert "<html" in (out / "report.html").read_text(encoding="utf-8")
    assert list((out / "charts").glob("*.png"))
    assert sorted(path.name for path in run.iterdir()) == ["results.json"]  # the run is left as it was


def test_compare_of_two_scenarios_names_the_flag_that_forces_it(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    document = json.loads((RUN_B / "results.json").read_text(encoding="utf-8"))
    document["scenario"]["name"] = "io-bound"
    (tmp_path / "results.json").write_text(json.dumps(document), encoding="utf-8")
    assert main(["compare", str(RUN_B), str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "ran scenario 'io-bound' but run-b ran 'hello'" in err
    assert err.rstrip("\n").endswith("--force compares them anyway.") and "force=True" not in err


@pytest.mark.parametrize("run", [RUN_B, FIXTURES / "runs" / "capacity-tiny"], ids=lambda run: run.name)
def test_summary_speaks_of_1_user_and_of_microseconds_as_µs(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["summary", str(run)]) == 0
    out = capsys.readouterr().out
    assert "CPU µs/req" in out and not re.search(r"\bus\b", out)  # 'us' as a word: '42 us', 'CPU us/req'
    assert "1 users" not in out


def test_a_reader_that_stops_early_ends_the_summary_quietly() -> None:
    """`concurbench summary DIR | head -3`: the pipe's reader is gone before the table is
    written (its end closed at once here, so the test does not race head)."""
    read, write = os.pipe()
    os.close(read)
    try:
        done = subprocess.run([sys.executable, "-m", "harness.cli", "summary", str(RUN_B)], stdout=write,
                              stderr=subprocess.PIPE, text=True, cwd=ROOT, timeout=60, check=False)
    finally:
        os.close(write)
    assert done.stderr == "" and done.returncode == harness.cli.BROKEN_PIPE_STATUS == 141


@pytest.fixture(scope="module")
def listed() -> str:
    """`concurbench list` in a terminal of WIDTH columns."""
    import contextlib
    import io

    out, columns = io.StringIO(), os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(WIDTH)
    try:
        with contextlib.redirect_stdout(out):
            assert main(["list"]) == 0
    finally:
        if columns is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = columns
    return out.getvalue()


def test_list_fits_one_screen(listed: str) -> None:
    lines = listed.splitlines()
    assert len(lines) <= 50 and max(map(len, lines)) <= WIDTH


def test_list_shows_every_variant_with_its_flags(listed: str) -> None:
    for name, variant in variants().items():
        if name not in BACKENDS:
            assert f"{name} ({' '.join(variant.flags[2:])})" in listed, name
    if sys.version_info < (3, 13):
        assert f"under Python {platform.python_version()}: it needs Python 3.13+" in listed


def test_list_shows_the_pythons_it_finds(listed: str) -> None:
    section = listed[listed.index("Pythons the servers can run under"):].split("\n\n")[0]
    assert f"this one    Python {platform.python_version()}: the default" in section
    for short in BUILDS:  # built or not, each says what it is or how to build it
        assert re.search(rf"^  {re.escape(short)} +(Python \S+|not built: `make pythons`)", section, re.M), short


def test_list_tells_about_how_long_each_scenario_takes(listed: str) -> None:
    """quick: 7 or 8 backends (interpreters needs Python 3.13) x 2 rounds, each a start and 3
    levels of 0.5 s warm-up and 2 s window, and the run's own start: about 2 minutes, which
    the demo takes (121 s measured for 7 backends)."""
    rows = {line.split()[0]: line for line in listed.splitlines() if re.match(r"^  \S+ +about \d+ (s|min) ", line)}
    assert set(rows) == set(builtin_scenarios())
    assert re.match(r"^  quick +about 2 min ", rows["quick"]) and listed.index(rows["quick"]) < min(
        listed.index(line) for name, line in rows.items() if name != "quick")
    quick = load_scenario("quick")
    backends = len(BACKENDS) - (sys.version_info < (3, 13))
    starts = quick.repeat * backends
    assert default_seconds(quick) == pytest.approx(
        RUN_START_S + starts * (START_STOP_S + DRIVER_START_S + len(quick.users) * (quick.warmup_s + quick.duration_s)))
