"""The HTML report of one run: run_dir/report.html, a single self-contained page.

The first screen is what a reader came for: a verdict (the few findings that change what one
would choose, ranked: harness.results.findings.verdict_findings) and the scenario's headline
chart. Below them: every finding, the capacity a search found, the summary table, the flags by
backend and level, failures, the other charts, and the details (the scenario, the machine).

The charts are embedded as base64 PNG data URIs and the styles are inline, so the page
opens from the file system, survives being mailed or attached to an issue, and needs no
server and no JavaScript. Everything comes from results.json (measurement rule 7).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any, Mapping, Sequence

from harness.charts.capacity import capacity_html
from harness.charts.levels import failed_backends, summarize_steps
from harness.charts.report_tables import escape, flag_notes_html, open_loop_html, summary_html, warnings_html
from harness.charts.runs import draw_all
from harness.charts.style import LATENCY, RESPONSE_TIME, SERVICE_TIME, machine_line
from harness.results.findings import shape_notes, stored_findings, verdict_findings
from harness.results.model import Finding, Run, load
from harness.results.store import write_atomically
from harness.results.summary import floor_line
from harness.results.words import counted

REPORT_FILE = "report.html"
CHARTS_DIR = "charts"  # beside report.html: the PNG and SVG files the page embeds
# The chart a run's shape makes its headline, the first drawn of these: a rate search's
# capacity, a round-trip sweep, a core sweep, an idle-connection sweep, an open-loop sweep,
# else throughput against users. Where the verdict tells of short requests stuck behind slow ones, the
# latency chart shows it and leads instead.
HEADLINE_CHARTS = ("capacity", "round_trip", "server_cores", "idle_connections", "latency_vs_rate",
                   "throughput_vs_users")
BLOCKING_HEADLINE = "latency_vs_users"

CHART_CAPTIONS = {
    "throughput_vs_users": "Median requests/s against users; bars span the repetitions. Dashed with hollow "
                           "markers: good requests/s (2xx/3xx answers) where it differs. Hollow markers are "
                           "driver-bound. Dotted: the Universal Scalability Law fitted to each backend (where it fits), "
                           "a diamond at the peak it predicts.",
    "latency_vs_users": f"Closed loop {LATENCY}: p50 (solid) and p99 (dashed) against users, log scale, of the "
                        "repetition with the median goodput. A triangle marks a lower bound.",
    "latency_spectrum": f"Closed loop {LATENCY}: every percentile from 0 to 99.99%, merged over the "
                        "repetitions, at the highest load level. Triangles: lower bounds.",
    "timeseries": f"Requests and p99 {LATENCY} per second of one repetition: a red band is a second "
                  "in which no request completed (a stall).",
    "resources": "Server CPU and memory against users: the PSS of a process tree (a page its processes "
                 "share counts once), the RSS of a single process.",
    "errors": "Errors by kind, summed over every load level and repetition.",
    "cpu_per_request": "Server CPU µs per request (the whole process tree) at every load level: what one "
                       "answer costs. The bar is the repetition with the median goodput; whiskers span the "
                       "repetitions.",
    "latency_vs_rate": f"Open loop: {RESPONSE_TIME} against the offered rate (coordinated omission corrected); "
                       f"dotted, the p99 {SERVICE_TIME}, what a closed-loop tool would report.",
    "achieved_vs_offered": "Open loop: achieved against offered requests/s; below the diagonal the "
                           "server is saturated. Dashed: good requests/s where it differs.",
    "idle_connections": f"c10k: p99 {RESPONSE_TIME} of the light load, server memory and requests without "
                        "a good answer, against idle connections held.",
    "capacity": "Capacity: the highest offered requests/s each backend held within the objective, found by "
                "search, with the server CPU µs per request at that rate. Hatched: a floor (the range or the "
                "driver ran out first, marked +). No bar, an x: the rate the search held, which most rounds "
                "did not.",
    "capacity_search": "Each search's probes in order (log scale): filled where the probe held the objective, "
                       "hollow where it missed; the rate ramps x4, then halves the gap.",
    "server_cores": "Good requests/s and p99 against server cores at the highest user level, one line per backend, "
                    "interpreter and request; dotted, the ideal of each (linear from its one-core point): pre-fork "
                    "workers, sub-interpreters and free-threaded threads should scale with cores; a single event "
                    "loop should not.",
    "round_trip": "Good requests/s and p99 against the round trip of the emulated link at the highest user level, "
                  "one line per backend; dashed, the most that many closed-loop users can ask for (users / round "
                  "trip, Little's law): a model that answers every connection at once follows it down, one that "
                  "serves a connection at a time, or a pool's few, falls below it.",
}

CSS = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #222;
       max-width: 1200px; margin: 1.2em auto; padding: 0 1em; }
p, ul, ol, dl, figure, .verdict { max-width: 62em; }
h1 { margin: 0 0 0.1em; } .sub { color: #555; margin-top: 0; }
.verdict { background: #f3f7fc; border-left: 4px solid #2a6cc0; padding: 0.3em 1em 0.5em; margin: 0.8em 0; }
.verdict h2 { margin: 0.2em 0; font-size: 1.15em; } .verdict ol { margin: 0.2em 0; padding-left: 1.4em; }
.verdict li { margin: 0.15em 0; } .more { color: #555; font-size: 0.9em; margin: 0.3em 0 0; }
.wide { overflow-x: auto; max-width: 100%; margin: 0.5em 0 1.5em; }
.wide table { margin: 0; font-size: 0.9em; } td.flags { white-space: normal; min-width: 8em; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { padding: 0.25em 0.6em; border-bottom: 1px solid #ddd; text-align: right; }
td { white-space: nowrap; }
th { background: #f4f4f4; } td.name, th.name { text-align: left; }
tr.flagged td { background: #fffbea; }
.swatch { display: inline-block; width: 0.8em; height: 0.8em; margin-right: 0.4em;
          border-radius: 2px; vertical-align: baseline; }
.flag { display: inline-block; padding: 0 0.45em; border-radius: 0.8em; font-size: 0.8em;
        font-weight: 600; white-space: nowrap; text-decoration: none; color: inherit; }
.flag-driver-bound { background: #ffe8a3; border: 1px solid #d4a000; }
.flag-high-spread { background: #fcd5d3; border: 1px solid #c0392b; }
.flag-starved { background: #e3d5fc; border: 1px solid #6c3fc0; }
.flag-littles-law { background: #d5e8fc; border: 1px solid #2a6cc0; }
.flag-noisy, .flag-contended { background: #e6e6e6; border: 1px solid #777; }
.flag-censored, .flag-dropped { background: #fde3c8; border: 1px solid #c06a1a; }
.status { padding: 0.6em 1em; border-radius: 4px; background: #fcd5d3; }
.failed { color: #a00; } dt { font-weight: 600; } dd { margin: 0 0 0.4em 1.5em; }
details { margin: 0.4em 0; } summary { cursor: pointer; }
pre { background: #f6f6f6; padding: 0.6em; overflow-x: auto; font-size: 0.85em; }
figure { margin: 1.2em 0; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figure.headline { margin-top: 0.6em; }
td.why { white-space: normal; min-width: 24em; } .notes { color: #555; }
table.warnings td { vertical-align: top; } table.warnings tr.same-level td { border-top: none; }
figcaption { color: #555; font-size: 0.9em; }
"""


