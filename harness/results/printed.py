"""What a run prints: the summary table, the capacity table of a rate search and the
findings, as plain text (the end of a run, `concurbench summary RUN_DIR`) or as GitHub
markdown (`summary --markdown`, what a README or a pull request pastes). The rows come from
harness.results.summary and harness.results.capacity; this module only lays them out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from harness.results.capacity import BACKOFF, ROUNDS_AGGREGATE, capacities, objective, p99_text
from harness.results.findings import format_findings, stored_findings
from harness.results.model import Run, as_run
from harness.results.steps import CONTENDED, FLAG_MEANINGS, SHARED_CPU, SHARED_CPU_LOW_PERCENT
from harness.results.summary import SummaryRow, summary_rows
from harness.results.units import ms_text


@dataclass(frozen=True)
class Table:
    """A table to print: a title, a line for each mark it uses, the header and rows, which
    columns read as names (left-aligned; the rest are numbers), and lines under it (a failed
    backend and why)."""

    title: str
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    left: frozenset[int]
    notes: tuple[str, ...] = ()
    after: tuple[tuple[str, str], ...] = ()

    def text(self) -> str:
        """Aligned columns under a line of dashes, the title and notes above, after a blank line."""
        lines = [self.header, *self.rows]
        widths = [max(len(line[i]) for line in lines) for i in range(len(self.header))]
        widths[0] = max([widths[0], *(len(name) for name, _ in self.after)])
        body = ["  ".join(cell.ljust(w) if i in self.left else cell.rjust(w)
                          for i, (cell, w) in enumerate(zip(line, widths))).rstrip() for line in lines]
        return "\n".join(["", self.title, *self.notes, body[0], "-" * max(len(line) for line in body), *body[1:],
                          *(f"{name.ljust(widths[0])}  {text}" for name, text in self.after)])

    def markdown(self) -> str:
        """The title in italics, the notes as a list, a GitHub table, then the lines under it."""
        lines = [f"*{_md(self.title)}*", ""]
        if self.notes:  # "- \>=": a note starting with ">" is not a blockquote
            lines += [*(f"- {_md(note)}".replace("- >", "- \\>", 1) for note in self.notes), ""]
        lines.append("| " + " | ".join(self.header) + " |")
        lines.append("|" + "|".join(":---" if i in self.left else "---:" for i in range(len(self.header))) + "|")
        lines += ["| " + " | ".join(_md(cell) for cell in row) + " |" for row in self.rows]
        if self.after:
            lines += ["", *(f"- **{_md(name)}**: {_md(text)}" for name, text in self.after)]
        return "\n".join(lines)


def _md(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|")


def printed_summary(results: Run | Mapping[str, Any], *, markdown: bool = False) -> str:
    """Everything `concurbench summary` prints of a run: the summary table, the capacity
    table when a rate search ran, and the findings; each as text, or all as markdown."""
    results = as_run(results)
    tables = [summary(results), *([capacity] if (capacity := capacity_summary(results)) else [])]
    if markdown:
        parts = [table.markdown() for table in tables] + [findings_markdown(results)]
    else:
        parts = [table.text() for table in tables] + [format_findings(stored_findings(results))]
    return "\n\n".join(part.strip("\n") for part in parts if part)


def findings_markdown(results: Run) -> str:
    """The findings as a bold heading and a list, one sentence each; "" when there are none."""
    found = stored_findings(results)
    if not found:
        return ""
    return "\n".join(["**Findings**", "", *(f"- {_md(finding.text)}" for finding in found)])


# --- the summary table ---------------------------------------------------------------------

TABLE_HEADER = ("backend", "load", "req/s", "good req/s", "p50 ms", "p99 ms", "errors", "error share",
                "starved", "dropped", "CPU µs/req", "steal %", "flags")
_LEFT = frozenset({0, 1, 12})  # the names and the flags; the rest are numbers
LOWER_BOUND_NOTE = (">= : a lower bound: the percentile reaches requests that timed out or were still "
                    "waiting, counted at their wait so far")


def summary(results: Run) -> Table:
    """One row per backend and load level (harness.results.summary), the marks explained above
    it, failed or interrupted backends under it."""
    rows = summary_rows(results.steps)
    return Table(title=summary_title(results, rows), header=TABLE_HEADER, rows=tuple(_cells(row) for row in rows),
                 left=_LEFT, notes=tuple(legend(rows)), after=tuple(_failures(results)))


def summary_table(results: Run | Mapping[str, Any]) -> str:
    """The summary as a plain-text table; failed or interrupted backends under it, one line each."""
    return summary(as_run(results)).text()


def summary_markdown(results: Run | Mapping[str, Any]) -> str:
    """The summary as a GitHub markdown table, the title above it and failed or interrupted
    backends as a list under it."""
    return summary(as_run(results)).markdown()


def _dash(value: Any, form: str) -> str:
    """value formatted with `form` (a format spec), or "-" when it is missing."""
    return "-" if value is None else format(value, form)


def _fmt_rps(value: float | None) -> str:
    return _dash(value, ",.0f" if value is None or value >= 100 else ",.1f")


def _fmt_share(share: float | None) -> str:
    if share is None:
        return "-"
    if share == 0:
        return "0%"
    return "<0.1%" if share < 0.001 else f"{share:.1%}"


def _fmt_cpu(us: float | None) -> str:
    return _dash(us, ",.0f" if us is None or us >= 1000 else ",.1f")


def _cells(row: SummaryRow) -> tuple[str, ...]:
    return (row.backend, row.load, _fmt_rps(row.rps), _fmt_rps(row.good_rps),
            ms_text(row.p50_us, bound=row.bound("p50_us")), ms_text(row.p99_us, bound=row.bound("p99_us")),
            f"{row.errors:,}", _fmt_share(row.error_share), _dash(row.starved, ","),
            _dash(row.dropped, ","), _fmt_cpu(row.cpu_us_per_request), _dash(row.steal_pct, ".1f"),
            flags_text(row))


def flags_text(row: SummaryRow) -> str:
    """The row's flags as the table shows them: shared-cpu with the driver's share of the
    server's CPUs beside it ("shared-cpu (driver 7.2%: may be low)"), contended with the other
    processes' ("contended (others 12.0%)")."""
    def shown(flag: str) -> str:
        others = row.others_pct
        if flag == CONTENDED and others is not None:
            return f"{flag} (others {others:.1f}%)"
        share = row.driver_share_pct
        if flag != SHARED_CPU or share is None:
            return flag
        return f"{flag} (driver {share:.1f}%{': may be low' if share > SHARED_CPU_LOW_PERCENT else ''})"
    return ", ".join(shown(flag) for flag in row.flags)


