"""The HTML report of one run: run_dir/report.html, a single self-contained page.

The charts are embedded as base64 PNG data URIs and the styles are inline, so the page
opens from the file system, survives being mailed or attached to an issue, and needs no
server and no JavaScript. Everything comes from results.json (measurement rule 7).
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any, Mapping, Sequence

from harness.charts.notes import FLAGS, step_warnings
from harness.charts.style import LATENCY, RESPONSE_TIME, SERVICE_TIME, backend_colour, machine_line
from harness.results.metrics import summarize
from harness.charts.capacity import capacity_html
from harness.charts.levels import failed_backends, starved_notes, summarize_steps
from harness.charts.runs import draw_all
from harness.results.findings import stored_findings
from harness.results.steps import FLAG_MEANINGS, group_levels, median_of
from harness.results.model import Run, Step, load
from harness.results.store import write_atomically
from harness.results.units import ms_text
from harness.results.words import counted
from harness.results.printed import summary_title
from harness.results.summary import PERCENTILES, floor_line, lower_bound, pick_repetition, summary_rows

REPORT_FILE = "report.html"
CHARTS_DIR = "charts"  # beside report.html: the PNG and SVG files the page embeds

# What each flag and warning means, shown once above the table; the badges link here.
FLAG_NOTES = {
    **{flag: FLAG_MEANINGS[flag] for flag in FLAGS},
    "starved": "some users got no answer at all during a window (e.g. queued behind an iterative "
               "server's keep-alive client): each one's wait is in the latency record at its wait so far, "
               "a lower bound",
    "censored": "the latency record holds waits cut short (timeouts at their timeout, starved users and "
                "unsent open-loop requests at their wait so far): a percentile they reach (at or above the "
                "shortest, and which they could move by more than 1%) is a lower bound, shown as ≥",
    "dropped": "open loop: requests that were due but never sent before their window closed (a blocked "
               "connection): in no throughput, and a lower bound in the response time",
}
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
}

CSS = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #222;
       max-width: 1000px; margin: 2em auto; padding: 0 1em; }
h1 { margin-bottom: 0.1em; } .sub { color: #555; margin-top: 0; }
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
    """The whole page as text, with the given PNG charts embedded."""
    scenario, metadata = results.scenario, results.metadata
    summaries = summarize_steps(results)
    title = f"concurbench: {scenario.get('name', '?')}"
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        f'<p class="sub">{_e(scenario.get("description", ""))}<br>{_e(machine_line(metadata))}'
        f' · {_e(metadata.date or "")}'
        + (f'<br>{_e(floor_line(metadata.latency_floor))}' if "latency_floor" in metadata.raw else "") + '</p>',
        _status(results), _events(results),
        _findings(results), capacity_html(results),
        "<h2>Summary</h2>", _flag_notes(), _summary_table(results, failed_backends(results)),
        _open_loop_table(results),
        _warnings(results, summaries),
        _failures(results),
        "<h2>Charts</h2>", *(_figure(path) for path in charts),
        "<h2>Scenario</h2>", _definition_list(scenario),
        "<h2>Machine and software</h2>", _definition_list(metadata.raw),
        "</body></html>",
    ]
    return "\n".join(part for part in parts if part) + "\n"


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _status(results: Run) -> str:
    status = results.status
    if status == "complete":
        return ""
    why = {"interrupted": "the run was interrupted: later steps are missing",
           "failed": "the run failed: what it measured before failing is below",
           "running": "the run had not finished (or died) when these results were written"}
    return f'<p class="status"><strong>{_e(status)}</strong>: {_e(why.get(status, ""))}</p>'


def _events(results: Run) -> str:
    """What happened to the run (a backend or driver failing, a Ctrl+C, a failed write)."""
    if not results.events:
        return ""
    items = "".join(f'<li><span class="failed">{_e(event.kind)}</span> '
                    f'{_e(event.t)}: {_e(event.detail)}</li>' for event in results.events)
    return f'<ul class="events">{items}</ul>'


def _findings(results: Run) -> str:
    """The run's findings, one sentence each (stored_findings); the first section, since
    they are what a reader comes for. Nothing when there are none."""
    found = stored_findings(results)
    if not found:
        return ""
    items = "".join(f'<li class="finding finding-{_e(item.kind)}">{_e(item.text)}</li>' for item in found)
    return f'<h2>Findings</h2>\n<ul class="findings">{items}</ul>'


def _flag_notes() -> str:
    items = "".join(f'<li id="flag-{_e(flag)}">{_badge(flag)} {_e(note)}</li>'
                    for flag, note in FLAG_NOTES.items())
    return f'<ul class="flag-notes">{items}</ul>'


def _badge(flag: str, detail: str = "") -> str:
    """A flag as a labelled badge: readable without colour, and linked to its meaning."""
    text = f"⚠ {flag}{' ' + detail if detail else ''}"
    return f'<a class="flag flag-{_e(flag)}" href="#flag-{_e(flag)}">{_e(text)}</a>'


def _summary_table(results: Run, failed: Mapping[str, str]) -> str:
    """The summary rows (what summary.csv and `concurbench summary` show), every load level,
    with the repetitions' req/s range beside them."""
    rows_data = summary_rows(results.steps)
    levels = group_levels(results.steps)
    head = (f"<caption>{_e(summary_title(results, rows_data))}</caption>"
            "<tr><th class=name>backend</th><th class=name>load</th><th>req/s</th><th>good req/s</th>"
            "<th>req/s over reps (spread)</th><th>p50 ms</th><th>p99 ms</th>"
            "<th>errors (all reps)</th><th>error share</th><th>CPU µs/req</th><th>steal %</th>"
            "<th>reps</th><th class=name>flags</th></tr>")
    rows = []
    for row in rows_data:
        reps = levels[row.backend, row.users, row.rate, row.idle]
        spread = summarize([rep.rps or 0.0 for rep in reps])
        flags = [_badge(flag, f"{spread.spread:.0%}" if flag == "high-spread" else "") for flag in row.flags]
        if row.starved:
            flags.append(_badge("starved", f"{row.starved} of {row.users}"))
        if row.dropped:
            flags.append(_badge("dropped", f"{row.dropped:,}"))
        kinds = ", ".join(f"{kind} {count}" for kind, count in _error_kinds(reps).items() if count)
        rows.append(
            f'<tr class="{"flagged" if flags else ""}">'
            f'<td class=name><span class=swatch style="background:{backend_colour(row.backend)}">'
            f'</span>{_e(row.backend)}</td><td class=name>{_e(row.load)}</td>'
            f"<td><strong>{_num(row.rps)}</strong></td><td><strong>{_num(row.good_rps)}</strong></td>"
            f"<td>{spread.min:,.0f}–{spread.max:,.0f} ({spread.spread:.1%})</td>"
            f"<td>{_ms(row.p50_us, row.bound('p50_us'))}</td><td>{_ms(row.p99_us, row.bound('p99_us'))}</td>"
            f'<td title="{_e(kinds or "none")}">{row.errors:,}</td><td>{_share(row.error_share)}</td>'
            f"<td>{_num(row.cpu_us_per_request, 1)}</td><td>{_num(row.steal_pct, 1)}</td>"
            f"<td>{row.reps}</td><td class=name>{' '.join(flags)}</td></tr>")
    for backend in failed:
        rows.append(f'<tr class="failed-row"><td class=name><span class=swatch style="background:'
                    f'{backend_colour(backend)}"></span>{_e(backend)}</td><td class=name colspan=12>'
                    f'<a class=failed href="#failures">✗ failed: see Failures</a></td></tr>')
    if not rows:
        rows.append('<tr><td class=name colspan=13>no successful step</td></tr>')
    return f'<table class="summary">{head}{"".join(rows)}</table>'