def write_report(run_dir: Path, *, out_dir: Path | None = None) -> Path:
    """Draw the run's charts into charts/ and write report.html, in out_dir (created if need
    be) or else in run_dir."""
    run_dir = Path(run_dir)
    results = load(run_dir)
    out_dir = run_dir if out_dir is None else Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    charts = [path for path in draw_all(results, out_dir / CHARTS_DIR) if path.suffix == ".png"]
    path = out_dir / REPORT_FILE
    write_atomically(path, render_report(results, charts))
    return path


def render_report(results: Run, charts: Sequence[Path]) -> str:
    """The whole page as text, with the given PNG charts embedded: the verdict and the
    headline chart first, then the rest (the module's docstring lists it)."""
    scenario, metadata = results.scenario, results.metadata
    summaries = summarize_steps(results)
    found = stored_findings(results)
    verdict = verdict_findings(found)
    headline = headline_chart(charts, verdict)
    title = f"concurbench: {scenario.get('name', '?')}"
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        f'<p class="sub">{escape(scenario.get("description", ""))}<br>{escape(machine_line(metadata))}'
        f' · {escape(metadata.date or "")}</p>',
        _status(results), _events(results),
        _verdict(verdict, len(found)),
        _figure(headline, "headline") if headline else "",
        _findings(found), capacity_html(results),
        "<h2>Summary</h2>", summary_html(results, failed_backends(results)), flag_notes_html(),
        open_loop_html(results),
        warnings_html(results, summaries),
        _failures(results),
        *(["<h2>Charts</h2>", *(_figure(path) for path in charts if path != headline)]
          if any(path != headline for path in charts) else []),
        _details(results),
        "</body></html>",
    ]
    return "\n".join(part for part in parts if part) + "\n"


def headline_chart(charts: Sequence[Path], verdict: Sequence[Finding]) -> Path | None:
    """The chart that shows the run's lesson (HEADLINE_CHARTS); None when none was drawn."""
    blocking = any(finding.kind == "head-of-line" for finding in verdict)
    by_name = {path.stem: path for path in charts}
    for name in (BLOCKING_HEADLINE, *HEADLINE_CHARTS) if blocking else HEADLINE_CHARTS:
        if name in by_name:
            return by_name[name]
    return None


