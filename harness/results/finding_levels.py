"""The load levels of a run as the findings read them: each level's summary row (the
figures the printed table shows) beside its good repetitions, in the table's order; the
caveat a finding drawn from flagged levels carries; and how a sentence writes a number.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from harness.results.model import Run, Step
from harness.results.steps import (CONTENDED, DRIVER_BOUND, GIL_ON, HIGH_SPREAD, NOISY, SHARED_CPU,
                                   SHARED_CPU_LOW_PERCENT, group_levels, median_of)
from harness.results.summary import SummaryRow, summary_rows
from harness.results.units import ms_text
from harness.results.words import counted, joined

# What a caveat calls each flag a finding must never hide (measurement rules 5 and 11, steal
# and other processes; a server that shared the driver's CPU, and a free-threaded build whose
# GIL was on).
CAVEAT_FLAGS = (DRIVER_BOUND, NOISY, CONTENDED, SHARED_CPU, GIL_ON)
_FLAG_ORDER = (DRIVER_BOUND, NOISY, CONTENDED, SHARED_CPU, GIL_ON, HIGH_SPREAD)  # the order a caveat tells them in


@dataclass(frozen=True)
class Level:
    """One backend at one load level: its summary row and its good repetitions."""

    row: SummaryRow
    reps: tuple[Step, ...]

    @property
    def backend(self) -> str:
        return self.row.backend  # the series: "threaded (2 CPUs)" in a run that sweeps cores

    @property
    def users(self) -> int:
        return self.row.users

    @property
    def closed(self) -> bool:
        return self.row.rate is None

    @property
    def idle(self) -> int:
        return self.row.idle

    @property
    def good_rps(self) -> float | None:
        """The table's goodput: that of the repetition with the median goodput (req/s for a
        step without goodput), so a sentence's figure is the one the row shows, with an even
        number of repetitions too (where a median of values would be a mean of two)."""
        good = self.row.good_rps
        return good if good is not None else self.row.rps

    def percentile(self, key: str) -> tuple[float | None, bool]:
        """The table's percentile (µs) and whether it is a lower bound."""
        return self.row.percentile(key), self.row.bound(key)

    @property
    def cpu_us(self) -> float | None:
        return self.row.cpu_us_per_request

    @property
    def cpu_percent(self) -> float | None:
        """The server's CPU use (% of one CPU), median over the repetitions; from goodput x
        CPU per request when it was not sampled."""
        sampled = median_of(step.server.cpu_percent for step in self.reps)
        if sampled is not None or self.cpu_us is None or self.good_rps is None:
            return sampled
        return self.good_rps * self.cpu_us / 1e4

    @property
    def flags(self) -> tuple[str, ...]:
        return self.row.flags

    def label(self) -> str:
        """'1 user', '32 users + 1 idle', '1,000/s offered + 1,000 idle'."""
        return self.row.load

    def level(self) -> dict[str, Any]:
        """The finding's "level": users, offered rate, idle connections, server cores."""
        return {"users": self.users, "rate": self.row.rate, "idle_connections": self.idle,
                "cores": self.reps[0].cores}


def run_levels(run: Run) -> list[Level]:
    """Every load level of the run with good steps, in the summary table's order."""
    steps = run.steps
    groups = group_levels(steps)
    return [Level(row, tuple(groups[row.backend, row.users, row.rate, row.idle]))
            for row in summary_rows(steps)]


def _notes(levels: list[Level], spread: bool) -> dict[str, str]:
    """Flag -> what a caveat says of it, for each flag these levels carry that it must tell."""
    notes = {}
    if any(DRIVER_BOUND in level.flags for level in levels):
        notes[DRIVER_BOUND] = "a floor"
    if any(NOISY in level.flags for level in levels):
        notes[NOISY] = f"steal {worst_steal(levels):.1f}%"
    if any(CONTENDED in level.flags for level in levels):
        others = max((step.server.others_percent or 0.0 for level in levels for step in level.reps), default=0.0)
        notes[CONTENDED] = f"other processes took up to {others:.1f}% of the server's CPUs"
    if any(SHARED_CPU in level.flags for level in levels):
        share = max((step.driver.share_of_server_percent or 0.0 for level in levels for step in level.reps), default=0.0)
        low = ": figures may be low" if share > SHARED_CPU_LOW_PERCENT else ""
        notes[SHARED_CPU] = f"the driver took up to {share:.1f}% of the server's CPUs{low}"
    if any(GIL_ON in level.flags for level in levels):
        notes[GIL_ON] = "the GIL was on in a free-threaded build"
    if spread and any(HIGH_SPREAD in level.flags for level in levels):
        notes[HIGH_SPREAD] = "repetitions over 10% apart"
    return notes


