"""The report's tables, as HTML: the summary (every load level, with its flags as badges), the
open-loop levels, and the flags and warnings by backend, level and flag, each with what it
means there. harness.charts.report places them on the page.
"""

from __future__ import annotations

import html
from typing import Any, Mapping, Sequence

from harness.charts.levels import starved_notes
from harness.charts.notes import FLAGS, LevelWarning, level_warnings
from harness.charts.style import RESPONSE_TIME, SERVICE_TIME, backend_colour
from harness.results.metrics import summarize
from harness.results.model import Run, Step
from harness.results.printed import summary_title
from harness.results.steps import FLAG_MEANINGS, group_levels, median_of
from harness.results.summary import PERCENTILES, lower_bound, pick_repetition, summary_rows
from harness.results.units import ms_text
from harness.results.words import joined

# What each flag and warning means, shown once under the summary table; the badges link here.
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


def flag_notes_html() -> str:
    """What every flag means, under the table; each badge links to its line."""
    items = "".join(f'<li id="flag-{escape(flag)}">{badge(flag)} {escape(note)}</li>'
                    for flag, note in FLAG_NOTES.items())
    return f'<p class="notes">What the flags mean:</p><ul class="flag-notes">{items}</ul>'


def badge(flag: str, detail: str = "") -> str:
    """A flag as a labelled badge: readable without colour, and linked to its meaning."""
    text = f"⚠ {flag}{' ' + detail if detail else ''}"
    return f'<a class="flag flag-{escape(flag)}" href="#flag-{escape(flag)}">{escape(text)}</a>'


def summary_html(results: Run, failed: Mapping[str, str]) -> str:
    """The summary rows (what summary.csv and `concurbench summary` show), every load level,
    with the repetitions' req/s range beside them."""
    rows_data = summary_rows(results.steps)
    levels = group_levels(results.steps)
    head = ("<tr><th class=name>backend</th><th class=name>load</th><th>req/s</th><th>good req/s</th>"
            "<th>req/s over reps (spread)</th><th>p50 ms</th><th>p99 ms</th>"
            "<th>errors (all reps)</th><th>error share</th><th>CPU µs/req</th><th>steal %</th>"
            "<th>reps</th><th class=name>flags</th></tr>")
    rows = []
    for row in rows_data:
        reps = levels[row.backend, row.users, row.rate, row.idle]
        spread = summarize([rep.rps or 0.0 for rep in reps])
        flags = [badge(flag, f"{spread.spread:.0%}" if flag == "high-spread" else "") for flag in row.flags]
        if row.starved:
            flags.append(badge("starved", f"{row.starved} of {row.users}"))
        if row.dropped:
            flags.append(badge("dropped", f"{row.dropped:,}"))
        kinds = ", ".join(f"{kind} {count}" for kind, count in _error_kinds(reps).items() if count)
        rows.append(
            f'<tr class="{"flagged" if flags else ""}">'
            f'<td class=name><span class=swatch style="background:{backend_colour(row.backend)}">'
            f'</span>{escape(row.backend)}</td><td class=name>{escape(row.load)}</td>'
            f"<td><strong>{_num(row.rps)}</strong></td><td><strong>{_num(row.good_rps)}</strong></td>"
            f"<td>{spread.min:,.0f}–{spread.max:,.0f} ({spread.spread:.1%})</td>"
            f"<td>{_ms(row.p50_us, row.bound('p50_us'))}</td><td>{_ms(row.p99_us, row.bound('p99_us'))}</td>"
            f'<td title="{escape(kinds or "none")}">{row.errors:,}</td><td>{_share(row.error_share)}</td>'
            f"<td>{_num(row.cpu_us_per_request, 1)}</td><td>{_num(row.steal_pct, 1)}</td>"
            f"<td>{row.reps}</td><td class=\"name flags\">{' '.join(flags)}</td></tr>")
    for backend in failed:
        rows.append(f'<tr class="failed-row"><td class=name><span class=swatch style="background:'
                    f'{backend_colour(backend)}"></span>{escape(backend)}</td><td class=name colspan=12>'
                    f'<a class=failed href="#failures">✗ failed: see Failures</a></td></tr>')
    if not rows:
        rows.append('<tr><td class=name colspan=13>no successful step</td></tr>')
    return (f'<p class="notes">{escape(summary_title(results, rows_data))}</p>'
            f'<div class="wide"><table class="summary">{head}{"".join(rows)}</table></div>')


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


