"""The summary table printed at the end of a run: medians over repetitions."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from statistics import median
from typing import Any

from harness.steps import LevelKey, level_key
from harness.store import DRIVER_BOUND


def _fmt_ms(us: float | None) -> str:
    return "-" if us is None else f"{us / 1000:,.2f}"


def summary_rows(steps: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per backend and load level, medians over the good repetitions.

    Backends in the order they ran; within one, by idle connections held (c10k's sweep),
    then closed-loop levels by users, then open-loop levels by offered rate. A window with no completed request has no
    percentiles (null): it is left out of that median, which is None if none had any.
    The printed table and summary.csv both come from these rows.
    """
    groups: dict[LevelKey, list[Mapping[str, Any]]] = {}
    for step in steps:
        if step.get("status") == "ok":
            groups.setdefault(level_key(step), []).append(step)
    backends = list(dict.fromkeys(key[0] for key in groups))
    order = lambda key: (backends.index(key[0]), key[3], key[2] is not None, key[2] or 0, key[1])  # noqa: E731
    rows = []
    for backend, users, rate, idle in sorted(groups, key=order):
        reps = groups[backend, users, rate, idle]

        def med(key: str) -> float | None:
            values = [rep[key] for rep in reps if rep.get(key) is not None]
            return median(values) if values else None

        flags = sorted({flag for rep in reps for flag in rep.get("flags", [])})
        rows.append({"backend": backend, "users": users, "rate": rate, "idle": idle, "reps": len(reps),
                     "rps": med("rps"),
                     "p50_us": med("p50_us"), "p90_us": med("p90_us"), "p99_us": med("p99_us"),
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