def caveat(levels: Iterable[Level], *, spread: bool = False) -> str | None:
    """What a finding drawn from these levels must say of them: "driver-bound: a floor",
    "noisy: steal 7.2%", "contended: other processes took up to 12.0% of the server's CPUs", "shared-cpu: the driver took up to 3.1% of the server's CPUs",
    "gil-on: the GIL was on in a free-threaded build" and, for a finding that turns on a difference of a few percent
    (`spread`), "high-spread: repetitions over 10% apart"; joined by "; ", or None."""
    notes = _notes(list(levels), spread)
    return "; ".join(f"{flag}: {note}" for flag, note in notes.items()) or None


def group_caveat(members: Mapping[str, Iterable[Level]], *, spread: bool = False) -> str | None:
    """The caveat of a finding told of several backends at once, from the levels each one's
    part is drawn from: each flag with the backends it applies to, "all" when every one
    ("driver-bound for selectors and gevent: a floor; high-spread for all: repetitions over
    10% apart"), or None."""
    drawn = {name: list(levels) for name, levels in members.items()}
    flagged: dict[str, list[str]] = {}
    for name, levels in drawn.items():
        for flag in _notes(levels, spread):
            flagged.setdefault(flag, []).append(name)
    parts = []
    for flag, names in sorted(flagged.items(), key=lambda item: _FLAG_ORDER.index(item[0])):
        note = _notes([level for name in names for level in drawn[name]], spread)[flag]
        parts.append(f"{flag} for {'all' if len(names) == len(drawn) else joined(names)}: {note}")
    return "; ".join(parts) or None


def starved_note(levels: Iterable[Level]) -> str | None:
    """What a finding drawn from these levels says of the users that got no answer in a window
    ("measured with starved users: 6 of 8 in forking-prefork2 /cpu?ms=5 on 2 CPUs"): its
    figure is then the users answered, not the server's. None when every user was answered."""
    starving = [level for level in levels if level.row.starved]
    if not starving:
        return None
    def where(level: Level) -> str:
        first = level.reps[0]
        cores = first.cores
        on = "" if cores is None else f" on {counted(cores, 'CPU')}"
        return f"{level.row.starved or 0:,} of {level.users:,} in {first.without_cores}{on}"
    return "measured with starved users: " + joined([where(level) for level in starving])


def worst_steal(levels: Iterable[Level]) -> float:
    """The largest CPU steal % of any repetition of these levels (0.0 if none measured)."""
    values = [step.steal_percent for level in levels for step in level.reps]
    return max((value for value in values if value is not None), default=0.0)


def finding(kind: str, backend: str, level: Level | None, text: str, figures: Mapping[str, Any],
            *, drawn_from: Iterable[Level] = (), spread: bool = False, said: str | None = None,
            members: Mapping[str, Iterable[Level]] | None = None) -> dict[str, Any]:
    """A finding dict. Its caveat is that of the levels it is drawn from (see `caveat`), or
    for a finding told of several backends, of each one's levels (`members`, see
    `group_caveat`), and closes the sentence in parentheses; or `said`, a caveat the
    sentence already tells."""
    if said is not None:
        note: str | None = said
    else:
        note = group_caveat(members, spread=spread) if members is not None else caveat(drawn_from, spread=spread)
    text = f"{text} ({note})" if note and said is None else text
    return {"kind": kind, "backend": backend, "level": level.level() if level else None,
            "text": text, "figures": dict(figures), "caveat": note}


# --- numbers as a sentence writes them: as the summary table does, so they can be found there


def rps(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"


def ms(us: float, bound: bool = False) -> str:
    return ms_text(us, bound=bound, unit=" ms")


def times(ratio: float, bound: bool = False) -> str:
    return f"{'>=' if bound else ''}{ratio:,.1f}x" if ratio < 100 else f"{'>=' if bound else ''}{ratio:,.0f}x"


def share(value: float) -> str:
    return f"{value:.1%}" if value < 0.1 else f"{value:.0%}"


def change(ratio: float) -> str:
    """A throughput ratio as a signed change: 1.03 -> '+3%'."""
    return "+0%" if abs(ratio - 1) < 0.005 else f"{ratio - 1:+.0%}"


def labels(levels: Iterable[Level]) -> str:
    """'8 users', '8 users and 32 users + 1 idle', '1 user, 8 users and 32 users'."""
    return joined([level.label() for level in levels])


