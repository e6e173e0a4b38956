"""The steps of a chart against one swept dimension of a run (the server's cores, an emulated
link's round trip): the good closed-loop steps that carry the dimension, at the run's fewest
idle connections, grouped by series and value at the run's highest closed-loop user level.

A closed-loop user has one request in flight, so a low level cannot saturate the server and
shows every model flat; the highest level is the one that can, and one chart reads better than
one per level. An open-loop sweep is not drawn: below saturation an offered rate measures the
schedule, not the server.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from harness.charts.idle import at_fewest_idle
from harness.charts.style import backend_order
from harness.results.model import Run, Step

Value = TypeVar("Value", int, float)


def swept(results: Run, value: Callable[[Step], Value | None]) -> list[Step]:
    """The good closed-loop steps that carry the dimension (`value` not None), at the run's
    fewest idle connections."""
    return [step for step in at_fewest_idle(results) if step.ok and value(step) is not None and step.rate is None]


def has_sweep(results: Run, value: Callable[[Step], Value | None]) -> bool:
    """Whether those steps ran at two or more values of the dimension."""
    return len({value(step) for step in swept(results, value)}) >= 2


def top_users(results: Run, value: Callable[[Step], Value | None]) -> int | None:
    """The user level the chart shows: the highest closed-loop one of the sweep."""
    return max((step.users for step in swept(results, value)), default=None)


def by_series(results: Run, value: Callable[[Step], Value | None],
              series: Callable[[Step], str]) -> dict[str, dict[Value, list[Step]]]:
    """series (without the dimension) -> each value, in order -> its repetitions, at the chart's
    user level; our backends in the usual order."""
    users = top_users(results, value)
    groups: dict[str, dict[Value, list[Step]]] = {}
    for step in swept(results, value):
        at = value(step)
        if step.users == users and at is not None:
            groups.setdefault(series(step), {}).setdefault(at, []).append(step)
    return {name: dict(sorted(groups[name].items())) for name in backend_order(list(groups))}