def summary_title(run: Run, rows: Sequence[SummaryRow]) -> str:
    """What the table is, in one line: which repetition a row is, and what is summed."""
    name = run.scenario.get("name", "?")
    measure = "good req/s" if any(row.good_rps is not None for row in rows) or not rows else "req/s"
    return (f"{name}: each row is the repetition with the median {measure}, with its own percentiles; "
            "errors and dropped summed over repetitions, starved and steal the largest, flags of any")


def legend(rows: Sequence[SummaryRow]) -> list[str]:
    """What the marks in these rows mean: ">=" and each flag that appears, one line each."""
    notes = [LOWER_BOUND_NOTE] if any(any(row.lower_bound.values()) for row in rows) else []
    flags = sorted({flag for row in rows for flag in row.flags})
    return notes + [f"{flag}: {FLAG_MEANINGS.get(flag, 'a flag this concurbench has no explanation for')}"
                    for flag in flags]


def _failures(run: Run) -> list[tuple[str, str]]:
    """Failed or interrupted backends, each with its one-line reason."""
    return [(name, f"{entry.status.upper()}: {first_line(entry.error)}")
            for name, entry in run.backends.items() if entry.status != "ok"]


def first_line(text: str | None) -> str:
    """The first line of a message (a backend's error), or nothing."""
    return ((text or "").strip().splitlines() or [""])[0]


# --- the capacity table --------------------------------------------------------------------

CAPACITY_HEADER = ("series", "capacity req/s", "held", "median p99 ms", "median good req/s", "median CPU µs/req",
                   "search found", "probes", "note")


def capacity_summary(results: Run) -> Table | None:
    """The capacity each rate search found, one row per series; None for a run without one."""
    rows = capacities(results)
    if not rows:
        return None
    cells = []
    for row in rows:
        told = row.told
        cells.append((row.series, _num(row.rate) + ("+" if row.floor else ""),
                      f"{told.held}/{told.rounds}" if told else "-", p99_text(told),
                      _num(told.good_rps if told else None),
                      _num(told.cpu_us_per_request if told else None, places=1),
                      _num(row.found), str(row.probes), row.note))
    title = (f"capacity within {objective(results)}: the rate found by search, or {BACKOFF:.0%} of it, whichever "
             "held in most rounds (open loop, latency from each intended send; held: the rounds at that rate "
             f"within it; + a floor; p99, good req/s and CPU: {ROUNDS_AGGREGATE}; >= a lower bound)")
    return Table(title=title, header=CAPACITY_HEADER, rows=tuple(cells), left=frozenset({0, 8}))


def capacity_table(results: Run | Mapping[str, Any]) -> str:
    """The printable capacity table of a rate search ("" for a run without one)."""
    table = capacity_summary(as_run(results))
    return table.text() if table else ""


def _num(value: float | None, places: int = 0) -> str:
    return "-" if value is None else f"{value:,.{places}f}"