def _error_kinds(reps: Sequence[Step]) -> dict[str, int]:
    kinds: dict[str, int] = {}
    for rep in reps:
        for kind, count in sorted(rep.errors.by_kind().items()):  # as results.json lists them
            kinds[kind] = kinds.get(kind, 0) + count
    return kinds


def _num(value: float | None, places: int = 0) -> str:
    return "—" if value is None else f"{value:,.{places}f}"


def _share(share: float | None) -> str:
    if share is None:
        return "—"
    return "0%" if share == 0 else "&lt;0.1%" if share < 0.001 else f"{share:.1%}"


def _warnings(results: Run, summaries: Mapping[str, Any]) -> str:
    """Every warning a chart may only count ("N more in the report"), and every flagged step
    with what each of its flags means there."""
    from harness.charts.open_loop import dropped_notes, open_loop_levels

    notes = starved_notes(summaries) + dropped_notes(open_loop_levels(results))
    found = step_warnings(results)
    if not notes and not found:
        return ""
    parts = ['<h2 id="warnings">Flags and warnings</h2>']
    if notes:
        parts.append('<ul class="chart-notes">' + "".join(f"<li>{_e(note)}</li>" for note in notes) + "</ul>")
    if found:
        rows = []
        for warning in found:
            for name, text in warning.items:
                rows.append(f"<tr><td class=name>{_e(warning.backend)}</td><td class=name>{_e(warning.load)}</td>"
                            f"<td>{_e(warning.repetition)}</td><td class=name>{_badge(name)}</td>"
                            f'<td class="name why">{_e(text)}</td></tr>')
        parts.append('<table class="warnings"><tr><th class=name>backend</th><th class=name>load</th>'
                     "<th>repetition</th><th class=name>flag</th><th class=name>what it means here</th></tr>"
                     + "".join(rows) + "</table>")
    return "\n".join(parts)


