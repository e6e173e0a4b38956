"""A run's findings: a short list of sentences, each with its numbers, derived from
results.json alone: where a backend saturates, starves users, refuses, blocks
short requests behind slow ones, hits one CPU's ceiling (the GIL's, where it is), what more
server CPUs buy it (speedup), who keeps up as the round trip of an emulated link grows and who
hits a cap (round-trip), what a free-threaded build costs on one CPU, measured the
driver or the machine's neighbours instead of the server, and how it scales (a USL fit).

Each finding is a JSON-ready dict: {"kind", "backend", "level", "text", "figures", "caveat"}.
A finding drawn from a step flagged driver-bound, noisy, contended, shared-cpu or gil-on says so: in its
caveat and in its sentence. Figures are those the summary table shows (harness.results.summary), so a reader
can find every number of a sentence in the table (a level's throughput too: that of the
repetition with the median goodput).
The rules for each kind live in harness.results.finding_rules and the finding_* modules
beside it; `FINDING_RULES` lists them, in the order findings are told. A rule that cannot
apply to the run's shape (a USL fit on fewer user levels than it has parameters) tells no
finding; `shape_notes` says so once. `verdict_findings` picks the few findings that change what a
reader would choose, for the top of the report.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from harness.results.capacity import capacity_findings
from harness.results.finding_ceiling import gil_ceiling
from harness.results.finding_free_threading import free_threading_cost
from harness.results.finding_rules import RunView, driver_bound, head_of_line, noisy, refusals, saturation, starvation
from harness.results.finding_round_trip import round_trip
from harness.results.finding_speedup import scaling, speedup
from harness.results.finding_usl import cannot_apply, scalability, shape_note
from harness.results.model import Finding, Run, as_run, finding_of

# The rules, in the order their findings are told; each returns its findings in the order
# the summary table lists backends. A rate search's capacity findings come first (see findings).
FINDING_RULES: tuple[tuple[str, Callable[[RunView], list[dict[str, Any]]]], ...] = (
    ("saturation", saturation),
    ("starvation", starvation),
    ("refusals", refusals),
    ("head-of-line", head_of_line),
    ("gil-ceiling", gil_ceiling),
    ("scaling", scaling),
    ("speedup", speedup),
    ("round-trip", round_trip),
    ("free-threading-cost", free_threading_cost),
    ("driver-bound", driver_bound),
    ("noisy", noisy),
    ("scalability", scalability),
)
FINDING_KINDS = ("capacity", *(kind for kind, _ in FINDING_RULES))


def findings(results: Run | Mapping[str, Any]) -> list[dict[str, Any]]:
    """The findings of a run (a Run, or the document the orchestrator is writing), as dicts for
    results.json: by kind (FINDING_RULES' order), then backend (the summary table's order)."""
    results = as_run(results)
    run = RunView.of(results)
    found: list[dict[str, Any]] = capacity_findings(results)  # a rate search's answer, first
    for _, rule in FINDING_RULES:
        found.extend(rule(run))
    return found


def stored_findings(run: Run) -> tuple[Finding, ...]:
    """The findings the run stored, so that `report` tells what the run told; derived now for
    a run that stored none (recorded by an older version). A stored one that cannot apply to
    the run's shape is left out, as findings() leaves it out now (see shape_notes)."""
    if run.findings is None:
        return tuple(finding_of(found) for found in findings(run))
    view = RunView.of(run)
    return tuple(finding for finding in run.findings if not cannot_apply(finding, view))


def shape_notes(run: Run) -> list[str]:
    """What the findings leave out because the run's shape rules it out, a sentence each."""
    note = shape_note(RunView.of(run))
    return [note] if note else []


# The kinds a verdict draws from, most decisive first: what rules a model out (users left
# without an answer, requests refused, short requests stuck behind slow ones), the capacity a
# search found, who keeps up as the round trip grows, what more cores or another build change, the one-CPU ceiling every model
# shares; then where each stops scaling. A caveat on the measurement (driver-bound, noisy) is
# no verdict: it stays in the full list, and in the sentence of each finding it touches.
VERDICT_KINDS = ("starvation", "refusals", "head-of-line", "capacity", "round-trip", "scaling",
                 "free-threading-cost", "gil-ceiling", "speedup", "saturation", "scalability")
# Three or four lines fit a first screen beside the headline chart; more is the full list again.
VERDICT_SIZE = 4


def verdict_findings(found: Sequence[Finding], size: int = VERDICT_SIZE) -> list[Finding]:
    """The few findings that change what a reader would choose, ranked: the first of each kind
    in VERDICT_KINDS' order, then the second of each, until `size`; shown kind by kind.
    Capacities rank by the rate held; a USL fit that was not made is no verdict."""
    by_kind: dict[str, list[Finding]] = {kind: [] for kind in VERDICT_KINDS}
    for finding in found:
        if finding.kind in by_kind and not (finding.kind == "scalability" and not finding.figures.get("ok")):
            by_kind[finding.kind].append(finding)
    by_kind["capacity"].sort(key=lambda finding: -(finding.figures.get("rate") or 0.0))
    picked: list[Finding] = []
    for rank in range(size):
        picked += [kind_found[rank] for kind_found in by_kind.values() if len(kind_found) > rank]
    picked = picked[:size]
    order = {id(finding): i for i, finding in enumerate(finding for kind in by_kind.values() for finding in kind)}
    return sorted(picked, key=lambda finding: order[id(finding)])


def findings_text(results: Run | Mapping[str, Any]) -> str:
    """The findings as the terminal prints them after the summary table: "findings:" and one
    "  - sentence" line each (see stored_findings); an empty string when there are none."""
    return format_findings(stored_findings(as_run(results)))


def format_findings(found: Sequence[Finding]) -> str:
    """"findings:" and one "  - sentence" line per finding; "" when there are none."""
    if not found:
        return ""
    return "\n".join(["findings:", *(f"  - {finding.text}" for finding in found)])
