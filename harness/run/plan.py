"""The plan of a run: a Scenario's load levels in the order they run, the steps they make
on each backend, and what the run will take (wall time, descriptors).

This is the one place the levels of a scenario are enumerated: each closed-loop user count,
then each open-loop rate (spread over the scenario's `connections`), at each idle-connection
count in turn (c10k sweeps it), at each server CPU count in turn ([server] cpus; a backend is
started anew, pinned to that many CPUs, for each). A stored step is matched back to its
level by harness.results.steps.level_key, from the same fields.

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

ALL_CORES = object()  # Plan.levels_at: every level, whatever its server CPU count
DRIVER_START_S = 1.0  # importing locust, per backend and round: counted in the ETA
START_STOP_S = 1.5  # starting and stopping a backend, every round


@dataclass(frozen=True)
class Level:
    """One load level: `users` closed-loop users, or an offered `rate` spread over `users`
    connections, beside `idle_connections` that never send."""

    users: int
    rate: float | None
    idle_connections: int
    cores: int | None = None  # server CPUs, when the scenario sweeps them (None: all the server's)

    @property
    def name(self) -> str:
        """As progress and errors say it: "users=8", "rate=500/s idle=1000", "users=8 cpus=2"."""
        load = f"users={self.users}" if self.rate is None else f"rate={self.rate:g}/s"
        load = f"{load} idle={self.idle_connections}" if self.idle_connections else load
        return load if self.cores is None else f"{load} cpus={self.cores}"


@dataclass(frozen=True)
class PlannedStep:
    """One measured window: a backend at a level, in round (repetition) 0, 1, ..."""

    backend: str
    level: Level
    repetition: int


def levels(scenario: Scenario) -> tuple[Level, ...]:
    """The scenario's load levels, in the order they run."""
    loads = [(users, None) for users in scenario.users] + [(scenario.connections, rate) for rate in scenario.rate]
    return tuple(Level(users, rate, idle, cores) for cores in core_counts(scenario)
                 for idle in scenario.idle_connections for users, rate in loads)


def core_counts(scenario: Scenario) -> tuple[int | None, ...]:
    """The server CPU counts a backend is started with in turn; (None,): one start, on all
    the server's CPUs."""
    return scenario.cpus or (None,)


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

    def levels_at(self, cores: object = ALL_CORES) -> tuple[Level, ...]:
        """The levels one start of a backend runs: those at `cores` server CPUs (None is a
        count: all the server's), or every level."""
        return self.levels if cores is ALL_CORES else tuple(level for level in self.levels if level.cores == cores)

    def steps_of(self, backend: str, round_: int | None = None, *, cores: object = ALL_CORES) -> list[PlannedStep]:
        """`backend`'s steps in round `round_` (None: in every round), in the order they run;
        only those at `cores` server CPUs, if given."""
        rounds = range(self.rounds) if round_ is None else (round_,)
        return [PlannedStep(backend, level, rep) for rep in rounds for level in self.levels_at(cores)]

    @property
    def core_counts(self) -> tuple[int | None, ...]:
        """Each start of a backend in a round: its server CPU count (None: all of them)."""
        return core_counts(self.scenario)

    @property
    def steps(self) -> list[PlannedStep]:
        return [step for round_, backend in self.order for step in self.steps_of(backend, round_)]

    def specs(self, *, host: str, port: int, cores: object = ALL_CORES) -> list[DriverSpec]:
        """One round's driver specs against host:port, one per level (at `cores` server CPUs,
        if given): a warm-up, then one window."""
        scenario = self.scenario
        return [DriverSpec(host=host, port=port, requests=scenario.requests, users=level.users, rate=level.rate,
                           duration_s=scenario.duration_s, warmup_s=scenario.warmup_s, repeat=1,
                           keep_alive=scenario.keep_alive, timeout_s=scenario.timeout_s,
                           idle_connections=level.idle_connections, slow_clients=scenario.slow_clients,
                           slow_interval_s=scenario.slow_interval_s)
                for level in self.levels_at(cores)]

    @property
    def seconds(self) -> float:
        """The wall time to expect, for the ETA: every start, warm-up and window of every round."""
        starts = len(self.backends) * self.rounds * len(self.core_counts)
        return planned_seconds(self.scenario, backends=len(self.backends)) + DRIVER_START_S * starts

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
    starts = len(core_counts(scenario))  # a backend starts anew for each server CPU count
    return scenario.repeat * backends * (start_stop_s * starts + len(levels(scenario)) * per_level)


def needed_descriptors(scenario: Scenario) -> int:
    """The descriptors a run of `scenario` needs in one process (see Plan.descriptors)."""
    return plan_run(scenario, ()).descriptors
