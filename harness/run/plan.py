"""The plan of a run: a Scenario's load levels in the order they run, the steps they make
on each backend, and what the run will take (wall time, descriptors).

This is the one place the levels of a scenario are enumerated: each closed-loop user count,
then each open-loop rate (spread over the scenario's `connections`), at each idle-connection
count in turn (c10k sweeps it), at each round trip in turn ([network] rtt_ms: the link is
reshaped and a driver started anew for each), at each server CPU count in turn ([server] cpus;
a backend is started anew, pinned to that many CPUs, for each). A stored step is matched back to its
level by harness.results.steps.level_key, from the same fields.

A run goes in rounds, one per repetition (measurement rule 11): in round r each backend in
turn is started, driven through every level (a warm-up, then one measured window: step
repetition r), and stopped. A B C A B C: a machine that slows down over the run spreads its
drift over every backend instead of landing on the last one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from harness.drivers.spec import DriverSpec
from harness.scenario import Scenario

ALL_CORES = object()  # Plan.levels_at: every level, whatever its server CPU count
DRIVER_START_S = 1.0  # importing locust, per backend and round: counted in the ETA
# Starting and stopping a backend, every round, beside its driver's start. Measured once on
# the 2-CPU development VM: a backend is up in 0.1-0.3 s and stops in a few ms, and each start
# of a backend (its driver's too) added 0.7-1.0 s to a run with locust's import warm (quick,
# 7 backends x 2 rounds: 121 s, where its 84 warm-ups and windows take 105 s). With
# DRIVER_START_S that is 1.5 s a start: a cold import's margin.
START_STOP_S = 0.5


@dataclass(frozen=True)
class Level:
    """One load level: `users` closed-loop users, or an offered `rate` spread over `users`
    connections, beside `idle_connections` that never send."""

    users: int
    rate: float | None
    idle_connections: int
    cores: int | None = None  # server CPUs, when the scenario sweeps them (None: all the server's)
    request: int | None = None  # mix "each": the one [[request]] this level sends (None: the mix)
    route: str | None = None  # that request as a series says it: "/sleep?ms=1", "POST /echo"
    rtt_ms: float | None = None  # the link's round trip, when the scenario has [network] (None: loopback)

    @property
    def name(self) -> str:
        """As progress and errors say it: "users=8", "rate=500/s idle=1000", "users=8 cpus=2",
        "rate=800/s /sleep?ms=1"."""
        load = f"users={self.users}" if self.rate is None else f"rate={self.rate:g}/s"
        load = f"{load} idle={self.idle_connections}" if self.idle_connections else load
        load = load if self.route is None else f"{load} {self.route}"
        load = load if self.rtt_ms is None else f"{load} rtt={self.rtt_ms:g}ms"
        return load if self.cores is None else f"{load} cpus={self.cores}"


@dataclass(frozen=True)
class PlannedStep:
    """One measured window: a backend at a level, in round (repetition) 0, 1, ..."""

    backend: str
    level: Level
    repetition: int


def levels(scenario: Scenario) -> tuple[Level, ...]:
    """The scenario's load levels, in the order they run; with mix "each", each request's in
    turn. A rate search has none until it has searched (Plan.after_search)."""
    if scenario.search is not None:
        return ()
    loads = [(users, None) for users in scenario.users] + [(scenario.connections, rate) for rate in scenario.rate]
    return tuple(Level(users, rate, idle, cores, request, route, rtt) for cores in core_counts(scenario)
                 for rtt in round_trips(scenario) for request, route in requests_of(scenario)
                 for idle in scenario.idle_connections for users, rate in loads)


def requests_of(scenario: Scenario) -> list[tuple[int | None, str | None]]:
    """(index, route) of each request a level sends alone (mix "each"), or [(None, None)]:
    the whole mix at every level."""
    if scenario.mix != "each":
        return [(None, None)]
    return [(i, route(request.method, request.path)) for i, request in enumerate(scenario.requests)]


def route(method: str, path: str) -> str:
    """A request as its series names it: the path for a GET, else "POST /echo"."""
    return path if method == "GET" else f"{method} {path}"


def round_trips(scenario: Scenario) -> tuple[float | None, ...]:
    """The link's round trips a backend is driven at in turn; (None,): no link, loopback."""
    return scenario.network.rtts_ms if scenario.network else (None,)


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
    # A rate search's levels, per backend: the rates it found for each request (see
    # after_search); the rounds then measure these.
    found: Mapping[str, tuple[Level, ...]] = field(default_factory=lambda: MappingProxyType({}))

    def after_search(self, found: Mapping[str, tuple[Level, ...]]) -> Plan:
        """This plan with the levels a rate search found for each backend (this one is left
        as it was: a plan does not change)."""
        return replace(self, found=MappingProxyType(dict(found)))

    @property
    def rounds(self) -> int:
        return self.scenario.repeat

    @property
    def order(self) -> list[tuple[int, str]]:
        """(round, backend) in the order they run: A B C A B C."""
        return [(round_, backend) for round_ in range(self.rounds) for backend in self.backends]

    def levels_at(self, cores: object = ALL_CORES, backend: str | None = None,
                  rtt: object = ALL_CORES) -> tuple[Level, ...]:
        """The levels one start of a backend runs: those at `cores` server CPUs (None is a
        count: all the server's), or every level; in a rate search, those `backend` found;
        only those at round trip `rtt`, if given (None: loopback)."""
        levels = self.found.get(backend or "", ()) if self.scenario.search else self.levels
        return tuple(level for level in levels if (cores is ALL_CORES or level.cores == cores)
                     and (rtt is ALL_CORES or level.rtt_ms == rtt))

    def steps_of(self, backend: str, round_: int | None = None, *, cores: object = ALL_CORES,
                 rtt: object = ALL_CORES) -> list[PlannedStep]:
        """`backend`'s steps in round `round_` (None: in every round), in the order they run;
        only those at `cores` server CPUs and round trip `rtt`, if given."""
        rounds = range(self.rounds) if round_ is None else (round_,)
        return [PlannedStep(backend, level, rep) for rep in rounds for level in self.levels_at(cores, backend, rtt)]

    @property
    def core_counts(self) -> tuple[int | None, ...]:
        """Each start of a backend in a round: its server CPU count (None: all of them)."""
        return core_counts(self.scenario)

    @property
    def round_trips(self) -> tuple[float | None, ...]:
        """Each driver of a start, in turn: the link's round trip (None: loopback)."""
        return round_trips(self.scenario)

    @property
    def steps(self) -> list[PlannedStep]:
        return [step for round_, backend in self.order for step in self.steps_of(backend, round_)]

    def specs(self, *, host: str, port: int, cores: object = ALL_CORES, backend: str | None = None,
              rtt: object = ALL_CORES) -> list[DriverSpec]:
        """One round's driver specs against host:port, one per level (at `cores` server CPUs
        and round trip `rtt`, if given; `backend`'s, in a rate search): a warm-up, then one window."""
        return [self.spec(level, host=host, port=port) for level in self.levels_at(cores, backend, rtt)]

    def spec(self, level: Level, *, host: str, port: int) -> DriverSpec:
        """The driver spec of one level: a warm-up, then one window."""
        scenario = self.scenario
        return DriverSpec(host=host, port=port, requests=scenario.requests_of(level.request), users=level.users,
                          rate=level.rate, duration_s=scenario.duration_s, warmup_s=scenario.warmup_s, repeat=1,
                          keep_alive=scenario.keep_alive, timeout_s=scenario.timeout_s,
                          idle_connections=level.idle_connections, slow_clients=scenario.slow_clients,
                          slow_interval_s=scenario.slow_interval_s)

    def probe_level(self, request: int | None, route_: str | None, rate: float) -> Level:
        """A rate search's probe (or its repetitions) of one request at `rate`."""
        return Level(self.scenario.connections, rate, self.scenario.idle_connections[0], None, request, route_,
                     self.round_trips[0])

    @property
    def seconds(self) -> float:
        """The wall time to expect, for the ETA: every start, warm-up and window of every round
        (a rate search: its budget per backend and request, then its rounds at one rate each)."""
        drivers = len(self.backends) * self.rounds * len(self.core_counts) * len(self.round_trips)
        return planned_seconds(self.scenario, backends=len(self.backends)) + DRIVER_START_S * drivers

    @property
    def descriptors(self) -> int:
        """The most one process holds at once: a driver at its largest level."""
        if self.scenario.search is not None:
            return self.spec(self.probe_level(0, None, self.scenario.search.high), host="127.0.0.1", port=1).descriptors
        return max(spec.descriptors for spec in self.specs(host="127.0.0.1", port=1))


def plan_run(scenario: Scenario, backends: Iterable[str]) -> Plan:
    return Plan(scenario=scenario, backends=tuple(backends), levels=levels(scenario))


def planned_seconds(scenario: Scenario, *, backends: int, start_stop_s: float = START_STOP_S) -> float:
    """Wall time of the scenario's levels on `backends` backends: in every round, each
    backend's start and stop, and per level a warm-up and one window."""
    per_level = scenario.warmup_s + scenario.duration_s
    starts = len(core_counts(scenario))  # a backend starts anew for each server CPU count
    if scenario.search is not None:  # the budget is the most a search takes, then a window per request per round
        searches = backends * len(requests_of(scenario)) * scenario.search.budget_s
        return searches + (scenario.repeat + 1) * backends * start_stop_s \
            + scenario.repeat * backends * len(requests_of(scenario)) * per_level
    return scenario.repeat * backends * (start_stop_s * starts + len(levels(scenario)) * per_level)


def needed_descriptors(scenario: Scenario) -> int:
    """The descriptors a run of `scenario` needs in one process (see Plan.descriptors)."""
    return plan_run(scenario, ()).descriptors
