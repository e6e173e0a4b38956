"""A run's results as typed, immutable data: the Run document, its Backend entries and its Steps.

`load(path)` reads a results.json of any schema version the project ever wrote, upgrades it
once (schema.py), and checks every value as it builds the model: a document that is not what
it claims is refused with a ResultsError naming the file, the key and the reason. Every stage
that reads a run (summaries, findings, charts, the report, compare) reads these attributes and
trusts them. A figure a step did not record (an older version, a failed step) is None.

The orchestrator still writes plain dicts (harness/run, steps.step_record); `Run.of` builds
the model from such a document in memory, with the same checks.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.results.provenance import Metadata, metadata_of
from harness.results.schema import SCHEMA_VERSION, upgrade
from harness.results.search_record import Search, search_of
from harness.results.checked import Checked
from harness.results.figures import (Background, Cycles, DriverFigures, Errors, LinkFigures, Littles, Runtime,
                                     Second, ServerFigures, Uncorrected, background_of, cycles_of, driver_of,
                                     errors_of, link_of, littles_of, runtime_of, second_of, server_of,
                                     uncorrected_of)
from harness.results.store import read_document
from harness.results.words import counted

@dataclass(frozen=True)
class Step:
    """One measured window of one backend at one load level (docs/ARCHITECTURE.md, "What a
    window counts"). `backend` is the label; `series` adds the route and CPU count."""
    backend: str
    users: int
    status: str = "ok"
    repetition: int = 0
    error: str | None = None
    rate: float | None = None
    idle_connections: int = 0
    cores: int | None = None
    route: str | None = None
    rtt_ms: float | None = None  # the emulated link's round trip ([network]); None: loopback
    server_cpus: tuple[int, ...] | None = None  # None: not recorded
    requests: int = 0
    good_requests: int | None = None
    rps: float | None = None
    good_rps: float | None = None
    duration_s: float | None = None
    errors: Errors = field(default_factory=Errors)
    failures: int | None = None
    error_share: float | None = None
    answers_by_class: Mapping[str, int] | None = None
    p50_us: float | None = None
    p90_us: float | None = None
    p99_us: float | None = None
    p999_us: float | None = None
    max_us: float | None = None
    mean_us: float | None = None
    censored: int | None = None
    censored_min_us: float | None = None
    dropped: int | None = None
    dropped_max_us: float | None = None
    unfinished: int | None = None
    unfinished_max_us: float | None = None
    starved_users: int | None = None
    histogram: str | None = None
    uncorrected: Uncorrected | None = None
    timeseries: tuple[Second, ...] = ()
    server: ServerFigures = field(default_factory=ServerFigures)
    driver: DriverFigures = field(default_factory=DriverFigures)
    background: Background | None = None
    cycles: Cycles | None = None
    littles: Littles | None = None
    runtime: Runtime | None = None
    link: LinkFigures | None = None  # the link as configured and measured; None: loopback
    interrupted: bool = False
    flags: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def series(self) -> str:
        """The backend as charts and tables name it: with the request it sent alone when the
        scenario sends each so ("asyncio /sleep?ms=1"), its CPU count when the run sweeps it,
        and the link's round trip when there is one ("asyncio (rtt 20 ms)")."""
        if self.rtt_ms is None:
            return self.without_rtt
        return f"{self.without_rtt[:-1]}, rtt {self.rtt_ms:g} ms)" if self.cores is not None \
            else f"{self.without_rtt} (rtt {self.rtt_ms:g} ms)"

    @property
    def without_rtt(self) -> str:
        """The series without its round trip: the line a sweep over the link's round trip draws."""
        if self.cores is None:
            return self.without_cores
        return f"{self.without_cores} ({counted(self.cores, 'CPU')})"

    @property
    def without_cores(self) -> str:
        """The series without its CPU count: the line a sweep over the server's CPUs draws."""
        return self.backend if self.route is None else f"{self.backend} {self.route}"

    def percentile(self, key: str) -> float | None:
        """A percentile by its results.json key ("p99_us")."""
        return {"p50_us": self.p50_us, "p90_us": self.p90_us, "p99_us": self.p99_us,
                "p999_us": self.p999_us, "max_us": self.max_us, "mean_us": self.mean_us}[key]

    @property
    def steal_percent(self) -> float | None:
        """The larger of the server's and the driver's CPU steal %, None if neither was measured."""
        values = [v for v in (self.server.steal_percent, self.driver.steal_percent) if v is not None]
        return max(values) if values else None


@dataclass(frozen=True)
class Python:
    """The interpreter a backend ran under (ours; None for a cmd: server's)."""
    version: str | None = None
    implementation: str | None = None
    build: str | None = None
    free_threaded: bool | None = None
    gil_enabled: bool | None = None
    own: bool | None = None
    label: str | None = None


@dataclass(frozen=True)
class Place:
    """Where a run was when something happened to it (a failure, an interruption)."""
    users: int | None = None
    rate: float | None = None
    idle_connections: int | None = None
    repetition: int | None = None
    phase: str | None = None


@dataclass(frozen=True)
class Backend:
    """A backend's entry: how it ended, and why if it failed."""
    name: str
    status: str = "ok"
    error: str | None = None
    stderr_tail: str = ""
    command: str | None = None
    exit_status: int | None = None
    rounds_done: int | None = None
    python: Python | None = None
    step: Place | None = None


@dataclass(frozen=True)
class Event:
    """Something that happened to the run (store.EVENT_KINDS), in order."""
    t: str
    kind: str
    backend: str | None
    detail: str
    step: Place | None = None


@dataclass(frozen=True)
class Finding:
    """A sentence the run tells, with its numbers (harness/results/findings.py)."""
    kind: str
    backend: str
    text: str
    level: Mapping[str, Any] | None = None
    figures: Mapping[str, Any] = field(default_factory=dict)
    caveat: str | None = None


@dataclass(frozen=True)
class Run:
    """A run's results. `scenario` is as recorded (the scenario's own words, harness/scenario);
    `capacity` a rate search's record by series, or None;
    `findings` the stored sentences, None for a run that stored none; `written_version` the
    schema version the file was written with, before it was upgraded."""
    source: str
    written_version: int
    status: str
    metadata: Metadata
    scenario: Mapping[str, Any]
    backends: Mapping[str, Backend]
    steps: tuple[Step, ...]
    events: tuple[Event, ...] = ()
    findings: tuple[Finding, ...] | None = None
    capacity: Mapping[str, Search] | None = None

    @classmethod
    def of(cls, document: Mapping[str, Any], *, source: str = "results") -> Run:
        """The model of an in-memory document (the orchestrator's, or a test's), upgraded and
        checked as load() does a file; without a "version", it is this concurbench's own, as
        write_results would write it."""
        return build(upgrade_checked({"version": SCHEMA_VERSION, **document}, source), source)

    @property
    def ok_steps(self) -> tuple[Step, ...]:
        return tuple(step for step in self.steps if step.ok)

    def python(self, backend: str) -> Python | None:
        entry = self.backends.get(backend)
        return entry.python if entry else None


def load(path: Path | str) -> Run:
    """The Run in results.json (or in a run directory holding one), of any schema version the
    project wrote, upgraded once and checked."""
    path, document = read_document(Path(path))
    return build(upgrade_checked(document, str(path)), str(path))


def as_run(results: Run | Mapping[str, Any]) -> Run:
    """`results` as a Run: where the orchestrator hands over the document it is writing."""
    return results if isinstance(results, Run) else Run.of(results)


def as_steps(steps: Iterable[Step | Mapping[str, Any]]) -> tuple[Step, ...]:
    """Steps as the model holds them, from the model's or from the records the orchestrator writes."""
    items = list(steps)
    if all(isinstance(step, Step) for step in items):
        return tuple(step for step in items if isinstance(step, Step))
    return steps_of([step for step in items if not isinstance(step, Step)])


def upgrade_checked(document: dict[str, Any], source: str) -> dict[str, Any]:
    """Check the version (store.check_version's rules) and upgrade a copy; the copy keeps the
    version it was written with under "_written"."""
    from harness.results.store import check_version
    written = check_version(document, source)
    copy = dict(document)
    if isinstance(copy.get("steps"), (list, tuple)):  # the upgrades add keys to steps: copies, not the caller's
        copy["steps"] = [dict(s) if isinstance(s, Mapping) else s for s in copy["steps"]]
    upgraded = upgrade(copy)
    upgraded["_written"] = written
    return upgraded


def build(document: dict[str, Any], source: str) -> Run:
    """The Run of an upgraded document, each value checked against its type."""
    top = Checked(document, "", source)
    backends = top.mapping("backends")
    return Run(
        source=source, written_version=top.integer("_written", default=SCHEMA_VERSION),
        status=top.text("status", default="complete"),
        metadata=top.optional("metadata", metadata_of) or Metadata(), scenario=top.free("scenario"),
        backends={name: _backend(name, entry) for name, entry in backends.items()},
        steps=tuple(_step(item) for item in top.items("steps")),
        events=tuple(_event(item) for item in top.items("events")),
        findings=(tuple(_finding(item) for item in top.items("findings"))
                  if document.get("findings") is not None else None),
        capacity=({name: search_of(entry) for name, entry in top.mapping("capacity").items()}
                  if document.get("capacity") is not None else None),
    )


def _step(c: Checked) -> Step:
    number = c.opt_num
    return Step(
        backend=c.text("backend"), users=c.integer("users"), status=c.text("status", default="ok"),
        repetition=c.integer("repetition", default=0), error=c.opt_str("error"), rate=number("rate"),
        idle_connections=c.opt_int("idle_connections") or 0, cores=c.opt_int("cores"),
        route=c.opt_str("route"), rtt_ms=c.opt_num("rtt_ms"),
        server_cpus=None if c.data.get("server_cpus") is None else tuple(c.ints("server_cpus")),
        requests=c.opt_int("requests") or 0, good_requests=c.opt_int("good_requests"),
        rps=number("rps"), good_rps=number("good_rps"), duration_s=number("duration_s"),
        errors=errors_of(c),
        failures=c.opt_int("failures"), error_share=number("error_share"),
        answers_by_class=c.opt_counts("answers_by_class"),
        p50_us=number("p50_us"), p90_us=number("p90_us"), p99_us=number("p99_us"), p999_us=number("p999_us"),
        max_us=number("max_us"), mean_us=number("mean_us"),
        censored=c.opt_int("censored"), censored_min_us=number("censored_min_us"),
        dropped=c.opt_int("dropped"), dropped_max_us=number("dropped_max_us"),
        unfinished=c.opt_int("unfinished"), unfinished_max_us=number("unfinished_max_us"),
        starved_users=c.opt_int("starved_users"), histogram=c.opt_str("histogram"),
        uncorrected=c.optional("uncorrected", uncorrected_of),
        timeseries=tuple(second_of(item) for item in c.items("timeseries")),
        server=c.optional("server", server_of) or ServerFigures(),
        driver=c.optional("driver", driver_of) or DriverFigures(),
        background=c.optional("background", background_of), cycles=c.optional("cycles", cycles_of),
        littles=c.optional("littles", littles_of), runtime=c.optional("runtime", runtime_of),
        link=c.optional("link", link_of), interrupted=c.opt_bool("interrupted") or False, flags=tuple(c.strs("flags")),
    )


def _python(c: Checked) -> Python:
    return Python(version=c.opt_str("version"), implementation=c.opt_str("implementation"),
                  build=c.opt_str("build"), free_threaded=c.opt_bool("free_threaded"),
                  gil_enabled=c.opt_bool("gil_enabled"), own=c.opt_bool("own"), label=c.opt_str("label"))


def _place(c: Checked) -> Place:
    return Place(users=c.opt_int("users"), rate=c.opt_num("rate"), idle_connections=c.opt_int("idle_connections"),
                 repetition=c.opt_int("repetition"), phase=c.opt_str("phase"))


def _backend(name: str, c: Checked) -> Backend:
    return Backend(name=name, status=c.text("status", default="ok"), error=c.opt_str("error"),
                   stderr_tail=c.opt_str("stderr_tail") or "", command=c.opt_str("command"),
                   exit_status=c.opt_int("exit_status"), rounds_done=c.opt_int("rounds_done"),
                   python=c.optional("python", _python), step=c.optional("step", _place))


def _event(c: Checked) -> Event:
    return Event(t=c.text("t", default=""), kind=c.text("kind"), backend=c.opt_str("backend"),
                 detail=c.text("detail", default=""), step=c.optional("step", _place))


def _finding(c: Checked) -> Finding:
    return Finding(kind=c.text("kind"), backend=c.text("backend"), text=c.text("text"),
                   level=c.free("level") if c.opt_sub("level") is not None else None,
                   figures=c.free("figures"), caveat=c.opt_str("caveat"))


def finding_of(found: Mapping[str, Any]) -> Finding:
    """A finding as findings.py derives it (a dict, for results.json), as the model holds it."""
    return _finding(Checked(dict(found), "findings[]", "findings"))


def steps_of(steps: Sequence[Mapping[str, Any]]) -> tuple[Step, ...]:
    """Step records as the orchestrator writes them (or as a version 1 file held them), as the
    model holds them."""
    document = upgrade({"version": 1, "steps": [dict(step) for step in steps]})
    return tuple(_step(c) for c in Checked(document, "", "steps").items("steps"))
