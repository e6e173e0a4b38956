"""Progress of a run: a live rich display on a terminal, plain lines otherwise.

The runner reports events (a backend starting, a step's second ticking, a step done);
the display turns them into backend, step, elapsed time, ETA, current req/s and errors.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import TextIO

from harness.run.position import StepAt


def fmt_duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


@dataclass(frozen=True)
class Tick:
    """A second of a step: the series it measures, the step (said "users=16 rep 2/2 warm-up"),
    and the driver's current req/s and errors."""

    backend: str
    step: StepAt
    rps: float
    errors: int


class Progress:
    """Plain-line progress: one line per step and one every few seconds within it."""

    LINE_EVERY = 5.0  # seconds between in-step lines when not on a terminal

    def __init__(self, *, planned_seconds: float, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout
        self.planned = planned_seconds
        self.started = time.monotonic()
        self._last_line = 0.0

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def eta(self) -> float:
        return max(0.0, self.planned - self.elapsed())

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def message(self, text: str) -> None:
        self._print(text)

    def tick(self, tick: Tick) -> None:
        now = time.monotonic()
        if now - self._last_line >= self.LINE_EVERY:
            self._last_line = now
            self._print(f"  {tick.backend:<10} {tick.step!s:<26} {tick.rps:>9,.0f} req/s  errors {tick.errors}")

    def _print(self, text: str) -> None:
        stamp = f"[{fmt_duration(self.elapsed())} / ETA {fmt_duration(self.eta())}]"
        self.stream.write(f"{stamp} {text}\n")
        self.stream.flush()


class LiveProgress(Progress):
    """A rich live panel on a terminal: the current step updates in place."""

    def __init__(self, *, planned_seconds: float, stream: TextIO | None = None) -> None:
        super().__init__(planned_seconds=planned_seconds, stream=stream)
        from rich.console import Console
        from rich.live import Live

        self.console = Console(file=self.stream)
        self.live = Live(console=self.console, refresh_per_second=4, transient=True)
        self._current: Tick | None = None

    def __enter__(self) -> LiveProgress:
        self.live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.live.stop()

    def message(self, text: str) -> None:
        self.console.print(f"[dim]{fmt_duration(self.elapsed())}[/dim] {text}", highlight=False)
        self._render()

    def tick(self, tick: Tick) -> None:
        self._current = tick
        self._render()

    def _render(self) -> None:
        from rich.table import Table

        table = Table.grid(padding=(0, 2))
        table.add_row("elapsed", fmt_duration(self.elapsed()), "ETA", fmt_duration(self.eta()))
        if self._current is not None:
            t = self._current
            table.add_row("backend", t.backend, "step", str(t.step))
            table.add_row("req/s", f"{t.rps:,.0f}", "errors", str(t.errors))
        self.live.update(table)


def make_progress(*, planned_seconds: float, stream: TextIO | None = None) -> Progress:
    stream = stream or sys.stdout
    if stream.isatty():
        return LiveProgress(planned_seconds=planned_seconds, stream=stream)
    return Progress(planned_seconds=planned_seconds, stream=stream)
