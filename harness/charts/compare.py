"""Compare runs of one scenario on one machine: each level's figures lined up run by run, with
ratios and their confidence intervals (compare_stats.py); the gate for CI is compare_gate.py,
the overlay charts compare_overlays.py, the printed forms compare_formats.py.

Each later run is compared with the first, the base: a run directory, its results.json, or a
stored baseline such as one under results/reference/. Per backend and load level, two
measures: throughput, which is goodput (good req/s: 2xx/3xx answers per second) when every
run recorded it, else req/s (a run recorded by an older version has no goodput; a server
that answers faster with refusals is not faster), and p99 latency. Each figure is the
geometric mean of the level's repetitions; each ratio (other/base) comes with its 95%
confidence interval (compare_stats says which test and why) and reads "not significant" when
the interval includes 1. A backend that ran in the base and failed in a later run is listed
once, even when it crashed after some steps. Runs from different
machines or of different scenarios are refused unless forced: their ratios would measure the
change of machine or workload, not of code. Rate searches are refused: each run searches its
own rates, so their levels do not line up; their capacity tables are what to compare.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from harness.charts.compare_overlays import draw_overlays
from harness.charts.compare_stats import Ratio, geometric_mean, ratio_interval
from harness.charts.levels import failed_backends
from harness.charts.style import backend_order, machine_line, short_cpu_model
from harness.results.model import Run, Step, load
from harness.results.steps import LevelKey, group_levels
from harness.results.printed import first_line
from harness.results.summary import load_label

NOT_SIGNIFICANT = "not significant"
THROUGHPUT, P99 = "throughput", "p99"
# What a throughput row compares: goodput where every run has it, else all answers.
MEASURE_NAMES = {"good_rps": "good req/s", "rps": "req/s"}


class CompareError(Exception):
    """Runs that cannot be compared: too few, or from different machines or scenarios."""


@dataclass(frozen=True)
class Cell:
    """One run's figure at one level, and how it compares with the base's."""

    run: str
    status: str  # "ok", "failed" (the backend failed in this run) or "missing" (not run, or no value)
    value: float | None  # geometric mean of the repetitions (req/s, or p99 in µs)
    ratio: Ratio | None = None  # None for the base, or when either side has no value
    verdict: str = ""


@dataclass(frozen=True)
class Row:
    """One backend at one load level, one measure: the base's figure, then each later run's."""

    backend: str
    level: LevelKey  # (backend, users, offered rate or None, idle connections), as steps.level_key
    measure: str  # THROUGHPUT or P99
    unit: str  # "good req/s", "req/s" or "p99 ms"
    base: Cell
    others: tuple[Cell, ...]

    @property
    def load(self) -> str:
        """'8 users', '2,000/s offered', '1 user + 1,000 idle'."""
        _, users, rate, idle = self.level
        return load_label(users, rate, idle) if users or rate else ""


@dataclass(frozen=True)
class Failure:
    """A backend that ran in the base and failed in a later run, perhaps after some steps."""

    backend: str
    run: str
    error: str  # the first line of the run's error


@dataclass(frozen=True)
class RunInfo:
    """Which run a column is: its label (the directory's name), where it was read from, when
    and from which commit it ran, and how it ended."""

    label: str
    path: str
    date: str | None
    hostname: str | None
    commit: str | None
    dirty: bool
    status: str

    def to_dict(self) -> dict[str, str | bool | None]:
        """As compare's json lists it."""
        return {"label": self.label, "path": self.path, "date": self.date, "hostname": self.hostname,
                "commit": self.commit, "dirty": self.dirty, "status": self.status}


@dataclass(frozen=True)
class Comparison:
    """Everything compare prints, in any format."""

    scenario: str | None
    machine: str
    runs: tuple[RunInfo, ...]  # the base first
    warnings: tuple[str, ...]
    throughput: str  # what the throughput rows count, in words
    rows: tuple[Row, ...]
    failures: tuple[Failure, ...] = ()  # backends that ran in the base and failed in a later run
    charts: tuple[str, ...] = ()  # overlay charts written, when asked for
    chart_dir: str | None = None


def throughput_key(runs: Sequence[Run]) -> str:
    """"good_rps" when every run recorded goodput, else "rps" for all (an older version's run)."""
    steps = [step for run in runs for step in run.ok_steps]
    return "good_rps" if steps and all(step.good_rps is not None for step in steps) else "rps"


def repetition_values(reps: Sequence[Step], measure: str) -> list[float]:
    """One value per repetition: its throughput (by throughput_key), or its p99 in µs."""
    values = {P99: [step.p99_us for step in reps], "good_rps": [step.good_rps for step in reps],
              "rps": [step.rps for step in reps]}[measure]
    return [value for value in values if value is not None]


def verdict(measure: str, unit: str, ratio: Ratio, base: float, other: float) -> str:
    """"1.15x faster", "1.30x higher", "not significant", "untested: 1 repetition"..."""
    if ratio.significant is None:
        return "untested: 1 repetition"
    if not ratio.significant:
        return NOT_SIGNIFICANT
    if measure == THROUGHPUT and (base < 1 or other < 1):  # a stalled side: no meaningful factor
        return f"from 0 {unit}" if base < 1 else f"down to 0 {unit}"
    up = ratio.value >= 1
    factor = f"{ratio.value if up else 1 / ratio.value:.2f}x"
    if measure == THROUGHPUT:
        return f"{factor} {'faster' if up else 'slower'}"
    return f"{factor} {'higher' if up else 'lower'}"


def run_label(path: Path) -> str:
    """A run's name in tables and legends: its directory's name."""
    path = Path(path)
    return (path.parent if path.name == "results.json" else path).name


def mismatches(runs: Sequence[Run], labels: Sequence[str]) -> list[str]:
    """Why these runs should not be compared: each a sentence naming both runs."""
    problems = []
    first, first_label = runs[0], labels[0]
    for run, label in zip(runs[1:], labels[1:]):
        meta, base = run.metadata, first.metadata
        if (meta.hostname, meta.cpu_model) != (base.hostname, base.cpu_model):
            problems.append(
                f"{label} ran on {meta.hostname} ({short_cpu_model(meta.cpu_model)}) "
                f"but {first_label} on {base.hostname} "
                f"({short_cpu_model(base.cpu_model)}): different machines")
        name, base_name = run.scenario.get("name"), first.scenario.get("name")
        digest, base_digest = meta.scenario_sha256, base.scenario_sha256
        if name != base_name:
            problems.append(f"{label} ran scenario {name!r} but {first_label} ran {base_name!r}")
        elif digest != base_digest:
            problems.append(f"{label} and {first_label} both ran {name!r}, but from different "
                            f"scenario files (sha256 {str(digest)[:12]} vs {str(base_digest)[:12]})")
    return problems


# From this results schema on, a window counts every request that completes in it; before,
# the requests in flight at each window boundary were lost, so req/s read low by about
# users / window (schema.py's history).
COUNTS_EVERY_REQUEST = 3


def schema_gaps(runs: Sequence[Run], labels: Sequence[str]) -> list[str]:
    """Runs recorded before every request was counted, when compared with runs after."""
    versions = [run.written_version for run in runs]
    if all(v >= COUNTS_EVERY_REQUEST for v in versions) or all(v < COUNTS_EVERY_REQUEST for v in versions):
        return []
    return [f"{label} was recorded with results schema {version}, whose windows lost the requests in flight "
            f"at each boundary (and counted refusals as throughput): its ratios against later runs are not like "
            f"for like" for label, version in zip(labels, versions) if version < COUNTS_EVERY_REQUEST]


def compare(paths: Sequence[Path], *, force: bool = False, chart_dir: Path | None = None) -> Comparison:
    """The runs' figures, each later run's against the first's. Raises CompareError for fewer
    than two runs, or for runs of different machines or scenarios unless force is true.
    With chart_dir, also draws one overlay per backend there."""
    if len(paths) < 2:
        raise CompareError("compare needs at least two runs")
    runs = [load(Path(path)) for path in paths]
    labels = [run_label(Path(path)) for path in paths]
    if len(set(labels)) < len(labels):
        labels = [str(path) for path in paths]
    searches = [label for run, label in zip(runs, labels) if run.capacity]
    if searches:
        raise CompareError(f"{', '.join(searches)}: a rate search ([load] rate = {{ search = ... }}); compare does "
                           f"not judge rate searches yet: compare their capacity tables (concurbench summary)")
    problems = mismatches(runs, labels)
    if problems and not force:
        raise CompareError("refusing to compare: " + "; ".join(problems)
                           + ". --force compares them anyway.")
    key = throughput_key(runs)
    throughput = ("good req/s (2xx/3xx answers per second)" if key == "good_rps" else
                  "req/s (answers of any status: not every run recorded goodput)")
    return Comparison(
        scenario=runs[0].scenario.get("name"),
        machine=machine_line(runs[0].metadata),
        runs=tuple(_run_info(run, label, Path(path)) for run, label, path in zip(runs, labels, paths)),
        warnings=tuple([f"WARNING (forced): {problem}" for problem in problems]
                       + [f"WARNING: {problem}" for problem in schema_gaps(runs, labels)]),
        throughput=throughput, rows=tuple(_rows(runs, labels, key)), failures=tuple(_failures(runs, labels)),
        charts=(tuple(str(p) for p in draw_overlays(runs, labels, Path(chart_dir), forced=bool(problems)))
                if chart_dir else ()),
        chart_dir=str(chart_dir) if chart_dir else None)


def _run_info(run: Run, label: str, path: Path) -> RunInfo:
    meta = run.metadata
    return RunInfo(label=label, path=str(path), date=meta.date, hostname=meta.hostname, commit=meta.commit,
                   dirty=meta.dirty, status=run.status)


def _rows(runs: Sequence[Run], labels: Sequence[str], key: str) -> list[Row]:
    """Per backend and load level (closed loop, open loop, with idle connections beside), a
    throughput row (by key, throughput_key's) then a p99 row."""
    groups = [group_levels(run.steps) for run in runs]
    failed = [failed_backends(run) for run in runs]
    rows = []
    for backend in backend_order([key[0] for g in groups for key in g] + [b for f in failed for b in f]):
        levels = sorted({key for g in groups for key in g if key[0] == backend},
                        key=lambda key: (key[2] is not None, key[1], key[2] or 0, key[3]))
        for level in levels or [(backend, 0, None, 0)]:
            reps = [g.get(level, []) for g in groups]
            for measure, values_of, unit in ((THROUGHPUT, key, MEASURE_NAMES[key]), (P99, P99, "p99 ms")):
                values = [repetition_values(r, values_of) for r in reps]
                cells = [Cell(label, "ok" if vals else "failed" if backend in f else "missing",
                              geometric_mean(vals) if vals else None)
                         for label, vals, f in zip(labels, values, failed)]
                others = tuple(_against(cells[0], cell, values[0], vals, measure, unit)
                               for cell, vals in zip(cells[1:], values[1:]))
                rows.append(Row(backend, level, measure, unit, cells[0], others))
    return rows


def _failures(runs: Sequence[Run], labels: Sequence[str]) -> list[Failure]:
    """Per later run, each backend failed in it (failed_backends') that ran in the base: a
    good step there, and its status not failed."""
    ran = {step.backend for step in runs[0].ok_steps}
    ran -= set(failed_backends(runs[0]))
    return [Failure(backend, label, first_line(failed[backend]) or "failed")
            for run, label in zip(runs[1:], labels[1:]) for failed in [failed_backends(run)]
            for backend in backend_order(list(failed)) if backend in ran]


def _against(base: Cell, cell: Cell, base_values: list[float], values: list[float], measure: str,
             unit: str) -> Cell:
    if base.status == "ok" and cell.status == "ok":
        ratio = ratio_interval(base_values, values)
        return Cell(cell.run, cell.status, cell.value, ratio,
                    verdict(measure, unit, ratio, base.value or 0.0, cell.value or 0.0))
    text = (f"failed in {base.run}" if base.status == "failed" else
            f"failed in {cell.run}" if cell.status == "failed" else "missing")
    return Cell(cell.run, cell.status, cell.value, None, text)
