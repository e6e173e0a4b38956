"""The typed results model: load() reads every schema version the project wrote, upgrades it once,
and refuses a malformed document with the file, the key and the reason."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from harness.results.model import Run, Step, load
from harness.results.schema import SCHEMA_VERSION, UPGRADES
from harness.results.store import ResultsError, write_results

ROOT = Path(__file__).resolve().parents[3]
COMMITTED = sorted([*ROOT.glob("results/reference/*/results.json"), *ROOT.glob("tests/fixtures/runs/*/results.json")])
V1 = ROOT / "tests/fixtures/runs/run-b/results.json"  # version 1, with a failed backend
V3 = ROOT / "results/reference/20261206-112541-parallel/results.json"


def document(path: Path) -> dict:
    return json.loads(path.read_text())


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: f"{p.parent.parent.name}/{p.parent.name}")
def test_every_committed_run_loads(path: Path) -> None:
    raw = document(path)
    run = load(path.parent)  # a run directory works as well as its results.json
    assert run.written_version == raw["version"]
    assert len(run.steps) == len(raw["steps"])
    assert [s.backend for s in run.steps] == [s["backend"] for s in raw["steps"]]
    assert [s.p99_us for s in run.steps] == [s["p99_us"] for s in raw["steps"]]
    assert set(run.backends) == set(raw["backends"])


def test_every_version_the_project_wrote_has_an_upgrade() -> None:
    assert sorted(UPGRADES) == list(range(1, SCHEMA_VERSION))
    assert {document(p)["version"] for p in COMMITTED} <= set(range(1, SCHEMA_VERSION + 1))


def test_version_1_upgrades_to_closed_loop_without_goodput() -> None:
    run = load(V1)
    assert run.written_version == 1
    step = run.steps[0]
    assert step.rate is None and step.uncorrected is None  # version 1 ran closed loop only
    assert step.good_rps is None and step.censored is None  # not counted then: unknown, not zero
    assert step.rps == document(V1)["steps"][0]["rps"]
    failed = [s for s in run.steps if not s.ok]
    assert failed and failed[0].error and failed[0].server.memory is None
    assert run.backends["forking"].status == "failed" and "BlockingIOError" in run.backends["forking"].stderr_tail


def test_version_2_open_loop_and_events_load(tmp_path: Path) -> None:
    raw = document(V1)
    raw["version"] = 2
    raw["steps"][0].update(rate=500.0, uncorrected={"p50_us": 90, "p90_us": 120, "p99_us": 200, "p999_us": 300,
                                                   "max_us": 400})
    raw["events"] = [{"t": "2025-01-01T00:00:00+00:00", "kind": "backend-failed", "backend": "forking",
                      "step": {"users": 1, "rate": None, "idle_connections": 0, "repetition": 0, "phase": "warm-up"},
                      "detail": "did not come up"}]
    (tmp_path / "results.json").write_text(json.dumps(raw))
    run = load(tmp_path)
    assert run.written_version == 2
    assert run.steps[0].rate == 500.0 and run.steps[0].uncorrected and run.steps[0].uncorrected.p99_us == 200
    assert run.steps[1].rate is None
    assert run.events[0].kind == "backend-failed" and run.events[0].step and run.events[0].step.phase == "warm-up"


def test_version_3_without_its_later_keys_reads_them_as_absent(tmp_path: Path) -> None:
    raw = document(V3)
    for step in raw["steps"]:
        for key in ("server_cpus", "cores", "route", "runtime"):
            del step[key]
        del step["server"]["others_percent"]
    for entry in raw["backends"].values():
        del entry["python"]
    del raw["findings"]
    (tmp_path / "results.json").write_text(json.dumps(raw))
    run = load(tmp_path)
    step = run.steps[0]
    assert (step.server_cpus, step.cores, step.route, step.runtime, step.server.others_percent) == (None, None, None,
                                                                                                   None, None)
    assert step.series == step.backend
    assert run.findings is None and all(entry.python is None for entry in run.backends.values())


def test_the_current_version_round_trips(tmp_path: Path) -> None:
    raw = document(V3)
    del raw["version"]
    write_results(tmp_path, raw)
    run = load(tmp_path)
    assert run.written_version == SCHEMA_VERSION
    assert run.steps == load(V3).steps
    assert run.findings == load(V3).findings and run.findings
    assert run.steps[0].runtime and run.steps[0].runtime.gil_enabled is True


def test_a_run_is_immutable() -> None:
    step = load(V1).steps[0]
    with pytest.raises(AttributeError):
        step.rps = 0.0  # type: ignore[misc]


def test_an_in_memory_document_builds_the_same_run() -> None:
    raw = document(V3)
    assert Run.of(raw).steps == load(V3).steps
    assert raw == document(V3)  # building does not change the orchestrator's document


def _set(path: str, value: object):
    def mutate(raw: dict) -> None:
        *parents, last = path.split(".")
        node = raw
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        node[last] = value
    return mutate


@pytest.mark.parametrize("mutate, key, reason", [
    (_set("steps.3.users", "eight"), "steps[3].users", "must be an integer, not 'eight'"),
    (_set("steps.0.users", None), "steps[0].users", "must not be null"),
    (lambda raw: raw["steps"][1].pop("backend"), "steps[1].backend", "missing"),
    (_set("steps.2.server.cpu_percent", "high"), "steps[2].server.cpu_percent", "must be a number"),
    (_set("steps.0.flags", "noisy"), "steps[0].flags", "must be a list"),
    (_set("steps.0.flags", [3]), "steps[0].flags[0]", "must be a string"),
    (_set("steps.0.driver", 12), "steps[0].driver", "must be an object"),
    (_set("steps.0.runtime.gil_enabled", "yes"), "steps[0].runtime.gil_enabled", "must be true or false"),
    (_set("steps", {"a": 1}), "steps", "must be a list"),
    (lambda raw: raw["backends"]["asyncio@3.13"].update(exit_status=1.5), "backends.asyncio@3.13.exit_status",
     "must be an integer"),
], ids=["wrong-type", "null", "missing", "nested", "not-a-list", "list-item", "not-an-object", "bool",
        "steps-not-a-list", "backend-entry"])
def test_a_malformed_document_names_the_file_key_and_reason(tmp_path: Path, mutate, key: str, reason: str) -> None:
    raw = copy.deepcopy(document(V3))
    mutate(raw)
    path = tmp_path / "results.json"
    path.write_text(json.dumps(raw))
    with pytest.raises(ResultsError) as caught:
        load(path)
    assert str(caught.value).startswith(f"{path}: {key}: ")
    assert reason in str(caught.value)


def test_step_series_names_route_and_cores() -> None:
    assert Step(backend="asyncio", users=8, route="/sleep?ms=1").series == "asyncio /sleep?ms=1"
    assert Step(backend="threaded", users=8, cores=2).series == "threaded (2 CPUs)"
    assert Step(backend="threaded", users=8, cores=1).series == "threaded (1 CPU)"


def test_the_orchestrators_document_builds_before_it_is_json() -> None:
    """While a run goes on, its document holds tuples where results.json will hold lists, and no
    version (write_results adds it): the model reads it as the file it will become."""
    raw = document(V3)
    del raw["version"]
    raw["steps"] = tuple({**step, "timeseries": tuple(step["timeseries"]), "flags": tuple(step["flags"])}
                         for step in raw["steps"])
    assert Run.of(raw).steps == load(V3).steps


def test_metadata_and_a_rate_search_are_typed() -> None:
    raw = document(ROOT / "results/reference/20261130-154828-capacity/results.json")
    run = load(ROOT / "results/reference/20261130-154828-capacity")
    meta = run.metadata
    assert (meta.hostname, meta.commit, meta.server_cpus, meta.driver_cpus) == (
        raw["metadata"]["hostname"], raw["metadata"]["git"]["commit"], (0,), (1,))
    assert meta.order[0] == raw["metadata"]["order"][0]["backend"] and meta.raw == raw["metadata"]
    search = run.capacity and run.capacity["asyncio /"]
    assert search and (search.backend, search.route, search.status, search.passed) == ("asyncio", "/", "driver-bound",
                                                                                      72200.0)
    assert (search.p99_ms, search.error_share, search.low) == (10.0, 0.001, 100.0)
    assert [(p.rate, p.passed) for p in search.path] == [(p["rate"], p["passed"]) for p in raw["capacity"]["asyncio /"]["path"]]
