"""How compare prints a comparison: a text table for a terminal, GitHub markdown for a
pull-request comment, JSON for tools (its keys stable within JSON_SCHEMA); with a
threshold, the regression gate's findings after the tables."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from harness.charts.compare import NOT_SIGNIFICANT, P99, THROUGHPUT, Cell, Comparison, Row, RunInfo, compare
from harness.charts.compare_gate import Regression, missing, regressions, untested
from harness.charts.compare_stats import CONFIDENCE, TEST_NAME
from harness.results.units import ms_text

FORMATS = ("text", "markdown", "json")
# What each figure of a table is, said beside it: not the summary table's figure (the one
# repetition with the median good req/s, harness.results.summary), so one run can read 51,106
# there and 40,543 here. The test's ratio is of geometric means, so the figures are too.
AGGREGATE = "the geometric mean of the repetitions (summary: the repetition with the median)"
# Of --format json: bump when a key changes meaning or goes away. 2: a backend that failed is
# one gate regression (its level keys and measure None, "error" its first line), not one per
# level; gate["missing"] added.
JSON_SCHEMA = 2


def compare_runs(paths: Sequence[Path], *, force: bool = False, chart_dir: Path | None = None,
                 format: str = "text", gate_pct: float | None = None) -> str:
    """compare, printed: as a text table, GitHub markdown or JSON (see render)."""
    return render(compare(paths, force=force, chart_dir=chart_dir), format, gate_pct=gate_pct)


def render(comparison: Comparison, format: str = "text", *, gate_pct: float | None = None) -> str:
    """The comparison as a text table (format "text"), GitHub markdown for a pull-request
    comment ("markdown") or JSON for tools ("json", keys stable within JSON_SCHEMA). With
    gate_pct, also the regressions found at that threshold."""
    if format == "json":
        return _json(comparison, gate_pct)
    markdown = format == "markdown"
    runs = comparison.runs
    lines = [f"{'**concurbench compare**: ' if markdown else ''}comparing {len(runs)} runs of "
             f"{comparison.scenario!r} on {comparison.machine}"]
    lines += [("- " if markdown else "") + warning for warning in comparison.warnings]
    for run in runs:
        commit = (run.commit or "")[:10] + ("+dirty" if run.dirty else "")
        lines.append(f"{'- ' if markdown else '  '}{run.label}{' (base)' if run is runs[0] else ''}: "
                     f"{run.date or '?'}  commit {commit or 'unknown'}  status {run.status or '?'}")
    lines += [""] if markdown else []  # else the line below would continue the list's last item
    lines += [f"test: {TEST_NAME}, two-sided {CONFIDENCE:.0%}: each ratio is run/base with its "
              f"{CONFIDENCE:.0%} CI, \"{NOT_SIGNIFICANT}\" when the CI includes 1; each figure is the "
              f"geometric mean of the repetitions"]
    for measure, title in ((THROUGHPUT, f"throughput: {comparison.throughput}, {AGGREGATE}"),
                           (P99, f"p99 latency (ms), {AGGREGATE}: lower is better")):
        header, body = _table([row for row in comparison.rows if row.measure == measure], runs)
        lines += ["", f"#### {title}" if markdown else title]
        lines += _markdown_table(header, body) if markdown else _text_table(header, body)
    if comparison.chart_dir is not None:
        lines += ["", f"overlay charts: {len(comparison.charts) // 2} written to {comparison.chart_dir}"]
    if gate_pct is not None:
        found = regressions(comparison, gate_pct)
        lines += ["", f"{'**' if markdown else ''}regression gate{'**' if markdown else ''}: "
                      f"significant and more than {gate_pct:g}% worse than {runs[0].label} "
                      f"(throughput down, or p99 up), or failed: "
                      + (f"{len(found)} found" if found else "none")]
        lines += [f"{'- ' if markdown else '  '}{regression.line()}" for regression in found]
        unjudged, absent = untested(comparison), missing(comparison)
        parts = ([f"{unjudged} untested (1 repetition: run with --repeat 2 or more)"] if unjudged else []) + (
            [f"{absent} missing (a level the base has and a later run lacks)"] if absent else [])
        if parts:
            lines.append(f"{'- ' if markdown else '  '}could not judge {unjudged + absent} comparison(s): "
                         + ", ".join(parts))
    return "\n".join(lines)


def _table(rows: Sequence[Row], runs: Sequence[RunInfo]) -> tuple[list[str], list[list[str]]]:
    """A table's header and rows: backend, load, the base's figure, then per later run its
    figure, ratio, CI and verdict."""
    unit = rows[0].unit if rows else ""
    header = ["backend", "load", f"{runs[0].label} {unit}"]
    for run in runs[1:]:
        header += [f"{run.label} {unit}", "ratio", f"{CONFIDENCE:.0%} CI", "verdict"]
    body = []
    for row in rows:
        cells = [row.backend, row.load, _figure(row.base, row.measure)]
        for cell in row.others:
            ratio = cell.ratio
            cells += [_figure(cell, row.measure), "—" if ratio is None else f"{ratio.value:.2f}x",
                      "—" if ratio is None or ratio.low is None else ratio.interval(), cell.verdict]
        body.append(cells)
    return header, body


def _figure(cell: Cell, measure: str) -> str:
    if cell.value is None:
        return "failed" if cell.status == "failed" else "—"
    return ms_text(cell.value, form=".2f") if measure == P99 else f"{cell.value:,.0f}"


def _text_table(header: list[str], body: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
    left = {i for i, name in enumerate(header) if name in ("backend", "verdict")}

    def line(cells: list[str]) -> str:
        return "  ".join(cell.ljust(width) if i in left else cell.rjust(width)
                         for i, (cell, width) in enumerate(zip(cells, widths))).rstrip()
    return [line(header), line(["-" * width for width in widths]), *map(line, body)]


def _markdown_table(header: list[str], body: list[list[str]]) -> list[str]:
    align = ["---" if name in ("backend", "verdict") else "---:" for name in header]
    return ["| " + " | ".join(cells) + " |" for cells in (header, align, *body)]


def _json(comparison: Comparison, gate_pct: float | None) -> str:
    def cell(c: Cell) -> dict[str, Any]:
        ratio = c.ratio
        return {"run": c.run, "status": c.status, "value": c.value, "verdict": c.verdict or None,
                "ratio": None if ratio is None else ratio.value,
                "ci_low": None if ratio is None else ratio.low, "ci_high": None if ratio is None else ratio.high,
                "significant": None if ratio is None else ratio.significant}

    def row(r: Row) -> dict[str, Any]:
        return {"backend": r.backend, **_level(r), "measure": r.measure,
                "unit": "us" if r.measure == P99 else r.unit, "base": cell(r.base), "runs": [cell(c) for c in r.others]}
    def regression(g: Regression) -> dict[str, Any]:
        if g.failure is not None:
            return {"backend": g.failure.backend, "load": None, "users": None, "rate": None, "idle_connections": None,
                    "measure": None, "run": g.failure.run, "status": "failed", "error": g.failure.error}
        assert g.row is not None and g.cell is not None
        return {"backend": g.row.backend, **_level(g.row), "measure": g.row.measure, **cell(g.cell)}
    document = {
        "schema": JSON_SCHEMA, "scenario": comparison.scenario, "machine": comparison.machine,
        "test": {"name": TEST_NAME, "confidence": CONFIDENCE}, "throughput": comparison.throughput,
        "base": comparison.runs[0].label, "runs": [run.to_dict() for run in comparison.runs], "warnings": list(comparison.warnings),
        "rows": [row(r) for r in comparison.rows], "charts": list(comparison.charts),
        "gate": None if gate_pct is None else {
            "threshold_pct": gate_pct, "untested": untested(comparison), "missing": missing(comparison),
            "regressions": [regression(g) for g in regressions(comparison, gate_pct)]},
    }
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False)


def _level(row: Row) -> dict[str, Any]:
    _, users, rate, idle = row.level
    return {"load": row.load, "users": users, "rate": rate, "idle_connections": idle}