def _status(results: Run) -> str:
    status = results.status
    if status == "complete":
        return ""
    why = {"interrupted": "the run was interrupted: later steps are missing",
           "failed": "the run failed: what it measured before failing is below",
           "running": "the run had not finished (or died) when these results were written"}
    return f'<p class="status"><strong>{escape(status)}</strong>: {escape(why.get(status, ""))}</p>'


def _events(results: Run) -> str:
    """What happened to the run (a backend or driver failing, a Ctrl+C, a failed write)."""
    if not results.events:
        return ""
    items = "".join(f'<li><span class="failed">{escape(event.kind)}</span> '
                    f'{escape(event.t)}: {escape(event.detail)}</li>' for event in results.events)
    return f'<ul class="events">{items}</ul>'


def _verdict(verdict: Sequence[Finding], total: int) -> str:
    """The few findings that change a choice, ranked, above everything else; nothing when the
    run found nothing."""
    if not verdict:
        return ""
    items = "".join(f'<li class="finding finding-{escape(item.kind)}">{escape(item.text)}</li>' for item in verdict)
    more = (f'<p class="more">All {total} findings, the summary table and the flags are '
            '<a href="#findings">below</a>.</p>' if total > len(verdict) else "")
    return f'<section class="verdict" id="verdict"><h2>Verdict</h2><ol>{items}</ol>{more}</section>'


def _findings(found: Sequence[Finding]) -> str:
    """The run's findings, one sentence each (stored_findings); nothing when there are none."""
    if not found:
        return ""
    items = "".join(f'<li class="finding finding-{escape(item.kind)}">{escape(item.text)}</li>' for item in found)
    return f'<section id="findings"><h2>Findings</h2>\n<ul class="findings">{items}</ul></section>'


def _failures(results: Run) -> str:
    """Failed backends (error and stderr tail) and failed steps of the others."""
    failed = failed_backends(results)
    blocks = []
    for name, error in failed.items():
        entry = results.backends.get(name)
        tail = entry.stderr_tail if entry else ""
        blocks.append(
            f'<details><summary><span class="failed">✗ {escape(name)} failed</span>: {escape(error)}'
            f"</summary><pre>{escape(tail) if tail else '(no stderr)'}</pre></details>")
    for step in results.steps:
        if step.status == "failed" and step.backend not in failed:
            blocks.append(
                f'<details><summary><span class="failed">✗ {escape(step.backend)} at '
                f'{escape(counted(step.users, "user"))}, repetition {escape(step.repetition)}</span>: '
                f'{escape(step.error or "failed")}</summary></details>')
    if not blocks:
        return ""
    return '<h2 id="failures">Failures</h2>\n' + "\n".join(blocks)


def _figure(path: Path, role: str = "") -> str:
    """A chart embedded as a PNG, with its caption and a link to its SVG beside the page."""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    stem = path.stem
    caption = CHART_CAPTIONS.get(stem.split("_u")[0] if stem.startswith("timeseries") else stem, "")
    svg = path.with_suffix(".svg")
    link = (f' <a href="{escape(path.parent.name)}/{escape(svg.name)}">SVG</a>' if svg.exists() else "")
    role_class = f' class="{role}"' if role else ""
    return (f'<figure{role_class}><img src="data:image/png;base64,{data}" '
            f'alt="{escape(stem)}" width="800"><figcaption>{escape(caption)}{link}</figcaption></figure>')


def _details(results: Run) -> str:
    """What the run was, at the end: the latency floor, what the run's shape left out of the
    findings, the scenario, the machine and software."""
    metadata = results.metadata
    notes = ([floor_line(metadata.latency_floor)] if "latency_floor" in metadata.raw else []) + shape_notes(results)
    listed = '<ul class="notes">' + "".join(f"<li>{escape(note)}</li>" for note in notes) + "</ul>" if notes else ""
    return "\n".join(['<h2 id="details">Details</h2>', listed, "<h3>Scenario</h3>",
                      _definition_list(results.scenario), "<h3>Machine and software</h3>",
                      _definition_list(metadata.raw)])


def _definition_list(mapping: Mapping[str, Any]) -> str:
    items = "".join(f"<dt>{escape(key)}</dt><dd>{_value(value)}</dd>" for key, value in mapping.items())
    return f"<dl>{items}</dl>"


def _value(value: Any) -> str:
    """Scalars as text, small mappings inline, anything nested as compact JSON."""
    if isinstance(value, Mapping) and all(not isinstance(v, (Mapping, list)) for v in value.values()):
        return ", ".join(f"{escape(k)}: {escape(v)}" for k, v in value.items()) or "—"
    if isinstance(value, (Mapping, list)):
        return f"<code>{escape(json.dumps(value, sort_keys=True))}</code>"
    return escape("—" if value is None else value)
