"""Warnings that change how a chart or a table reads, in one place: the charts show what fits
and say how many more the report holds; the report lists every one of them.

A warning belongs to a step (one repetition of one backend at one load level): its flags
(driver-bound, high-spread, littles-law, noisy, contended, shared-cpu, gil-on), each explained with that step's own
numbers, and what the step could not put in a percentile: starved users, censored waits,
dropped open-loop requests. The report tells them by backend, level and flag
(level_warnings): which repetitions carry each, and what it means in each.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Sequence

from harness.results.metrics import HIGH_SPREAD_LIMIT, summarize
from harness.results.model import Run, Step
from harness.results.summary import load_label, summary_rows
from harness.results.units import ms_text
from harness.results.words import counted
from harness.results.steps import (CONTENDED, CONTENDED_PERCENT, DRIVER_BOUND, DRIVER_BOUND_PERCENT, FLAG_MEANINGS,
                                   GIL_ON, HIGH_SPREAD, LITTLES_LAW, LITTLES_LAW_LIMIT, NOISY, NOISY_STEAL_PERCENT,
                                   SHARED_CPU, SHARED_CPU_LOW_PERCENT, group_levels, level_key)

# A chart shows at most this many notes; the rest are counted and left to the report.
MAX_CHART_NOTES = 4
REPORT_POINTER = "in the report (report.html, Flags and warnings)"
# The flags, in the order the report explains them.
FLAGS = (DRIVER_BOUND, HIGH_SPREAD, LITTLES_LAW, NOISY, CONTENDED, SHARED_CPU, GIL_ON)


def chart_lines(lines: Sequence[str], limit: int = MAX_CHART_NOTES) -> list[str]:
    """The notes a chart has room for; when there are more, the last line says how many
    more the report holds (never a bare "...": a cut warning must say it was cut)."""
    if len(lines) <= limit:
        return list(lines)
    return [*lines[:limit - 1], f"+ {len(lines) - limit + 1} more {REPORT_POINTER}"]


def draw_notes(ax: Any, lines: Sequence[str]) -> None:
    """The notes in a red-edged box in the lower right of the axes."""
    if lines:
        ax.text(0.99, 0.02, "\n".join(chart_lines(lines)), transform=ax.transAxes, ha="right", va="bottom",
                fontsize=7, color="#a00",
                bbox={"facecolor": "white", "alpha": 0.85, "edgecolor": "#a00", "linewidth": 0.5})


def starved_text(users: int, starved: int, recorded: bool) -> str:
    """How many users waited, and whether their wait is in the percentiles.

    recorded: the step records censored values, so a starved user's wait so far is in the
    latency record as a lower bound; a step recorded by an older version has it in no percentile."""
    where = ("their wait so far is in these latencies, as a lower bound" if recorded
             else "their wait is in no latency percentile")
    return f"{starved} of {users} got no answer in a window ({where})"


def flag_explanation(flag: str, step: Step, level: Sequence[Step]) -> str:
    """Why this step carries this flag, with its own numbers, in one line."""
    driver, server = step.driver, step.server
    if flag == DRIVER_BOUND and driver.cpu_percent is not None:
        return (f"the driver's busiest CPU was {driver.cpu_percent:.0f}% busy (over {DRIVER_BOUND_PERCENT:g}%): "
                "the figure is the driver's limit, a floor for the server")
    if flag == HIGH_SPREAD and len(level) > 1:
        spread = summarize([rep.rps or 0.0 for rep in level]).spread
        return (f"the level's repetitions' req/s are {spread:.0%} of their median apart (over "
                f"{HIGH_SPREAD_LIMIT:.0%}): the median is less certain")
    littles = step.littles
    if flag == LITTLES_LAW and littles is not None:
        return (f"{counted(littles.users, 'user')}, but throughput x cycle time gives {littles.predicted:,.1f} "
                f"(ratio {littles.ratio:.2f}, more than {LITTLES_LAW_LIMIT:.0%} off): requests waited "
                "that no percentile shows")
    steal = [server.steal_percent, driver.steal_percent]
    if flag == NOISY and any(value is not None for value in steal):
        shown = ", ".join(f"{name} {value:.1f}%" for name, value in zip(("server", "driver"), steal)
                          if value is not None)
        return (f"CPU steal {shown} (over {NOISY_STEAL_PERCENT:g}%): the hypervisor took CPU time from "
                "the measurement")
    others = server.others_percent
    if flag == CONTENDED and others is not None:
        cpus = ", ".join(map(str, step.server_cpus or ())) or "?"
        return (f"other processes of this machine used {others:.1f}% of the server's CPUs ({cpus}) "
                f"(over {CONTENDED_PERCENT:g}%; not the server's tree, not the driver): the server shared its CPUs "
                "with them, so its figures may be low")
    share = driver.share_of_server_percent
    if flag == SHARED_CPU and share is not None:
        shared = sorted(set(step.server_cpus or ()) & {int(cpu) for cpu in driver.cpu_percent_by_cpu or {}})
        low = f" (over {SHARED_CPU_LOW_PERCENT:g}%: the figure may be low)" if share > SHARED_CPU_LOW_PERCENT else ""
        return (f"the server ran on the driver's CPU {', '.join(map(str, shared))} too, and the driver took "
                f"{share:.1f}% of the server's CPUs{low}")
    runtime = step.runtime
    if flag == GIL_ON and runtime is not None and runtime.python:
        return (f"Python {runtime.python} is a free-threaded build, but its GIL was on when asked after the step "
                "(GET /runtime): an extension imported late, or PYTHON_GIL=1; its threads ran under a GIL")
    return FLAG_MEANINGS.get(flag, "a flag this concurbench has no explanation for")


@dataclass(frozen=True)
class StepWarnings:
    """What one step warns of: (name, one-line explanation) pairs."""

    backend: str
    load: str
    repetition: int
    items: tuple[tuple[str, str], ...]


def step_warnings(results: Run) -> list[StepWarnings]:
    """Every good step with a flag or something left out of a plain percentile, in run order."""
    levels = group_levels(results.steps)
    found = []
    for step in results.ok_steps:
        level = levels.get(level_key(step), [step])
        items = [(flag, flag_explanation(flag, step, level)) for flag in step.flags]
        users, recorded = step.users, step.censored is not None
        if step.starved_users:
            items.append(("starved", starved_text(users, step.starved_users, recorded)))
        if step.censored:
            items.append(("censored", f"{step.censored:,} latency values are waits cut short (timeouts, starved "
                                      f"users, unsent requests), the shortest {ms_text(step.censored_min_us, form=',.1f', unit=' ms', missing='?')}: "
                                      "percentiles at or above it that they could move by more than 1% are "
                                      "lower bounds"))
        if step.dropped:
            items.append(("dropped", f"{step.dropped:,} requests were due but never sent before the window "
                                     f"closed (the longest waited {ms_text(step.dropped_max_us, form=',.1f', unit=' ms', missing='?')})"))
        if items:
            found.append(StepWarnings(step.backend, load_label(users, step.rate, step.idle_connections),
                                      step.repetition, tuple(items)))
    return found


@dataclass(frozen=True)
class LevelWarning:
    """One warning of one backend at one load level, over the level's repetitions: which of
    them carry it, and what it means in each, told once where they agree."""

    backend: str
    load: str
    name: str  # the flag, or starved, censored, dropped
    repetitions: tuple[int, ...]  # those that carry it, in run order
    of: int  # the level's good repetitions
    texts: tuple[tuple[tuple[int, ...], str], ...]  # (repetitions, explanation), one per distinct explanation

    @property
    def text(self) -> str | None:
        """The explanations as one, where they differ in figures only: each figure that differs
        as its range over the repetitions ("the shortest 4,998.6–4,998.9 ms"); None where they
        differ in words."""
        return spanned([text for _, text in self.texts])


FIGURE = re.compile(r"\d[\d,]*(?:\.\d+)?")


def spanned(texts: Sequence[str]) -> str | None:
    """Sentences that differ in figures only, as one with each differing figure a range
    (lowest–highest, as written); None where their words differ."""
    words = {tuple(FIGURE.split(text)) for text in texts}
    if len(words) != 1:
        return None
    parts = list(words.pop())
    figures = list(zip(*(FIGURE.findall(text) for text in texts)))
    out = [parts[0]]
    for written, after in zip(figures, parts[1:]):
        values = sorted(set(written), key=lambda figure: float(figure.replace(",", "")))
        out += [values[0] if len(values) == 1 else f"{values[0]}–{values[-1]}", after]
    return "".join(out)


def level_warnings(results: Run) -> list[LevelWarning]:
    """Every step warning (step_warnings), one per backend, level and warning: in the summary
    table's order of backends and levels, warnings in a step's order."""
    table = {(row.backend, row.load): i for i, row in enumerate(summary_rows(results.steps))}
    reps: dict[tuple[str, str], int] = {}
    for step in results.ok_steps:
        key = (step.backend, load_label(step.users, step.rate, step.idle_connections))
        reps[key] = reps.get(key, 0) + 1
    grouped: dict[tuple[str, str, str], dict[str, list[int]]] = {}
    for warning in step_warnings(results):
        for name, text in warning.items:
            texts = grouped.setdefault((warning.backend, warning.load, name), {})
            texts.setdefault(text, []).append(warning.repetition)
    found = [LevelWarning(backend=backend, load=load, name=name,
                          repetitions=tuple(sorted(rep for carrying in texts.values() for rep in carrying)),
                          of=reps.get((backend, load), 0),
                          texts=tuple((tuple(sorted(carrying)), text) for text, carrying in texts.items()))
             for (backend, load, name), texts in grouped.items()]
    return sorted(found, key=lambda warning: table.get((warning.backend, warning.load), len(table)))
