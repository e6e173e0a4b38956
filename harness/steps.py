"""A step record: one measured window of one backend at one load level, as results.json
holds it; and the flags that judge a step (driver-bound, high-spread)."""

from __future__ import annotations

from collections.abc import Mapping
from statistics import median
from typing import Any

from harness.drivers.spec import DriverResult, DriverSpec
from harness.metrics import summarize
from harness.store import DRIVER_BOUND

# A step whose driver used more than this share of its CPU measured the driver, not the
# server: the figure is a floor and is flagged.
DRIVER_BOUND_PERCENT = 90.0
HIGH_SPREAD = "high-spread"


def step_record(backend: str, spec: DriverSpec, repetition: int, result: DriverResult,
                server: dict[str, Any]) -> dict[str, Any]:
    data = result.to_dict()
    flags = [DRIVER_BOUND] if result.driver_cpu_percent > DRIVER_BOUND_PERCENT else []
    return {
        "backend": backend, "users": spec.users, "repetition": repetition, "status": "ok", "error": None,
        "requests": result.requests, "errors": data["errors"], "rps": result.rps, "duration_s": result.duration_s,
        **{key: data[key] for key in ("p50_us", "p90_us", "p99_us", "p999_us", "max_us", "mean_us")},
        "histogram": result.histogram, "timeseries": data["timeseries"],
        "server": server, "driver": {"cpu_percent": result.driver_cpu_percent, "workers": result.workers,
                                     "worker_hosts": list(result.worker_hosts)},
        "unfinished": result.unfinished, "unfinished_max_us": result.unfinished_max_us,
        "background": data["background"], "interrupted": result.interrupted, "flags": flags,
        "rate": result.rate, "uncorrected": data["uncorrected"], "starved_users": result.starved_users,
        "idle_connections": spec.idle_connections,  # asked for; background.idle_connected: how many were held
    }


def level_name(spec: DriverSpec) -> str:
    load = f"users={spec.users}" if spec.rate is None else f"rate={spec.rate:g}/s"
    return f"{load} idle={spec.idle_connections}" if spec.idle_connections else load


LevelKey = tuple[str, int, "float | None", int]


def level_key(step: Mapping[str, Any]) -> LevelKey:
    """What makes repetitions one load level: backend, users, offered rate (None: closed
    loop) and idle connections beside them (c10k's sweep)."""
    return step["backend"], step["users"], step.get("rate"), step.get("idle_connections") or 0


def flag_high_spread(steps: list[dict[str, Any]]) -> None:
    """Flag every repetition of a load level whose req/s spread is over 10%."""
    groups: dict[LevelKey, list[dict[str, Any]]] = {}
    for step in steps:
        if step["status"] == "ok":
            groups.setdefault(level_key(step), []).append(step)
    for group in groups.values():
        if len(group) > 1 and summarize([s["rps"] for s in group]).high_spread:
            for step in group:
                if HIGH_SPREAD not in step["flags"]:
                    step["flags"].append(HIGH_SPREAD)


def median_of(steps: list[Mapping[str, Any]], key: str, nested: str | None = None) -> float | None:
    """The median of one field over steps (`nested`: of step[nested][key]), leaving out the
    steps without it (a window with no answer has no p99); None if none has it."""
    values = [(s.get(nested) or {}).get(key) if nested else s.get(key) for s in steps]
    present = [v for v in values if v is not None]
    return median(present) if present else None
