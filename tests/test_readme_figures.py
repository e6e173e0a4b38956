"""Every figure the README and docs/ quote comes from committed data and matches it.

The documents are README.md and every docs/**/*.md. A quote is marked by an HTML comment
(invisible on GitHub) above the paragraph, table or block it is about, never inside a
sentence. Four kinds:

Figures. One marker above a paragraph or table lists each figure in it and its source:

    <!-- figures
    12,520 = io-bound threaded u128 good_rps
    23,500 = capacity threaded /sleep?ms=1 capacity
    8.0 = hello load_min
    7.98 = bench/results/parser.txt
    -->
    **Waiting is what concurrency is for.** At 128 users threaded answers 12,520 req/s ...

A source is one of:
- `SCENARIO BACKEND LOAD FIELD`: a field of one summary row of the run under
  results/reference/ whose directory ends in "-SCENARIO".
  - LOAD: u16 (16 users), r1000 (1000/s offered), i5000 (5000 idle connections beside it),
    c2 (on 2 server CPUs, in a run that sweeps them), l20 (over an emulated link of a 20 ms
    round trip), a route sent alone (/cpu?ms=5, in a run whose mix is "each"), joined with "+"
    (r1000+i5000, u8+c2+/cpu?ms=5, u64+l100).
  - FIELD: a field of harness.results.summary.SummaryRow (the row the printed table and
    `concurbench summary` show): rps, good_rps, errors, starved, dropped,
    cpu_us_per_request, p50_us...; `_ms` for a `_us` field in milliseconds; mem_mib for the
    server's memory (PSS of a tree, else RSS) in MiB; `ratio:FIELD:BACKEND2:LOAD2:FIELD2`
    for FIELD / FIELD2 of another row; or `capacity`, the capacity a rate search told for
    that backend, with the route as LOAD.
- `SCENARIO FIELD`: of that run as a whole. `load_min` is the minutes of its warm-ups and
  measured windows, search probes included: the least its run can have taken.
  `until_next_min` is the minutes from its start to the start of the next reference run.
- `PATH`: a committed file (bench/results/...); one of its numbers, rounded as written.

The figure must equal its source rounded to the decimals written, and appear in the block
under the marker (up to the next blank line). Every other number in that block, and in every
block of docs/reference/, must be one the reference runs were configured with (a user
count, a route's parameter, a window's length, a server flag, a CPU): anything else is an
unchecked figure, and fails.

Findings. A finding is a blockquote line after a marker naming its run:

    <!-- finding cpu-bound -->
    > One-CPU ceiling on /cpu?ms=5: ...

and must be, word for word, one of the findings that run tells (harness.results.findings:
those it stored, else derived from its results.json); its numbers are checked by that.

Output. A fenced block after `<!-- output of: concurbench summary RUN_DIR -->` shows lines
that command prints, in order; a line of "..." stands for lines left out.

Commands. A fenced block after `<!-- command that made RUN_DIR -->` holds the
`git checkout COMMIT` and `concurbench run ...` that reproduce a reference run. The command
must parse with concurbench's own parser and agree with what the run recorded: its commit,
scenario and overrides, backends in the order they ran, pinning, drivers and --out.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import re
import shlex
from collections import Counter
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from harness.cli import build_parser, main as concurbench
from harness.results.capacity import capacities
from harness.results.findings import stored_findings
from harness.results.model import Run, Step, load
from harness.results.summary import SummaryRow, summary_rows
from harness.run.options import RunOptions
from harness.run.targets import resolve_backends
from harness.scenario import load_scenario
from support import ROOT, doc_name as name, doc_text as text_of

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
REFERENCE_PAGES = ROOT / "docs" / "reference"
FIELDS = {field.name for field in dataclasses.fields(SummaryRow)}
REFERENCE = ROOT / "results" / "reference"
FIGURES = re.compile(r"<!--\s*figures\s*\n(.*?)-->[ \t]*\n(.*?)(?=\n[ \t]*\n|\Z)", re.S)
FIGURE = re.compile(r"^\s*(~?[\d,]*\.?\d+)\s*=\s*(.+?)\s*$")
FINDING = re.compile(r"<!--\s*finding\s+(\S+)\s*-->\s*\n>\s*([^\n]+)")
FENCED = re.compile(r"^```[^\n]*\n(.*?)^```[ \t]*$", re.S | re.M)
OUTPUT = re.compile(r"<!--\s*output of:\s*(.+?)\s*-->\s*\n```[^\n]*\n(.*?)^```", re.S | re.M)
COMMAND = re.compile(r"<!--\s*command that made\s+(\S+)\s*-->\s*\n```[^\n]*\n(.*?)^```", re.S | re.M)
NUMBER = re.compile(r"(?<![\w.])\d[\d,]*(?:\.\d+)?")
ELIDED = {"...", "…"}


# --- the committed runs ----------------------------------------------------------------------

@cache
def run_dir(scenario: str) -> Path:
    matches = sorted(path for path in REFERENCE.iterdir() if path.name.endswith(f"-{scenario}"))
    assert matches, f"no reference run of {scenario!r} under {REFERENCE}"
    return matches[-1]


@cache
def results(scenario: str) -> dict[str, Any]:
    return json.loads((run_dir(scenario) / "results.json").read_text(encoding="utf-8"))


@cache
def run(scenario: str) -> Run:
    return load(run_dir(scenario))


def scenario_of(path: Path) -> str:
    return path.name.split("-", 2)[2]


def reference_runs() -> list[Path]:
    return sorted(path for path in REFERENCE.iterdir() if (path / "results.json").exists())


def parse_load(load: str) -> tuple[int | None, float | None, int, int | None, str | None, float | None]:
    users = rate = cores = route = rtt = None
    idle = 0
    for part in load.split("+"):
        kind, value = part[0], part[1:]
        if kind == "u":
            users = int(value)
        elif kind == "r":
            rate = float(value)
        elif kind == "i":
            idle = int(value)
        elif kind == "c":
            cores = int(value)
        elif kind == "l":
            rtt = float(value)
        elif kind == "/":
            route = part
        else:
            raise AssertionError(f"unknown load {load!r}: use u16, r1000, i5000, c2 (server CPUs), l20 (a link's "
                                 "round trip) or a route sent alone (/cpu?ms=5), joined with +")
    return users, rate, idle, cores, route, rtt


def row_of(scenario: str, backend: str, load: str) -> SummaryRow:
    users, rate, idle, cores, route, rtt = parse_load(load)
    series = Step(backend=backend, users=0, route=route, cores=cores, rtt_ms=rtt).series
    rows = [row for row in summary_rows(run(scenario).steps)
            if row.backend == series and row.idle == idle and row.rate == rate
            and (users is None or row.users == users)]
    assert len(rows) == 1, f"{scenario} {backend} {load}: {len(rows)} summary rows"
    return rows[0]


def value_of(scenario: str, backend: str, load: str, field: str) -> float:
    if field.startswith("ratio:"):
        _, first, backend2, load2, second = field.split(":")
        return value_of(scenario, backend, load, first) / value_of(scenario, backend2, load2, second)
    if field == "capacity":
        told = [c.rate for c in capacities(run(scenario)) if c.backend == backend and c.route == load]
        assert len(told) == 1 and told[0] is not None, f"{scenario}: no capacity told for {backend} {load}"
        return told[0]
    row = row_of(scenario, backend, load)
    if field == "mem_mib":
        steps = [s for s in run(scenario).ok_steps if s.series == row.backend
                 and s.repetition == row.repetition and s.users == row.users
                 and s.rate == row.rate and s.idle_connections == row.idle]
        assert len(steps) == 1
        memory = steps[0].server.memory
        assert memory is not None
        return memory / 2**20
    if field.endswith("_ms"):
        return getattr(row, field[:-3] + "_us") / 1000
    assert field in FIELDS, f"no field {field!r} in a summary row: {sorted(FIELDS)}"
    return getattr(row, field)


def started(path: Path) -> datetime:
    return datetime.fromisoformat(json.loads((path / "results.json").read_text(encoding="utf-8"))["metadata"]["date"])


def run_value(scenario: str, field: str) -> float:
    data = results(scenario)
    if field == "load_min":
        spec = data["scenario"]
        probes = sum(len(search["path"]) for search in (data.get("capacity") or {}).values())
        seconds = (sum(step["duration_s"] + spec["warmup_s"] for step in data["steps"])
                   + probes * (spec["warmup_s"] + spec["duration_s"]))
        return seconds / 60
    if field == "until_next_min":
        runs = sorted(reference_runs(), key=started)
        this = runs.index(run_dir(scenario))
        assert this + 1 < len(runs), f"{scenario} is the last reference run: no next one"
        return (started(runs[this + 1]) - started(runs[this])).total_seconds() / 60
    raise AssertionError(f"no run field {field!r}: load_min or until_next_min")


def file_values(path: str) -> list[float]:
    file = ROOT / path
    assert file.is_file(), f"no committed file {path}"
    return [float(n.replace(",", "")) for n in NUMBER.findall(file.read_text(encoding="utf-8"))]


# --- the quotes ------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Figure:
    doc: str
    shown: str
    source: str

    def __str__(self) -> str:
        return f"{self.doc}: {self.shown} = {self.source}"


def decimals(shown: str) -> int:
    return len(shown.split(".")[1]) if "." in shown else 0


def number(shown: str) -> float:
    return float(shown.lstrip("~").replace(",", ""))


def marker(doc: Path, lines: str) -> list[Figure]:
    """The figures one marker lists."""
    figures = []
    for line in lines.strip().splitlines():
        match = FIGURE.match(line)
        assert match, f"{name(doc)}: a figure is 'VALUE = SOURCE', not {line!r}"
        figures.append(Figure(name(doc), match[1], match[2]))
    return figures


def marked_blocks() -> list[tuple[Path, list[Figure], str]]:
    """Each figures marker: its document, its figures, and the block under it."""
    return [(doc, marker(doc, lines), block) for doc in DOCS for lines, block in FIGURES.findall(text_of(doc))]


def figures() -> list[Figure]:
    return [figure for _, marked, _ in marked_blocks() for figure in marked]


def test_the_docs_quote_reference_figures_through_markers() -> None:
    assert len(figures()) >= 10, "the docs should quote their figures with <!-- figures ... --> markers"


@pytest.mark.parametrize("figure", figures(), ids=str)
def test_each_quoted_figure_matches_its_source(figure: Figure) -> None:
    parts = figure.source.split()
    shown = number(figure.shown)
    if len(parts) == 1:
        values = [round(value, decimals(figure.shown)) for value in file_values(parts[0])]
        assert shown in values, f"{figure}: no number in {parts[0]} rounds to it"
        return
    if len(parts) == 2:
        actual = run_value(*parts)
    else:
        assert len(parts) == 4, f"{figure}: a source is SCENARIO BACKEND LOAD FIELD, SCENARIO FIELD or a PATH"
        actual = value_of(*parts)
    assert round(actual, decimals(figure.shown)) == pytest.approx(shown), (
        f"{figure}, but the committed data says {actual}")


def plain_numbers(block: str) -> list[str]:
    """The numbers a reader sees in a block of prose or a table, outside code and link targets."""
    block = re.sub(r"<!--.*?-->", " ", block, flags=re.S)
    block = re.sub(r"`[^`]*`", " ", block)  # code: flags, commands, routes as written
    block = re.sub(r"\]\([^)]*\)", "]", block)  # link and image targets (dated run directories)
    return [n.lstrip("~") for n in NUMBER.findall(block)]


def configured_numbers() -> set[str]:
    """Every number the reference runs were configured with: their scenarios (levels,
    routes, windows, server flags), the CPUs they were pinned to, the machine's CPUs, and
    the versions of the interpreters their servers ran under."""
    numbers: set[str] = set()
    for path in reference_runs():
        data = results(scenario_of(path))
        meta = data["metadata"]
        # The interpreters the servers ran under, by version and by major.minor (3.13).
        versions = [entry["python"]["version"] for entry in data["backends"].values() if entry.get("python")]
        versions += [".".join(version.split(".")[:2]) for version in versions]
        text = json.dumps([data["scenario"], meta.get("pinning"), meta.get("cpu_count"), versions])
        for found in NUMBER.findall(text):
            numbers.add(f"{float(found.replace(',', '')):g}")
    return numbers


def unchecked(block: str, marked: list[Figure]) -> list[str]:
    """The numbers in a block that no marker checks and no reference run configured."""
    left = Counter(f"{number(figure.shown):g}" for figure in marked)
    allowed = configured_numbers()
    numbers = []
    for found in plain_numbers(block):
        key = f"{number(found):g}"
        if left[key]:
            left[key] -= 1
        elif key not in allowed:
            numbers.append(found)
    return numbers


@pytest.mark.parametrize("doc", DOCS, ids=name)
def test_each_marked_figure_is_in_its_block(doc: Path) -> None:
    for found_doc, marked, block in marked_blocks():
        if found_doc != doc:
            continue
        seen = Counter(f"{number(n):g}" for n in plain_numbers(block))
        for figure in marked:
            key = f"{number(figure.shown):g}"
            assert seen[key], f"{figure}: not in the block under its marker: {block[:80]!r}..."
            seen[key] -= 1


def blocks(text: str) -> list[str]:
    """Paragraphs, tables and lists, less fenced code and the quoted findings (checked below)."""
    text = FENCED.sub("", text)
    return [block for block in re.split(r"\n[ \t]*\n", text) if block.strip()
            and not block.lstrip().startswith("<!-- finding")]


@pytest.mark.parametrize("doc", DOCS, ids=name)
def test_every_other_number_is_a_setting_of_the_runs(doc: Path) -> None:
    """In a marked block, and anywhere in docs/reference/: no figure goes unchecked."""
    whole = REFERENCE_PAGES in doc.parents
    bad = []
    for block in blocks(text_of(doc)):
        match = FIGURES.match(block.lstrip())
        if match:
            bad += unchecked(match[2], marker(doc, match[1]))
        elif whole:
            bad += unchecked(block, [])
    assert not bad, (f"{name(doc)}: numbers that no reference run configured and no <!-- figures --> marker "
                     f"checks: {bad}")


def quoted_findings() -> list[tuple[str, str, str]]:
    return [(name(doc), scenario, sentence) for doc in DOCS for scenario, sentence in FINDING.findall(text_of(doc))]


def test_the_docs_quote_findings_of_the_reference_runs() -> None:
    assert len(quoted_findings()) >= 3, "the reference pages should quote a few findings beside their charts"


@pytest.mark.parametrize("quote", quoted_findings(), ids=lambda quote: f"{quote[0]} {quote[1]}: {quote[2][:40]}")
def test_each_quoted_finding_is_one_its_run_tells(quote: tuple[str, str, str]) -> None:
    doc, scenario, sentence = quote
    told = [finding.text for finding in stored_findings(run(scenario))]
    assert sentence.strip() in told, f"{doc}: {scenario} tells no such finding; it tells: {told}"


# --- output and commands ---------------------------------------------------------------------

def outputs() -> list[tuple[str, str, str]]:
    return [(name(doc), command, shown) for doc in DOCS for command, shown in OUTPUT.findall(text_of(doc))]


@pytest.mark.parametrize("output", outputs(), ids=lambda output: f"{output[0]}: {output[1]}")
def test_each_shown_output_is_what_its_command_prints(output: tuple[str, str, str]) -> None:
    doc, command, shown = output
    argv = shlex.split(command)
    assert argv[:2] == ["concurbench", "summary"], f"{doc}: only `concurbench summary RUN_DIR` output is checked"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert concurbench([argv[1], str(ROOT / argv[2]), *argv[3:]]) == 0
    lines = [line.rstrip() for line in printed.getvalue().splitlines()]
    at = 0
    for line in shown.splitlines():
        if line.strip() in ELIDED:
            continue
        assert line.rstrip() in lines[at:], (f"{doc}: `{command}` prints no such line (after line {at}): "
                                             f"{line!r}; copy it again from the command's output")
        at = lines.index(line.rstrip(), at) + 1


def commands() -> list[tuple[str, str, str]]:
    return [(name(doc), made, block) for doc in DOCS for made, block in COMMAND.findall(text_of(doc))]


def test_every_reference_run_has_its_command() -> None:
    made = {Path(path).name for _, path, _ in commands()}
    assert made == {path.name for path in reference_runs()}, "each reference run's page gives the command that made it"


@pytest.mark.parametrize("command", commands(), ids=lambda command: command[1])
def test_each_reference_command_reproduces_its_run(command: tuple[str, str, str]) -> None:
    doc, made, block = command
    data = json.loads((ROOT / made / "results.json").read_text(encoding="utf-8"))
    meta = data["metadata"]
    lines = [line.strip() for line in block.replace("\\\n", " ").splitlines() if line.strip()]
    checkouts = [line.split()[2] for line in lines if line.startswith("git checkout ")]
    assert len(checkouts) == 1 and len(checkouts[0]) >= 7 and meta["git"]["commit"].startswith(checkouts[0]), (
        f"{doc}: the run measured commit {meta['git']['commit']}: `git checkout` it first")
    runs = [shlex.split(line) for line in lines if "concurbench run " in line]
    assert len(runs) == 1, f"{doc}: one `concurbench run ...` line"
    argv = runs[0][runs[0].index("run"):]
    args = build_parser().parse_args(argv)  # a flag concurbench does not have exits here
    scenario = load_scenario(args.scenario).with_overrides(
        users=args.users, duration_s=args.duration, warmup_s=args.warmup, repeat=args.repeat,
        pythons=tuple(args.server_python) if args.server_python else None, cpus=args.cores)
    assert scenario.name == meta["scenario"]["name"]
    assert list(scenario.overrides) == meta["scenario"]["overrides"], (
        f"{doc}: the run was made with the overrides {meta['scenario']['overrides']}")
    ran = list(dict.fromkeys(entry["backend"].split("@")[0] for entry in meta["order"]))
    assert list(resolve_backends(args.backend, scenario.backends)) == ran, f"{doc}: the run's backends were {ran}"
    assert args.server_cpus and args.driver_cpus, f"{doc}: give --server-cpus and --driver-cpus, as pinned"
    server, driver = RunOptions(out_root=args.out, server_cpus=args.server_cpus, driver_cpus=args.driver_cpus).pinning(
        counts=scenario.cpus, share=scenario.share_driver_cpus)
    assert {"server": list(server), "driver": list(driver)} == meta["pinning"]
    assert (["locust", "wrk"] if args.driver == "both" else [args.driver]) == meta["drivers"]
    assert args.out == Path("results/reference")
