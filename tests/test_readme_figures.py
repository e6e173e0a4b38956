"""Every figure the README quotes about a reference run matches that run's results.json.

In the README's "What the reference results show" section, a measured figure is written
after an HTML comment naming where it comes from (invisible on GitHub):

    <!-- cpu-bound asyncio u16 good_rps -->198.6 req/s

- the scenario: the run under results/reference/ whose directory ends in "-cpu-bound";
- the backend, and the load level: u16 (16 users), r1000 (1000/s offered), i5000 (5000
  idle connections beside it), c2 (on 2 server CPUs, in a run that sweeps them), a route
  sent alone (/cpu?ms=5, in a run whose mix is "each"), joined with "+" (r1000+i5000,
  u8+c2+/cpu?ms=5);
- the field of that level's summary row (harness.results.summary.summary_rows, the one
  the printed table and `concurbench summary --markdown` show): rps, good_rps, errors,
  starved, dropped, cpu_us_per_request, steal_pct, p50_us...; `_ms` for a `_us` field in
  milliseconds; mem_mib for the server's memory (PSS of a tree, else RSS) in MiB; or
  `ratio:FIELD:BACKEND2:LOAD2:FIELD2` for FIELD / FIELD2 of another row.

A finding the README quotes is a blockquote line after a comment naming its run:

    <!-- finding cpu-bound -->
    > GIL ceiling on /cpu?ms=5: ...

and must be, word for word, one of the findings that run tells (harness.results.findings:
those it stored, else derived from its results.json); its numbers are checked by that.

The number after it must equal the field rounded to the decimals written. Every other
number in the section must be one the reference runs were configured with (a user count,
a route's parameter, a window's length, a server flag): anything else is an unchecked
figure, and fails.
"""

from __future__ import annotations

import dataclasses
import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from harness.results.findings import stored_findings
from harness.results.model import Run, Step, load
from harness.results.summary import SummaryRow, summary_rows
from support import ROOT

README = ROOT / "README.md"
FIELDS = {field.name for field in dataclasses.fields(SummaryRow)}
REFERENCE = ROOT / "results" / "reference"
SECTION = "## What the reference results show"
REF = re.compile(r"<!--\s*(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s*-->\s*~?([\d,]*\.?\d+)")
FINDING = re.compile(r"<!--\s*finding\s+(\S+)\s*-->\s*\n>\s*([^\n]+)")
NUMBER = re.compile(r"(?<![\w.])\d[\d,]*(?:\.\d+)?")


def section() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    return text[start:end if end >= 0 else None]


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


def parse_load(load: str) -> tuple[int | None, float | None, int, int | None, str | None]:
    users = rate = cores = route = None
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
        elif kind == "/":
            route = part
        else:
            raise AssertionError(f"unknown load {load!r}: use u16, r1000, i5000, c2 (server CPUs) or a "
                                 "route sent alone (/cpu?ms=5), joined with +")
    return users, rate, idle, cores, route


def row_of(scenario: str, backend: str, load: str) -> SummaryRow:
    users, rate, idle, cores, route = parse_load(load)
    name = Step(backend=backend, users=0, route=route, cores=cores).series
    rows = [row for row in summary_rows(run(scenario).steps)
            if row.backend == name and row.idle == idle and row.rate == rate
            and (users is None or row.users == users)]
    assert len(rows) == 1, f"{scenario} {backend} {load}: {len(rows)} summary rows"
    return rows[0]


def value_of(scenario: str, backend: str, load: str, field: str) -> float:
    if field.startswith("ratio:"):
        _, first, backend2, load2, second = field.split(":")
        return value_of(scenario, backend, load, first) / value_of(scenario, backend2, load2, second)
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


def refs() -> list[tuple[str, str, str, str, str]]:
    return REF.findall(section())


def test_the_readme_quotes_reference_figures_through_references() -> None:
    assert len(refs()) >= 10, "the results section should quote its figures with <!-- ... --> references"


@pytest.mark.parametrize("ref", refs(), ids=lambda ref: " ".join(ref[:4]))
def test_each_quoted_figure_matches_its_run(ref: tuple[str, str, str, str, str]) -> None:
    scenario, backend, load, field, shown = ref
    decimals = len(shown.split(".")[1]) if "." in shown else 0
    actual = value_of(scenario, backend, load, field)
    assert round(actual, decimals) == pytest.approx(float(shown.replace(",", ""))), (
        f"README says {shown} for {scenario} {backend} {load} {field}; results.json says {actual}")


def configured_numbers() -> set[str]:
    """Every number the reference runs were configured with: their scenarios (levels,
    routes, windows, server flags), the CPUs they were pinned to, the machine's CPUs, and
    the versions of the interpreters their servers ran under."""
    numbers: set[str] = set()
    for path in REFERENCE.iterdir():
        if not (path / "results.json").exists():
            continue
        data = results(path.name.split("-", 2)[2])
        meta = data["metadata"]
        # The interpreters the servers ran under, by version and by major.minor (3.13).
        versions = [entry["python"]["version"] for entry in data["backends"].values() if entry.get("python")]
        versions += [".".join(version.split(".")[:2]) for version in versions]
        text = json.dumps([data["scenario"], meta.get("pinning"), meta.get("cpu_count"), versions])
        for number in NUMBER.findall(text):
            value = float(number.replace(",", ""))
            numbers.add(f"{value:g}")
    return numbers


def quoted_findings() -> list[tuple[str, str]]:
    return FINDING.findall(section())


def test_the_readme_quotes_findings_of_the_reference_runs() -> None:
    assert len(quoted_findings()) >= 3, "the results section should quote a few findings beside its charts"


@pytest.mark.parametrize("quote", quoted_findings(), ids=lambda quote: f"{quote[0]}: {quote[1][:40]}")
def test_each_quoted_finding_is_one_its_run_tells(quote: tuple[str, str]) -> None:
    scenario, sentence = quote
    told = [finding.text for finding in stored_findings(run(scenario))]
    assert sentence.strip() in told, f"{scenario} tells no such finding; it tells: {told}"


def test_every_other_number_in_the_section_is_a_setting_of_the_runs() -> None:
    text = section()
    text = FINDING.sub(" ", text)  # the quoted findings, checked above
    text = REF.sub(" ", text)  # the checked figures
    text = re.sub(r"`[^`]*`", " ", text)  # code: flags, commands, routes as written
    text = re.sub(r"\]\([^)]*\)", "]", text)  # link and image targets (dated run directories)
    text = re.sub(r"<!--.*?-->", " ", text, flags=re.S)
    allowed = configured_numbers()
    unchecked = [n for n in NUMBER.findall(text) if f"{float(n.replace(',', '')):g}" not in allowed]
    assert not unchecked, (f"numbers in the README's results section that no reference run configured and no "
                           f"<!-- ref --> checks: {unchecked}")
