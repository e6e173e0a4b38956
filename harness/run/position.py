"""Where a run stands, as data: what it is doing (an Activity), the backend and which start of
it, and the step in progress (its level, repetition, warm-up or window).

The record of a fault or a Ctrl+C, the one line a user reads and the live progress are all
made from a Position ("during selectors users=4 rep 1/2 warm-up"); nothing reads one back
from its words.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from harness.run.plan import Level

PROBE = -1  # a rate search's probe: its repetition, in no round


class Activity(Enum):
    """What a run is doing; the value is how a sentence says it ({backend}, {start}, {step}
    and {after} are filled in from the Position)."""

    PREPARING = "before the run started"
    CALIBRATING = "during the /cpu calibration"
    MEASURING_FLOOR = "while measuring the latency floor"
    LINKING = "while making the emulated link"
    SHAPING = "while {backend}'s link was shaped and measured"
    STARTING = "while {backend} was starting{start}"
    DRIVING = "during {backend} {step}"
    STOPPING_DRIVER = "while {backend}'s driver was stopping"
    STOPPING = "while {backend} was stopping{start}"
    BETWEEN = "between backends (after {after})"
    AFTER_LAST = "after the last backend"
    SAVING = "while saving the results"
    PRINTING = "while printing the summary (the results are saved)"
    REPORTING = "while drawing the report (the results are saved)"


@dataclass(frozen=True)
class Start:
    """Which start of a backend: round `round` (from 0) of `rounds`, or its rate search
    (`round` None)."""

    round: int | None
    rounds: int

    @property
    def label(self) -> str | None:
        """"round 2/3", "search", or None (a run of one round says no round)."""
        if self.round is None:
            return "search"
        return f"round {self.round + 1}/{self.rounds}" if self.rounds > 1 else None

    @property
    def recorded(self) -> int | str:
        """The start as a failed backend's entry records it: its round, or "search"."""
        return "search" if self.round is None else self.round


@dataclass(frozen=True)
class StepAt:
    """A step in progress: `level` in round `repetition` of `rounds` (PROBE: a search's
    probe), in its warm-up or its measured window."""

    level: Level
    repetition: int
    rounds: int
    warmup: bool

    def __str__(self) -> str:
        """As progress says it: "users=4 rep 1/2", "rate=800/s probe warm-up"."""
        where = "probe" if self.repetition < 0 else f"rep {self.repetition + 1}/{self.rounds}"
        return f"{self.level.name} {where}" + (" warm-up" if self.warmup else "")

    def to_dict(self) -> dict[str, Any]:
        """The step as results.json records where a fault found it."""
        level = self.level
        return {"users": level.users, "rate": level.rate, "idle_connections": level.idle_connections,
                "repetition": self.repetition, "phase": "warm-up" if self.warmup else "measure"}


@dataclass(frozen=True)
class Position:
    """Where a run stands. `backend` is the one it is busy with (between backends: the one
    it is done with); `series` the name its steps are stored under when that is not the
    backend's ("asyncio (wrk)"); `start` which start of it; `step` the step in progress."""

    activity: Activity
    backend: str | None = None
    start: Start | None = None
    step: StepAt | None = None
    series: str | None = None

    @property
    def running(self) -> str | None:
        """The backend a fault here is charged to: none between backends."""
        return None if self.activity is Activity.BETWEEN else self.backend

    @property
    def step_dict(self) -> dict[str, Any] | None:
        return self.step.to_dict() if self.step is not None else None

    def __str__(self) -> str:
        label = self.start.label if self.start is not None else None
        after = f"{self.backend}, {label}" if label else self.backend
        return self.activity.value.format(backend=self.series or self.backend, start=f" ({label})" if label else "",
                                          step=self.step, after=after)