def _open_loop_table(results: Run) -> str:
    """Open-loop levels: achieved rate, response time and service time per offered rate, of
    the repetition with the median goodput."""
    from harness.charts.open_loop import open_loop_levels

    levels = open_loop_levels(results)
    if not levels:
        return ""
    rows = ["<h3>Open loop</h3><table><tr><th class=name>backend</th><th>offered req/s</th>"
            "<th>achieved req/s (median)</th><th>good req/s (median)</th><th>dropped (all reps)</th>"
            f"<th>p50 ms {_e(RESPONSE_TIME)}</th><th>p99 ms {_e(RESPONSE_TIME)}</th>"
            f"<th>p99 ms {_e(SERVICE_TIME)}</th></tr>"]
    for backend, by_rate in levels.items():
        for rate, steps in by_rate.items():
            chosen = pick_repetition(steps)
            bounds = {key: _lower(chosen, key) for key in PERCENTILES}
            dropped = [step.dropped for step in steps if step.dropped is not None]
            service = chosen.uncorrected.p99_us if chosen.uncorrected else None
            rows.append(f"<tr><td class=name>{_e(backend)}</td><td>{rate:,.0f}</td>"
                        f"<td>{_num(median_of(step.rps for step in steps))}</td>"
                        f"<td>{_num(median_of(step.good_rps for step in steps))}</td>"
                        f"<td>{_num(sum(dropped) if dropped else None)}</td>"
                        f"<td>{_ms(chosen.p50_us, bounds['p50_us'])}</td>"
                        f"<td>{_ms(chosen.p99_us, bounds['p99_us'])}</td>"
                        f"<td>{_ms(service)}</td></tr>")
    return "".join(rows) + "</table>"


def _lower(step: Step, key: str) -> bool:
    return bool(lower_bound(step, key))


def _ms(micros: float | None, bound: bool = False) -> str:
    return ms_text(micros, form=",.3f", bound=bound, mark="≥", missing="—")


def _failures(results: Run) -> str:
    """Failed backends (error and stderr tail) and failed steps of the others."""
    failed = failed_backends(results)
    blocks = []
    for name, error in failed.items():
        entry = results.backends.get(name)
        tail = entry.stderr_tail if entry else ""
        blocks.append(
            f'<details><summary><span class="failed">✗ {_e(name)} failed</span>: {_e(error)}'
            f"</summary><pre>{_e(tail) if tail else '(no stderr)'}</pre></details>")
    for step in results.steps:
        if step.status == "failed" and step.backend not in failed:
            blocks.append(
                f'<details><summary><span class="failed">✗ {_e(step.backend)} at '
                f'{_e(counted(step.users, "user"))}, repetition {_e(step.repetition)}</span>: '
                f'{_e(step.error or "failed")}</summary></details>')
    if not blocks:
        return ""
    return '<h2 id="failures">Failures</h2>\n' + "\n".join(blocks)


def _figure(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    stem = path.stem
    caption = CHART_CAPTIONS.get(stem.split("_u")[0] if stem.startswith("timeseries") else stem, "")
    svg = path.with_suffix(".svg")
    link = (f' <a href="{_e(path.parent.name)}/{_e(svg.name)}">SVG</a>' if svg.exists() else "")
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{_e(stem)}" width="800">'
            f"<figcaption>{_e(caption)}{link}</figcaption></figure>")


def _definition_list(mapping: Mapping[str, Any]) -> str:
    items = "".join(f"<dt>{_e(key)}</dt><dd>{_value(value)}</dd>" for key, value in mapping.items())
    return f"<dl>{items}</dl>"


def _value(value: Any) -> str:
    """Scalars as text, small mappings inline, anything nested as compact JSON."""
    if isinstance(value, Mapping) and all(not isinstance(v, (Mapping, list)) for v in value.values()):
        return ", ".join(f"{_e(k)}: {_e(v)}" for k, v in value.items()) or "—"
    if isinstance(value, (Mapping, list)):
        return f"<code>{_e(json.dumps(value, sort_keys=True))}</code>"
    return _e("—" if value is None else value)
