"""The free-threading cost finding: what a free-threaded build costs on one server CPU, against
the GIL build of the same version (`threaded@3.13t` against `threaded@3.13`).

Told apart from the speedup (harness.results.finding_speedup), which compares each series with
its own one-CPU figure: a free-threaded build is slower per thread (no specializing
interpreter in 3.13t, atomic reference counts, per-object locks), and that cost is paid before
any second CPU can pay it back. Only one-CPU levels are compared, at the same request and user
level, so nothing but the build differs.
"""

from __future__ import annotations

from typing import Any

from harness.results.finding_levels import (Level, caveat, change, finding, group_caveat, rps,
                                            starved_note)
from harness.results.finding_rules import RunView
from harness.results.model import Python
from harness.results.words import joined


def _one_cpu(level: Level) -> bool:
    first = level.reps[0]
    cpus = first.server_cpus
    return first.cores == 1 or (first.cores is None and cpus is not None and len(cpus) == 1)


def _base(backend: str, python: Python) -> str:
    """The backend without its interpreter: "threaded@3.13t" -> "threaded"."""
    tag = python.label
    return backend[:-len(tag) - 1] if tag and backend.endswith(f"@{tag}") else backend


def _pairs(run: RunView) -> dict[tuple[Any, ...], list[tuple[str, Level, Level]]]:
    """(request, users, idle, version) -> each backend's (name, free-threaded level, GIL level)."""
    builds: dict[tuple[Any, ...], dict[bool, Level]] = {}
    for level in run.levels:
        first = level.reps[0]
        python = run.python(first.backend)
        if not level.closed or not _one_cpu(level) or python.free_threaded is None or not level.good_rps:
            continue
        key = (first.route, level.users, level.idle, python.version, _base(first.backend, python))
        builds.setdefault(key, {})[python.free_threaded] = level
    pairs: dict[tuple[Any, ...], list[tuple[str, Level, Level]]] = {}
    for (route, users, idle, version, base), by_build in builds.items():
        if True in by_build and False in by_build:
            pairs.setdefault((route, users, idle, version), []).append((base, by_build[True], by_build[False]))
    return pairs


def _part(base: str, free: Level, gil: Level) -> str:
    text = f"{base} {change((free.good_rps or 0.0) / (gil.good_rps or 1.0))} ({rps(free.good_rps or 0.0)} req/s " \
           f"against {rps(gil.good_rps or 0.0)}"
    if free.cpu_us and gil.cpu_us:
        text += f"; {free.cpu_us:,.0f} against {gil.cpu_us:,.0f} µs of CPU per request"
    return text + ")"


def free_threading_cost(run: RunView) -> list[dict[str, Any]]:
    """Per request and user level on one server CPU: each backend's goodput on the free-threaded
    build against the GIL build of the same version."""
    found = []
    for (route, _, _, version), pairs in _pairs(run).items():
        first = pairs[0][2]
        where = f" on {route}" if route else ""
        members = {base: (free, gil) for base, free, gil in pairs}
        note = "; ".join(part for part in (
            group_caveat(members, spread=True) if len(pairs) > 1 else caveat(pairs[0][1:], spread=True),
            starved_note(level for _, free, gil in pairs for level in (free, gil))) if part) or None
        text = (f"On one server CPU{where} at {first.label()}, the free-threaded build of {version} against its GIL "
                f"build: {joined([_part(*pair) for pair in pairs])}" + (f" ({note})" if note else ""))
        figures = {"route": route, "version": version, "users": first.users, "by_backend": {
            base: {"free_threaded": free.reps[0].backend, "gil": gil.reps[0].backend,
                   "free_threaded_good_rps": free.good_rps, "gil_good_rps": gil.good_rps,
                   "ratio": round((free.good_rps or 0.0) / (gil.good_rps or 1.0), 4),
                   "free_threaded_cpu_us": free.cpu_us, "gil_cpu_us": gil.cpu_us} for base, free, gil in pairs}}
        backends = ", ".join(free.backend for _, free, _ in pairs)
        found.append(finding("free-threading-cost", backends, None, text, figures, said=note))
    return found