def warnings_html(results: Run, summaries: Mapping[str, Any]) -> str:
    """Every warning a chart may only count ("N more in the report"), and every flag of every
    step, by backend, level and flag: the repetitions that carry it and what it means there."""
    from harness.charts.open_loop import dropped_notes, open_loop_levels

    notes = starved_notes(summaries) + dropped_notes(open_loop_levels(results))
    found = level_warnings(results)
    if not notes and not found:
        return ""
    parts = ['<h2 id="warnings">Flags and warnings</h2>']
    if notes:
        parts.append('<ul class="chart-notes">' + "".join(f"<li>{escape(note)}</li>" for note in notes) + "</ul>")
    if found:
        levels: dict[tuple[str, str], list[LevelWarning]] = {}
        for warning in found:
            levels.setdefault((warning.backend, warning.load), []).append(warning)
        rows = []
        for (backend, load), warnings in levels.items():  # the backend and level once, beside all their flags
            span = f" rowspan={len(warnings)}" if len(warnings) > 1 else ""
            for i, warning in enumerate(warnings):
                level = (f"<td class=name{span}>{escape(backend)}</td><td class=name{span}>{escape(load)}</td>"
                         if i == 0 else "")
                rows.append(f'<tr class="{"level" if i == 0 else "same-level"}">{level}'
                            f"<td class=name>{badge(warning.name)}</td><td>{escape(_repetitions(warning))}</td>"
                            f'<td class="name why">{_meanings(warning)}</td></tr>')
        parts.append('<div class="wide"><table class="warnings"><tr><th class=name>backend</th>'
                     "<th class=name>load</th><th class=name>flag</th><th>repetitions (from 0)</th>"
                     "<th class=name>what it means here</th></tr>" + "".join(rows) + "</table></div>")
    return "\n".join(parts)


def _repetitions(warning: LevelWarning) -> str:
    """'all 3', or '2 of 3 (reps 0 and 2)' (numbered from 0, as results.json numbers them)."""
    carrying = warning.repetitions
    if len(carrying) == warning.of and len(set(carrying)) == len(carrying):
        return f"all {warning.of}" if warning.of > 1 else "the one"
    which = joined([str(rep) for rep in carrying])
    return f"{len(carrying)} of {warning.of} ({'rep' if len(carrying) == 1 else 'reps'} {which})"


def _meanings(warning: LevelWarning) -> str:
    """What the warning means in each repetition: once where they agree (a figure that differs
    as its range), else one line each."""
    if warning.text is not None:
        return escape(warning.text)
    return "<br>".join(f"<span class=rep>{escape(joined([str(rep) for rep in carrying]))}:</span> {escape(text)}"
                       for carrying, text in warning.texts)


def open_loop_html(results: Run) -> str:
    """Open-loop levels: achieved rate, response time and service time per offered rate, of
    the repetition with the median goodput."""
    from harness.charts.open_loop import open_loop_levels

    levels = open_loop_levels(results)
    if not levels:
        return ""
    rows = ['<h3>Open loop</h3><div class="wide"><table><tr><th class=name>backend</th><th>offered req/s</th>'
            "<th>achieved req/s (median)</th><th>good req/s (median)</th><th>dropped (all reps)</th>"
            f"<th>p50 ms {escape(RESPONSE_TIME)}</th><th>p99 ms {escape(RESPONSE_TIME)}</th>"
            f"<th>p99 ms {escape(SERVICE_TIME)}</th></tr>"]
    for backend, by_rate in levels.items():
        for rate, steps in by_rate.items():
            chosen = pick_repetition(steps)
            bounds = {key: _lower(chosen, key) for key in PERCENTILES}
            dropped = [step.dropped for step in steps if step.dropped is not None]
            service = chosen.uncorrected.p99_us if chosen.uncorrected else None
            rows.append(f"<tr><td class=name>{escape(backend)}</td><td>{rate:,.0f}</td>"
                        f"<td>{_num(median_of(step.rps for step in steps))}</td>"
                        f"<td>{_num(median_of(step.good_rps for step in steps))}</td>"
                        f"<td>{_num(sum(dropped) if dropped else None)}</td>"
                        f"<td>{_ms(chosen.p50_us, bounds['p50_us'])}</td>"
                        f"<td>{_ms(chosen.p99_us, bounds['p99_us'])}</td>"
                        f"<td>{_ms(service)}</td></tr>")
    return "".join(rows) + "</table></div>"


def _lower(step: Step, key: str) -> bool:
    return bool(lower_bound(step, key))


def _ms(micros: float | None, bound: bool = False) -> str:
    return ms_text(micros, form=",.3f", bound=bound, mark="≥", missing="—")


def escape(value: Any) -> str:
    """A value as text on the page: markup in a results file stays text."""
    return html.escape(str(value), quote=True)
