"""A step record: one measured window of one backend at one load level, as results.json
holds it; the load level that groups repetitions, and the median over them; and the flags
that judge a step (driver-bound, high-spread).

Everything that summarises repetitions (the printed table, summary.csv, every chart, the
report, compare) groups them with `group_levels` and takes medians with `median_of`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from statistics import median
from typing import Any

from harness.results.metrics import summarize

# The kinds of failed request a step counts, as keys of its "errors" (and of a driver's).
ERROR_KINDS = ("connect", "timeout", "reset", "bad_status")
# A step whose driver used more than this share of its CPU measured the driver, not the
# server: the figure is a floor and is flagged.
DRIVER_BOUND_PERCENT = 90.0
DRIVER_BOUND = "driver-bound"  # the flag
HIGH_SPREAD = "high-spread"  # the flag: the level's req/s spread is over metrics.HIGH_SPREAD_LIMIT


def step_record(backend: str, *, users: int, idle_connections: int, repetition: int, result: Mapping[str, Any],
                server: dict[str, Any]) -> dict[str, Any]:
    """The record of one window, from the driver's result (DriverResult.to_dict()) and the
    server's CPU and memory over it."""
    flags = [DRIVER_BOUND] if result["driver_cpu_percent"] > DRIVER_BOUND_PERCENT else []
    return {
        "backend": backend, "users": users, "repetition": repetition, "status": "ok", "error": None,
        "requests": result["requests"], "errors": result["errors"], "rps": result["rps"],
        "duration_s": result["duration_s"],
        **{key: result[key] for key in ("p50_us", "p90_us", "p99_us", "p999_us", "max_us", "mean_us")},
        "histogram": result["histogram"], "timeseries": result["timeseries"],
        "server": server, "driver": {"cpu_percent": result["driver_cpu_percent"], "workers": result["workers"],
                                     "worker_hosts": list(result["worker_hosts"])},
        "unfinished": result["unfinished"], "unfinished_max_us": result["unfinished_max_us"],
        "background": result["background"], "interrupted": result["interrupted"], "flags": flags,
        "rate": result["rate"], "uncorrected": result["uncorrected"], "starved_users": result["starved_users"],
        "idle_connections": idle_connections,  # asked for; background.idle_connected: how many were held
    }


LevelKey = tuple[str, int, "float | None", int]


def level_key(step: Mapping[str, Any]) -> LevelKey:
    """What makes repetitions one load level: backend, users, offered rate (None: closed
    loop) and idle connections beside them (c10k's sweep)."""
    return step["backend"], step["users"], step.get("rate"), step.get("idle_connections") or 0


def group_levels(steps: Iterable[Mapping[str, Any]]) -> dict[LevelKey, list[Mapping[str, Any]]]:
    """The good ("ok") steps by load level, the levels in the order they first appear."""
    groups: dict[LevelKey, list[Mapping[str, Any]]] = {}
    for step in steps:
        if step.get("status") == "ok":
            groups.setdefault(level_key(step), []).append(step)
    return groups


def median_of(steps: Iterable[Mapping[str, Any]], key: str, nested: str | None = None) -> float | None:
    """The median of one field over steps (`nested`: of step[nested][key]), leaving out the
    steps without it (a window with no answer has no p99); None if none has it."""
    values = [(s.get(nested) or {}).get(key) if nested else s.get(key) for s in steps]
    present = [v for v in values if v is not None]
    return median(present) if present else None


def flag_high_spread(steps: list[dict[str, Any]]) -> None:
    """Flag every repetition of a load level whose req/s spread is over 10%."""
    for group in group_levels(steps).values():
        if len(group) > 1 and summarize([s["rps"] for s in group]).high_spread:
            for step in group:
                if HIGH_SPREAD not in step["flags"]:
                    step["flags"].append(HIGH_SPREAD)  # type: ignore[index]
