"""The steps of a chart against one swept dimension of a run (the server's cores, an emulated
link's round trip): the good closed-loop steps that carry the dimension, at the run's fewest
idle connections, grouped by series and value at the run's highest closed-loop user level.

A closed-loop user has one request in flight, so a low level cannot saturate the server and
shows every model flat; the highest level is the one that can, and one chart reads better than
one per level. An open-loop sweep is not drawn: below saturation an offered rate measures the
schedule, not the server.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from harness.charts.idle import at_fewest_idle
from harness.charts.style import backend_order
from harness.results.model import Run, Step
from harness.results.steps import DRIVER_BOUND, median_of
from harness.results.summary import lower_bound

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


@dataclass(frozen=True)
class Measured:
    """What a point of such a chart shows of its repetitions."""

    good_rps: float  # median; req/s for steps without goodput (an older version)
    p99_us: float | None  # median; None: no repetition completed a request
    p99_lower_bound: bool  # the median reaches censored waits: the truth is at least this
    driver_bound: bool  # some repetition measured the driver: a floor, not capacity


def measured(reps: Sequence[Step]) -> Measured:
    good = median_of(rep.good_rps for rep in reps)
    p99, bound = median_p99(reps)
    return Measured(good_rps=good if good is not None else median_of(rep.rps for rep in reps) or 0.0,
                    p99_us=p99, p99_lower_bound=bound, driver_bound=any(DRIVER_BOUND in rep.flags for rep in reps))


def median_p99(reps: Sequence[Step]) -> tuple[float | None, bool]:
    """The repetitions' median p99, and whether it is a lower bound: it is when a repetition at
    or below the (upper) middle one is, since that one's truth could lift the median."""
    ranked = sorted((rep for rep in reps if rep.p99_us is not None), key=lambda rep: rep.p99_us or 0.0)
    if not ranked:
        return None, False
    middle = ranked[len(ranked) // 2].p99_us or 0.0
    return (median_of(rep.p99_us for rep in ranked),
            any(lower_bound(rep, "p99_us") for rep in ranked if (rep.p99_us or 0.0) <= middle))
