"""The summary of a run: one row per backend and load level, medians over repetitions;
printed as a table at the end of a run, and written as summary.csv beside results.json."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from pathlib import Path
from statistics import median
from typing import Any

from harness.results.steps import DRIVER_BOUND, group_levels, median_of
from harness.results.store import write_atomically

SUMMARY_FILE = "summary.csv"
# offered_rate is empty for closed-loop rows; for open-loop rows `users` is the number of
# connections the rate was spread across. idle_connections: held open beside the load (c10k
# sweeps it, so without it two rows of one backend and load could not be told apart).
SUMMARY_COLUMNS = ("backend", "users", "rps", "p50_us", "p90_us", "p99_us", "errors",
                   "driver_bound", "offered_rate", "idle_connections")


def _fmt_ms(us: float | None) -> str:
    return "-" if us is None else f"{us / 1000:,.2f}"


def summary_rows(steps: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per backend and load level, medians over the good repetitions.

    Backends in the order they ran; within one, by idle connections held (c10k's sweep),
    then closed-loop levels by users, then open-loop levels by offered rate. A window with no completed request has no
    percentiles (null): it is left out of that median, which is None if none had any.
    The printed table and summary.csv both come from these rows.
    """
    groups = group_levels(steps)
    backends = list(dict.fromkeys(key[0] for key in groups))
    order = lambda key: (backends.index(key[0]), key[3], key[2] is not None, key[2] or 0, key[1])  # noqa: E731
    rows = []
    for backend, users, rate, idle in sorted(groups, key=order):
        reps = groups[backend, users, rate, idle]
        flags = sorted({flag for rep in reps for flag in rep.get("flags", [])})
        rows.append({"backend": backend, "users": users, "rate": rate, "idle": idle, "reps": len(reps),
                     **{key: median_of(reps, key) for key in ("rps", "p50_us", "p90_us", "p99_us")},
                     "errors": median(sum(rep["errors"].values()) for rep in reps), "flags": flags,
                     "driver_bound": DRIVER_BOUND in flags,
                     "starved": median(rep.get("starved_users") or 0 for rep in reps)})
    return rows


def summary_table(results: dict[str, Any]) -> str:
    # "starved": users with no answer in a window, whose wait is in no percentile.
    header = ("backend", "load", "req/s", "p50 ms", "p99 ms", "errors", "starved", "flags")
    lines = [header]
    for row in summary_rows(results["steps"]):
        load = f"{row['users']} users" if row["rate"] is None else f"{row['rate']:g}/s offered"
        if row["idle"]:
            load += f" + {row['idle']:,} idle"
        lines.append((row["backend"], load, "-" if row["rps"] is None else f"{row['rps']:,.0f}",
                      _fmt_ms(row["p50_us"]), _fmt_ms(row["p99_us"]), f"{row['errors']:,.0f}",
                      f"{row['starved']:,.0f}" if row["starved"] else "", ", ".join(row["flags"])))
    failures = []  # under the table: failed or interrupted backends, each with its one-line reason
    for name, info in results.get("backends", {}).items():
        if info.get("status") != "ok":
            reason = ((info.get("error") or "").strip().splitlines() or [""])[0]
            failures.append((name, f"{str(info.get('status') or 'failed').upper()}: {reason}"))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    widths[0] = max([widths[0], *(len(name) for name, _ in failures)])
    title = f"\n{results['scenario']['name']}: median over repetitions"
    body = ["  ".join(cell.ljust(w) if i in (0, 7) else cell.rjust(w) for i, (cell, w) in enumerate(zip(line, widths)))
            for line in lines]
    return "\n".join([title, body[0], "-" * len(body[0]), *body[1:],
                      *(f"{name.ljust(widths[0])}  {text}" for name, text in failures)])


def write_summary_csv(run_dir: Path, steps: Iterable[Mapping[str, Any]]) -> Path:
    """run_dir/summary.csv: the summary rows, as the printed table has them."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(SUMMARY_COLUMNS)
    for row in summary_rows(steps):
        medians = ["" if row[key] is None else _number(row[key]) for key in ("rps", "p50_us", "p90_us", "p99_us")]
        writer.writerow([row["backend"], row["users"], *medians, _number(row["errors"]),
                         str(row["driver_bound"]).lower(), "" if row["rate"] is None else _number(row["rate"]),
                         row["idle"]])
    path = Path(run_dir) / SUMMARY_FILE
    write_atomically(path, buffer.getvalue())
    return path


def _number(value: float) -> str:
    """An integral value without ".0", anything else to one decimal."""
    return str(int(value)) if float(value).is_integer() else f"{value:.1f}"
