"""The plan of a run: a Scenario's load levels in the order they run, the steps they make
on each backend, and what the run will take (wall time, descriptors).

This is the one place the levels of a scenario are enumerated: each closed-loop user count,
then each open-loop rate (spread over the scenario's `connections`), at each idle-connection
count in turn (c10k sweeps it). A stored step is matched back to its level by
harness.results.steps.level_key, from the same three fields.

A run goes in rounds, one per repetition (measurement rule 11): in round r each backend in
turn is started, driven through every level (a warm-up, then one measured window: step
repetition r), and stopped. A B C A B C: a machine that slows down over the run spreads its
drift over every backend instead of landing on the last one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from harness.drivers.spec import DriverSpec
from harness.scenario import Scenario

DRIVER_START_S = 1.0  # importing locust, per backend and round: counted in the ETA
START_STOP_S = 1.5  # starting and stopping a backend, every round


@dataclass(frozen=True)
class Level:
    """One load level: `users` closed-loop users, or an offered `rate` spread over `users`
    connections, beside `idle_connections` that never send."""

    users: int
    rate: float | None
    idle_connections: int

    @property
    def name(self) -> str:
        """As progress and errors say it: "users=8", "rate=500/s idle=1000"."""
        load = f"users={self.users}" if self.rate is None else f"rate={self.rate:g}/s"
        return f"{load} idle={self.idle_connections}" if self.idle_connections else load


@dataclass(frozen=True)
class PlannedStep:
    """One measured window: a backend at a level, in round (repetition) 0, 1, ..."""

    backend: str
    level: Level
    repetition: int


def levels(scenario: Scenario) -> tuple[Level, ...]:
    """The scenario's load levels, in the order they run."""
    loads = [(users, None) for users in scenario.users] + [(scenario.connections, rate) for rate in scenario.rate]
    return tuple(Level(users, rate, idle) for idle in scenario.idle_connections for users, rate in loads)


@dataclass(frozen=True)
class Plan:
    """What a run will do: every backend (display names, in order) through every level,
    once per round."""

    scenario: Scenario
    backends: tuple[str, ...]
    levels: tuple[Level, ...]

    @property
    def rounds(self) -> int:
        return self.scenario.repeat

    @property
    def order(self) -> list[tuple[int, str]]:
        """(round, backend) in the order they run: A B C A B C."""
        return [(round_, backend) for round_ in range(self.rounds) for backend in self.backends]

    def steps_of(self, backend: str, round_: int | None = None) -> list[PlannedStep]:
        """`backend`'s steps in round `round_` (None: in every round), in the order they run."""
        rounds = range(self.rounds) if round_ is None else (round_,)
        return [PlannedStep(backend, level, rep) for rep in rounds for level in self.levels]

    @property
    def steps(self) -> list[PlannedStep]:
        return [step for round_, backend in self.order for step in self.steps_of(backend, round_)]

    def specs(self, *, host: str, port: int) -> list[DriverSpec]:
        """One round's driver specs against host:port, one per level: a warm-up, then one window."""
        scenario = self.scenario
        return [DriverSpec(host=host, port=port, requests=scenario.requests, users=level.users, rate=level.rate,
                           duration_s=scenario.duration_s, warmup_s=scenario.warmup_s, repeat=1,
                           keep_alive=scenario.keep_alive, timeout_s=scenario.timeout_s,
                           idle_connections=level.idle_connections, slow_clients=scenario.slow_clients,
                           slow_interval_s=scenario.slow_interval_s)
                for level in self.levels]

    @property
    def seconds(self) -> float:
        """The wall time to expect, for the ETA: every start, warm-up and window of every round."""
        backends = len(self.backends)
        return planned_seconds(self.scenario, backends=backends) + DRIVER_START_S * backends * self.rounds

    @property
    def descriptors(self) -> int:
        """The most one process holds at once: a driver at its largest level."""
        return max(spec.descriptors for spec in self.specs(host="127.0.0.1", port=1))


def plan_run(scenario: Scenario, backends: Iterable[str]) -> Plan:
    return Plan(scenario=scenario, backends=tuple(backends), levels=levels(scenario))


def planned_seconds(scenario: Scenario, *, backends: int, start_stop_s: float = START_STOP_S) -> float:
    """Wall time of the scenario's levels on `backends` backends: in every round, each
    backend's start and stop, and per level a warm-up and one window."""
    per_level = scenario.warmup_s + scenario.duration_s
    return scenario.repeat * backends * (start_stop_s + len(levels(scenario)) * per_level)


def needed_descriptors(scenario: Scenario) -> int:
    """The descriptors a run of `scenario` needs in one process (see Plan.descriptors)."""
    return plan_run(scenario, ()).descriptors
