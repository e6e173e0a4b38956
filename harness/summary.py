"""The summary table printed at the end of a run: medians over repetitions."""

from __future__ import annotations

from statistics import median
from typing import Any


def _fmt_ms(us: float | None) -> str:
    return "-" if us is None else f"{us / 1000:,.2f}"


def summary_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per backend x users (in run order), medians over the repetitions."""
    groups: dict[tuple[str, int, float | None], list[dict[str, Any]]] = {}
    for step in results["steps"]:
        if step.get("status") == "ok":
            groups.setdefault((step["backend"], step["users"], step.get("rate")), []).append(step)
    rows = []
    for (backend, users, rate), steps in groups.items():
        def med(key: str) -> float | None:
            values = [s[key] for s in steps if s.get(key) is not None]
            return median(values) if values else None

        flags = sorted({flag for s in steps for flag in s.get("flags", [])})
        rows.append({"backend": backend, "users": users, "rate": rate, "reps": len(steps), "rps": med("rps"),
                     "p50_us": med("p50_us"), "p99_us": med("p99_us"),
                     "errors": median(sum(s["errors"].values()) for s in steps), "flags": flags,
                     "starved": median(s.get("starved_users") or 0 for s in steps)})
    return rows


def summary_table(results: dict[str, Any]) -> str:
    # "starved": users with no answer in a window, whose wait is in no percentile.
    header = ("backend", "load", "req/s", "p50 ms", "p99 ms", "errors", "starved", "flags")
    lines = [header]
    for row in summary_rows(results):
        load = f"{row['users']} users" if row["rate"] is None else f"{row['rate']:g}/s offered"
        lines.append((row["backend"], load, "-" if row["rps"] is None else f"{row['rps']:,.0f}",
                      _fmt_ms(row["p50_us"]), _fmt_ms(row["p99_us"]), f"{row['errors']:,.0f}",
                      f"{row['starved']:,.0f}" if row["starved"] else "", ", ".join(row["flags"])))
    for name, info in results.get("backends", {}).items():
        if info.get("status") != "ok":
            lines.append((name, "-", "FAILED", "", "", "", "", (info.get("error") or "")[:60]))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    title = f"\n{results['scenario']['name']}: median over repetitions"
    body = ["  ".join(cell.ljust(w) if i in (0, 7) else cell.rjust(w) for i, (cell, w) in enumerate(zip(line, widths)))
            for line in lines]
    return "\n".join([title, body[0], "-" * len(body[0]), *body[1:]])
