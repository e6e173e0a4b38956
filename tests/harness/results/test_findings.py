"""Findings: each kind on a stored run that shows it and one that does not.

The runs are trimmed copies of the reference runs (tests/fixtures/make_findings_fixtures.py
says which backends each keeps and what it shows); a few tests change one figure of a copy
in memory to cross a threshold, and say which.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest

from harness.results.model import Run
from harness.charts.report import render_report
from harness.results.findings import (FINDING_KINDS, VERDICT_SIZE, findings, findings_text, format_findings,
                                      shape_notes, stored_findings, verdict_findings)
from harness.results.finding_groups import SATURATION_GROUP_MIN
from harness.results.finding_ceiling import CEILING_TOLERANCE, ONE_CPU, UNEXPLAINED, model
from harness.results.finding_free_threading import free_threading_cost
from harness.results.finding_levels import CAVEAT_FLAGS
from harness.results.finding_rules import REFUSAL_SHARE, RunView
from harness.results.finding_speedup import ONE_CPU_TOLERANCE, SCALES_EFFICIENCY, karp_flatt, verdict
from harness.results.steps import CONTENDED, DRIVER_BOUND, GIL_ON, HIGH_SPREAD, NOISY, SHARED_CPU
from harness.results.store import read_results
from harness.results.summary import summary_rows
from support import FIXTURES

RUNS = FIXTURES / "runs"
FIXTURE_RUNS = ("findings-hello", "findings-idle-preconnect", "findings-cpu-bound", "findings-mixed", "findings-c10k",
                "findings-parallel", "findings-best-left-out")


def load(name: str) -> dict[str, Any]:
    return read_results(RUNS / name)


def of_kind(found: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    """backend -> the finding of `kind`; a finding told of several backends (the GIL ceiling,
    a shared knee, skipped USL fits) under their names joined by ", "."""
    picked = [item for item in found if item["kind"] == kind]
    assert len({item["backend"] for item in picked}) == len(picked), f"two {kind} findings for one backend"
    return {item["backend"]: item for item in picked}


def steps_at(results: dict[str, Any], backend: str, users: int) -> list[dict[str, Any]]:
    return [step for step in results["steps"] if step["backend"] == backend and step["users"] == users]


@pytest.fixture(scope="module", params=FIXTURE_RUNS)
def stored_run(request: pytest.FixtureRequest) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    results = load(request.param)
    return results, findings(results)


# --- every finding, every run -------------------------------------------------------------

def test_findings_are_json_ready_and_shaped(stored_run: tuple[dict[str, Any], list[dict[str, Any]]]) -> None:
    _, found = stored_run
    assert found
    assert json.loads(json.dumps(found, allow_nan=False)) == found
    for item in found:
        assert set(item) == {"kind", "backend", "level", "text", "figures", "caveat"}
        assert item["kind"] in FINDING_KINDS and item["text"] and "\n" not in item["text"]
        assert item["level"] is None or set(item["level"]) == {"users", "rate", "idle_connections", "cores"}


def unswept(series: str) -> str:
    """A series without its server CPU count: what a finding about a sweep of counts names."""
    return re.sub(r" \(\d+ CPUs?\)$", "", series)


def test_findings_come_by_kind_then_in_the_tables_backend_order(
        stored_run: tuple[dict[str, Any], list[dict[str, Any]]]) -> None:
    results, found = stored_run
    backends = list(dict.fromkeys(unswept(row.backend) for row in summary_rows(results["steps"])))
    order = [(FINDING_KINDS.index(item["kind"]), backends.index(unswept(item["backend"].split(", ")[0])))
             for item in found]
    assert order == sorted(order)
    assert findings(results) == found  # deterministic


def test_a_finding_at_a_flagged_level_says_so(stored_run: tuple[dict[str, Any], list[dict[str, Any]]]) -> None:
    results, found = stored_run
    flags = {(row.backend, row.users, row.rate, row.idle): set(row.flags)
             for row in summary_rows(results["steps"])}
    for item in found:
        if item["level"] is None:
            continue
        level = item["level"]
        for backend in item["backend"].split(", "):  # a grouped finding: each of its backends
            flagged = flags[backend, level["users"], level["rate"], level["idle_connections"]] & set(CAVEAT_FLAGS)
            for flag in flagged:
                assert item["caveat"] and flag in item["caveat"] and flag in item["text"], item


# --- saturation ---------------------------------------------------------------------------

def test_saturation_is_the_knee_with_its_numbers() -> None:
    """iterative and threaded both saturate at 8 users + 1 idle: under SATURATION_GROUP_MIN,
    so each has its own sentence."""
    found = of_kind(findings(load("findings-idle-preconnect")), "saturation")
    assert list(found) == ["iterative", "threaded", "forking"]
    assert found["threaded"]["text"] == ("threaded saturates at 8 users + 1 idle: 10,474 req/s; at 32 users + 1 idle "
                                         "p99 is 3.4x higher (1.23 ms to 4.13 ms) for -2% throughput (high-spread: "
                                         "repetitions over 10% apart)")
    assert found["threaded"]["level"] == {"users": 8, "rate": None, "idle_connections": 1, "cores": None}
    assert found["threaded"]["figures"]["past_users"] == 32
    assert found["threaded"]["caveat"] == "high-spread: repetitions over 10% apart"


def test_saturation_at_one_level_is_one_sentence_with_ranges() -> None:
    found = of_kind(findings(load("findings-hello")), "saturation")
    assert list(found) == ["threaded, selectors, asyncio"] and SATURATION_GROUP_MIN == 3
    group = found["threaded, selectors, asyncio"]
    assert group["text"] == ("threaded, selectors and asyncio saturate at 8 users (87,061 to 104,995 req/s): at 32 "
                             "users p99 is 3.8x to 4.5x higher for -2% to +4% throughput (high-spread for asyncio: "
                             "repetitions over 10% apart)")  # asyncio's 8 users spread over 10%
    assert group["caveat"] == "high-spread for asyncio: repetitions over 10% apart"
    assert group["level"] == {"users": 8, "rate": None, "idle_connections": 0, "cores": None}
    assert group["figures"]["backends"] == ["threaded", "selectors", "asyncio"]
    threaded = group["figures"]["by_backend"]["threaded"]  # each backend's numbers, as told alone
    # 4.4x when told alone
    assert (round(threaded["good_rps"]), threaded["past_users"], threaded["p99_ratio"]) == (87061, 32, 4.354)


def test_saturation_quotes_a_lower_bound_p99_as_such() -> None:
    group = of_kind(findings(load("findings-cpu-bound")), "saturation")["iterative, threaded, asyncio, selectors-pool"]
    assert group["text"] == ("iterative, threaded, asyncio and selectors-pool saturate at 1 user (205 to 233 req/s): "
                             "by 4 to 16 users p99 is 5.2x to >=950x higher for -2% to +7% throughput")
    assert group["figures"]["by_backend"]["iterative"]["past_p99_lower_bound"] is True
    results = copy.deepcopy(load("findings-cpu-bound"))  # two backends left: each told alone
    results["steps"] = [step for step in results["steps"] if step["backend"] in ("iterative", "threaded")]
    found = of_kind(findings(results), "saturation")
    assert list(found) == ["iterative", "threaded"]
    assert found["iterative"]["text"].startswith("iterative saturates at 1 user: 223 req/s; at 16 users p99 is >=950x "
                                                 "higher")
    assert ">=5,001.22 ms" in found["iterative"]["text"] and found["iterative"]["figures"]["past_p99_lower_bound"]


def test_no_knee_where_throughput_is_flat_but_p99_does_not_grow() -> None:
    """iterative serves one keep-alive user and starves the rest: throughput flat from 1 user,
    but its p99 (of the one user served) never doubles: starvation tells it, not a knee."""
    found = findings(load("findings-hello"))
    assert "iterative" not in of_kind(found, "saturation")
    assert "iterative" in of_kind(found, "starvation")


def test_no_saturation_in_an_open_loop_run() -> None:
    assert of_kind(findings(load("findings-c10k")), "saturation") == {}


# --- starvation ---------------------------------------------------------------------------

def test_starvation_names_the_worst_level_and_where_it_starts() -> None:
    found = of_kind(findings(load("findings-hello")), "starvation")
    assert list(found) == ["iterative"]
    assert found["iterative"]["text"] == ("iterative at 128 users: 127 of 128 users got no answer in 4 s; "
                                          "users starve from 8 users on")
    assert found["iterative"]["figures"]["starved"] == 127 and found["iterative"]["figures"]["window_s"] == 4.0


def test_starvation_in_the_mix_and_the_open_loop() -> None:
    mixed = of_kind(findings(load("findings-mixed")), "starvation")
    assert mixed["threaded"]["text"] == "threaded at 128 users: 79 of 128 users got no answer in 4 s"
    assert mixed["forking"]["figures"]["starved"] == 64 and "selectors" not in mixed and "asyncio" not in mixed
    c10k = of_kind(findings(load("findings-c10k")), "starvation")
    assert c10k["iterative"]["text"].startswith("iterative at 1,000/s offered + 1,000 idle: 8 of 8 connections got "
                                                "no answer in 5 s")


# --- refusals -----------------------------------------------------------------------------

def test_refusals_past_max_connections() -> None:
    found = of_kind(findings(load("findings-c10k")), "refusals")
    assert list(found) == ["threaded"]  # selectors holds every idle connection
    assert found["threaded"]["text"] == ("threaded at 1,000/s offered + 1,000 idle: 100% of requests were refused "
                                         "(15,001 5xx answers, 0 connections refused, closed or reset)")
    assert found["threaded"]["level"]["idle_connections"] == 1000


@pytest.mark.parametrize(("resets", "told"), [(10, False), (5000, True)], ids=["under-threshold", "over-threshold"])
def test_refusals_only_over_the_threshold(resets: int, told: bool) -> None:
    """threaded at 8 users answers ~87k req/s x 4 s per repetition: 10 resets are far under
    REFUSAL_SHARE, 5,000 in each of 3 repetitions (1.4%) over it."""
    results = copy.deepcopy(load("findings-hello"))
    for step in steps_at(results, "threaded", 8):
        step["errors"]["reset"] = resets
    found = of_kind(findings(results), "refusals")
    assert ("threaded" in found) is told
    if told:
        figures = found["threaded"]["figures"]
        assert figures["closed"] == 3 * resets and figures["share"] > REFUSAL_SHARE
        assert "15,000 connections refused, closed or reset" in found["threaded"]["text"]
    assert of_kind(findings(load("findings-hello")), "refusals") == {}


# --- head-of-line blocking ----------------------------------------------------------------

def test_head_of_line_in_the_mix_against_the_best_backend() -> None:
    found = of_kind(findings(load("findings-mixed")), "head-of-line")
    assert list(found) == ["threaded", "selectors", "asyncio"]  # forking keeps its p50; iterative starves
    assert found["asyncio"]["text"] == ("asyncio at 32 users: p50 97.66 ms, 35.2x the best backend's (forking, "
                                        "2.77 ms; left out, though lower: iterative 0.06 ms (starved users)), with "
                                        "/cpu?ms=50 at 5% of requests: short requests wait behind slow ones")
    assert found["asyncio"]["figures"]["left_out"] == [{"backend": "iterative", "value_us": 58, "why": "starved users"}]
    assert found["threaded"]["level"]["users"] == 8 and "p50 6.76 ms" in found["threaded"]["text"]


def test_head_of_line_beside_an_idle_connection_on_p99_not_a_models_own_cost() -> None:
    """iterative freezes on the idle connection (p99 ~2 s); forking's p50 is 10x the others'
    too, but from a fork per connection (CPU per request 40x theirs): not blocking."""
    found = of_kind(findings(load("findings-idle-preconnect")), "head-of-line")
    assert list(found) == ["iterative"]
    assert found["iterative"]["text"].startswith("iterative at 32 users + 1 idle: p99 1,998.85 ms, 627x the best "
                                                 "backend's (asyncio, 3.19 ms), beside 1 idle connection")


def test_the_best_backend_names_the_lower_ones_it_left_out_and_why() -> None:
    """selectors and selectors-pool had a lower p99 beside the idle connection than asyncio, but
    were driver-bound: the best is "the best unflagged backend", and they are named."""
    found = of_kind(findings(load("findings-best-left-out")), "head-of-line")
    assert found["iterative"]["text"] == (
        "iterative at 32 users + 1 idle: p99 1,998.85 ms, 627x the best unflagged backend's (asyncio, 3.19 ms; left "
        "out, though lower: selectors 2.67 ms (driver-bound) and selectors-pool 2.92 ms (driver-bound)), beside 1 "
        "idle connection: short requests wait behind slow ones")
    assert [(item["backend"], item["why"]) for item in found["iterative"]["figures"]["left_out"]] == [
        ("selectors", "driver-bound"), ("selectors-pool", "driver-bound")]
    # with nothing lower left out, it stays "the best backend's"
    assert "the best backend's (asyncio, 3.19 ms), beside" in of_kind(
        findings(load("findings-idle-preconnect")), "head-of-line")["iterative"]["text"]


def test_head_of_line_compares_a_request_only_with_the_same_request() -> None:
    """mix = "each" beside an idle connection: asyncio's steps on a slower request alone
    ("/slow", 100x the p50) are a series of their own, not short requests blocked."""
    results = copy.deepcopy(load("findings-idle-preconnect"))
    slow = [copy.deepcopy(step) for step in results["steps"] if step["backend"] == "asyncio"]
    for step in results["steps"]:
        step["route"] = "/"
    for step in slow:
        step["route"] = "/slow"
        step["p50_us"], step["p99_us"] = step["p50_us"] * 100, step["p99_us"] * 100
    results["steps"] += slow
    found = of_kind(findings(results), "head-of-line")
    assert "asyncio /slow" not in found
    assert list(found) == ["iterative /"]  # the same story as before, on the same request


@pytest.mark.parametrize("name", ["findings-hello", "findings-cpu-bound"], ids=["one-short-route", "one-slow-route"])
def test_no_head_of_line_without_slow_work_in_the_mix(name: str) -> None:
    assert of_kind(findings(load(name)), "head-of-line") == {}


# --- GIL ceiling --------------------------------------------------------------------------

def test_on_one_server_cpu_the_ceiling_is_one_cpus_not_the_gils() -> None:
    found = [item for item in findings(load("findings-cpu-bound")) if item["kind"] == "gil-ceiling"]
    assert len(found) == 1
    ceiling = found[0]
    assert ceiling["figures"]["backends"] == ["iterative", "threaded", "asyncio", "selectors-pool"]
    assert ceiling["text"].startswith("One-CPU ceiling on /cpu?ms=5: 4 of 4 backends stay at 205 to 233 req/s from 1 "
                                      "to 64 users, the server at 98% or more of a CPU (iterative, threaded, asyncio, "
                                      "selectors-pool); held there by the server's one CPU; ")
    assert "GIL" not in ceiling["text"] and set(ceiling["figures"]["held_by"].values()) == {ONE_CPU}
    assert "one CPU answers 219 req/s" in ceiling["text"] and ceiling["level"] is None


def on_cpus(results: dict[str, Any], cpus: list[int], backends: tuple[str, ...] | None = None,
            free_threaded: bool = False) -> dict[str, Any]:
    """A copy of the run as if its server had been given `cpus` (and run on a free-threaded
    build), keeping only `backends`."""
    run = copy.deepcopy(results)
    run["steps"] = [{**step, "server_cpus": cpus} for step in run["steps"]
                    if backends is None or step["backend"] in backends]
    for entry in run["backends"].values():
        entry["python"]["free_threaded"] = free_threaded
    return run


def test_threads_of_one_process_on_a_gil_build_given_two_cpus_are_held_by_the_gil() -> None:
    run = on_cpus(load("findings-cpu-bound"), [0, 1], ("threaded", "selectors-pool"))
    (ceiling,) = [item for item in findings(run) if item["kind"] == "gil-ceiling"]
    assert ceiling["text"].startswith("GIL ceiling on /cpu?ms=5: 2 of 2 backends stay at ")
    assert ("held there by the GIL (threads of one process on a GIL build), with 2 server CPUs; "
            in ceiling["text"])


def test_with_two_cpus_an_event_loop_is_held_by_its_one_thread_not_the_gil() -> None:
    (ceiling,) = [item for item in findings(on_cpus(load("findings-cpu-bound"), [0, 1])) if item["kind"] == "gil-ceiling"]
    assert ceiling["text"].startswith("Ceiling at one CPU's rate on /cpu?ms=5: 4 of 4 backends")
    assert ("held there by one thread answering every request for iterative and asyncio; the GIL (threads of one "
            "process on a GIL build) for threaded and selectors-pool; " in ceiling["text"])


def test_free_threaded_threads_are_not_held_by_a_gil_unless_it_came_back() -> None:
    run = on_cpus(load("findings-cpu-bound"), [0, 1], ("threaded", "selectors-pool"), free_threaded=True)
    (ceiling,) = [item for item in findings(run) if item["kind"] == "gil-ceiling"]
    assert ceiling["figures"]["held_by"] == {"threaded": UNEXPLAINED, "selectors-pool": UNEXPLAINED}
    assert ceiling["text"].startswith("Ceiling at one CPU's rate on ")
    assert "held there by neither the GIL nor one thread for threaded and selectors-pool; " in ceiling["text"]
    for step in run["steps"]:
        step["flags"].append(GIL_ON)
    (ceiling,) = [item for item in findings(run) if item["kind"] == "gil-ceiling"]
    assert ceiling["text"].startswith("GIL ceiling on ") and "gil-on: the GIL was on" in ceiling["text"]


@pytest.mark.parametrize(("label", "expected"), [
    ("threaded", "threaded"), ("threaded-pool4@3.13", "threaded"), ("selectors-pool-threads2", "selectors-pool"),
    ("selectors@3.13t", "selectors"), ("asyncio", "asyncio"), ("forking-prefork2@3.13", None),
    ("interpreters@3.13", None), ("uvicorn", None), ("cmd:python -m http.server", None),
])
def test_which_model_a_label_runs(label: str, expected: str | None) -> None:
    assert model(label) == expected


def test_a_backend_off_the_ceiling_is_not_named() -> None:
    """asyncio's goodput at 64 users doubled (as if it had a second CPU): no longer flat."""
    results = copy.deepcopy(load("findings-cpu-bound"))
    for step in steps_at(results, "asyncio", 64):
        step["good_rps"] *= 2 * (1 + CEILING_TOLERANCE)
    ceiling = [item for item in findings(results) if item["kind"] == "gil-ceiling"]
    assert ceiling[0]["figures"]["backends"] == ["iterative", "threaded", "selectors-pool"]


@pytest.mark.parametrize("name", ["findings-hello", "findings-mixed"], ids=["no-cpu-route", "mix-not-flat"])
def test_no_gil_ceiling(name: str) -> None:
    assert not [item for item in findings(load(name)) if item["kind"] == "gil-ceiling"]


# --- speedup and scaling: more server CPUs, each series against its own one-CPU figure ----

def parallel_steps(results: dict[str, Any], backend: str, route: str, cores: int) -> list[dict[str, Any]]:
    return [step for step in results["steps"]
            if (step["backend"], step["route"], step["cores"]) == (backend, route, cores)]


def test_speedup_is_each_series_against_its_own_one_cpu_goodput() -> None:
    results = load("findings-parallel")
    found = of_kind(findings(results), "speedup")
    assert list(found) == [f"{backend}@3.13 {route}" for backend in ("threaded", "forking-prefork2", "asyncio")
                           for route in ("/cpu?ms=5", "/cpu-shared?ms=5")]
    rows = {row.backend: row for row in summary_rows(results["steps"])}
    for name, item in found.items():
        one, two = rows[f"{name} (1 CPU)"].good_rps, rows[f"{name} (2 CPUs)"].good_rps
        figures = item["figures"]["by_cores"]["2"]
        assert item["figures"]["one_cpu_good_rps"] == one and figures["good_rps"] == two
        assert figures["speedup"] == round(two / one, 3) and figures["efficiency"] == round(two / one / 2, 3)
        assert figures["serial_fraction"] == round((one / two - 1 / 2) / (1 - 1 / 2), 3)
    assert found["forking-prefork2@3.13 /cpu?ms=5"]["text"] == (
        "forking-prefork2@3.13 /cpu?ms=5 at 8 users, against its 125 req/s on one CPU: 1.90x on 2 CPUs (237 req/s; "
        "efficiency 95%, serial fraction 0.05 by Karp–Flatt) (shared-cpu: the driver took up to 1.0% of the "
        "server's CPUs; high-spread: repetitions over 10% apart)")
    # 0.89x: more than ONE_CPU_TOLERANCE below one CPU's rate, so the sentence calls it a loss
    assert found["threaded@3.13 /cpu?ms=5"]["text"].startswith(
        "threaded@3.13 /cpu?ms=5 at 8 users, against its 130 req/s on one CPU: 0.89x on 2 CPUs (116 req/s; "
        "efficiency 45%, serial fraction 1.24 by Karp–Flatt: over 1, the added CPUs cost throughput)")
    assert "over 1," not in found["asyncio@3.13 /cpu-shared?ms=5"]["text"]  # 0.99x: within the spread


@pytest.mark.parametrize(("speedup", "cores", "serial"), [
    (2.0, 2, 0.0), (1.0, 2, 1.0), (1.9, 2, 1 / 19), (0.8, 2, 1.5), (4.0, 4, 0.0), (1.0, 4, 1.0), (2.0, 4, 1 / 3),
], ids=["linear", "one CPU's rate", "1.9x", "slower", "linear on 4", "flat on 4", "half on 4"])
def test_karp_flatt_serial_fraction(speedup: float, cores: int, serial: float) -> None:
    assert karp_flatt(speedup, cores) == pytest.approx(serial)


@pytest.mark.parametrize(("speedup", "cores", "expected"), [
    (2 * SCALES_EFFICIENCY, 2, "scale"), (2 * SCALES_EFFICIENCY - 0.01, 2, "partly"),
    (1 + ONE_CPU_TOLERANCE, 2, "stay"), (1 + ONE_CPU_TOLERANCE + 0.01, 2, "partly"), (0.7, 2, "stay"),
    (3.0, 4, "scale"), (2.9, 4, "partly"),
], ids=["at the efficiency", "just under it", "at one CPU's rate plus 10%", "just over it", "slower",
        "3x on 4", "2.9x on 4"])
def test_what_scales_and_what_stays(speedup: float, cores: int, expected: str) -> None:
    assert verdict(speedup, cores) == expected


def test_scaling_says_per_request_which_models_scale_and_which_stay() -> None:
    found = of_kind(findings(load("findings-parallel")), "scaling")
    cpu = found["threaded@3.13 /cpu?ms=5, forking-prefork2@3.13 /cpu?ms=5, asyncio@3.13 /cpu?ms=5"]
    assert cpu["text"] == (
        "With 2 server CPUs on /cpu?ms=5 at 8 users, against each one's own one-CPU goodput: forking-prefork2@3.13 "
        "(1.90x) scales; asyncio@3.13 (1.04x) and threaded@3.13 (0.89x) stay at one CPU's rate (shared-cpu for all: "
        "the driver took up to 1.2% of the server's CPUs; high-spread for all: repetitions over 10% apart)")
    assert (cpu["figures"]["scale"], cpu["figures"]["partly"]) == (["forking-prefork2@3.13 /cpu?ms=5"], [])
    shared = found["threaded@3.13 /cpu-shared?ms=5, forking-prefork2@3.13 /cpu-shared?ms=5, "
                   "asyncio@3.13 /cpu-shared?ms=5"]
    assert shared["figures"]["route"] == "/cpu-shared?ms=5" and "forking-prefork2@3.13 (1.66x) scales" in shared["text"]


def test_a_speedup_measured_with_starved_users_says_so() -> None:
    """As if 6 of 8 keep-alive users had waited on forking-prefork2's two workers at 2 CPUs."""
    results = copy.deepcopy(load("findings-parallel"))
    for step in parallel_steps(results, "forking-prefork2@3.13", "/cpu?ms=5", 2):
        step["starved_users"] = 6
    found = findings(results)
    starved = "measured with starved users: 6 of 8 in forking-prefork2@3.13 /cpu?ms=5 on 2 CPUs"
    speedup = of_kind(found, "speedup")["forking-prefork2@3.13 /cpu?ms=5"]
    assert starved in speedup["caveat"] and f"{starved})" in speedup["text"]
    scaling = [item for item in of_kind(found, "scaling").values() if item["figures"]["route"] == "/cpu?ms=5"]
    assert starved in scaling[0]["caveat"] and starved in scaling[0]["text"]
    assert "starved" not in of_kind(found, "speedup")["asyncio@3.13 /cpu?ms=5"]["text"]


@pytest.mark.parametrize(("change", "said"), [
    (lambda step: step["flags"].append(GIL_ON), "gil-on: the GIL was on in a free-threaded build"),
    (lambda step: step["driver"].update(share_of_server_percent=7.5),
     "shared-cpu: the driver took up to 7.5% of the server's CPUs: figures may be low"),
    (lambda step: step["flags"].append(NOISY), "noisy: steal"),
    (lambda step: step["flags"].append(DRIVER_BOUND), "driver-bound: a floor"),
], ids=["gil-on", "the driver's share over 5%", "noisy", "driver-bound"])
def test_a_speedup_from_flagged_steps_says_so(change, said: str) -> None:
    results = copy.deepcopy(load("findings-parallel"))
    for step in parallel_steps(results, "threaded@3.13", "/cpu?ms=5", 2):
        change(step)
    found = of_kind(findings(results), "speedup")
    assert said in found["threaded@3.13 /cpu?ms=5"]["caveat"] and said in found["threaded@3.13 /cpu?ms=5"]["text"]
    assert said not in found["asyncio@3.13 /cpu?ms=5"]["text"]


@pytest.mark.parametrize("name", ["findings-hello", "findings-cpu-bound"], ids=["no sweep", "one CPU only"])
def test_no_speedup_without_a_sweep_of_server_cpus(name: str) -> None:
    found = findings(load(name))
    assert of_kind(found, "speedup") == of_kind(found, "scaling") == {}


def test_no_speedup_without_a_one_cpu_point() -> None:
    results = copy.deepcopy(load("findings-parallel"))
    results["steps"] = [step for step in results["steps"] if step["cores"] != 1]
    assert of_kind(findings(results), "speedup") == {}


# --- the single-core cost of a free-threaded build ------------------------------------------

def with_free_threaded_twin(results: dict[str, Any], *, ratio: float, version: str | None = None) -> dict[str, Any]:
    """The run plus threaded@3.13t: threaded@3.13's steps at `ratio` times its goodput and 1/ratio
    its CPU per request, on a free-threaded build of the same version (or `version`)."""
    run = copy.deepcopy(results)
    twin = []
    for step in run["steps"]:
        if step["backend"] == "threaded@3.13":
            twin.append({**copy.deepcopy(step), "backend": "threaded@3.13t", "good_rps": step["good_rps"] * ratio,
                         "server": {**step["server"], "cpu_us_per_request": step["server"]["cpu_us_per_request"] / ratio}})
    run["steps"] += twin
    python = {**run["backends"]["threaded@3.13"]["python"], "free_threaded": True, "label": "3.13t"}
    run["backends"]["threaded@3.13t"] = {**run["backends"]["threaded@3.13"],
                                         "python": {**python, "version": version or python["version"]}}
    return run


def test_the_free_threaded_builds_cost_on_one_cpu_is_its_own_finding() -> None:
    run = with_free_threaded_twin(load("findings-parallel"), ratio=0.8)
    found = [item for item in findings(run) if item["kind"] == "free-threading-cost"]
    assert [item["figures"]["route"] for item in found] == ["/cpu?ms=5", "/cpu-shared?ms=5"]
    cpu = found[0]
    assert cpu["text"] == (
        "On one server CPU on /cpu?ms=5 at 8 users, the free-threaded build of 3.13.0 against its GIL build: "
        "threaded -20% (104 req/s against 130; 9,571 against 7,657 µs of CPU per request) (high-spread: "
        "repetitions over 10% apart)")
    assert cpu["figures"]["by_backend"]["threaded"]["ratio"] == 0.8
    assert cpu["backend"] == "threaded@3.13t /cpu?ms=5 (1 CPU)"
    # not mixed into the speedup: the free-threaded series is measured against its own one-CPU figure
    speedup = of_kind(findings(run), "speedup")
    assert speedup["threaded@3.13t /cpu?ms=5"]["figures"]["by_cores"]["2"]["speedup"] == \
        speedup["threaded@3.13 /cpu?ms=5"]["figures"]["by_cores"]["2"]["speedup"]


def test_no_free_threading_cost_across_versions_or_without_both_builds() -> None:
    assert free_threading_cost(RunView.of(Run.of(with_free_threaded_twin(load("findings-parallel"), ratio=0.8,
                                                                         version="3.13.5")))) == []
    assert free_threading_cost(RunView.of(Run.of(load("findings-parallel")))) == []


# --- driver-bound and noisy ---------------------------------------------------------------

def test_driver_bound_levels_are_floors() -> None:
    found = findings(load("findings-hello"))
    bound = of_kind(found, "driver-bound")
    assert list(bound) == ["selectors"]
    assert bound["selectors"]["text"] == ("selectors at 128 users is driver-bound (the driver's busiest CPU at up to "
                                          "92.7%): its 104,178 req/s is a floor, not the server's capacity")
    assert bound["selectors"]["caveat"] == "driver-bound: a floor"
    fit = of_kind(found, "scalability")["selectors"]  # fitted through the 128-user level
    assert fit["caveat"].startswith("driver-bound: a floor") and f"({fit['caveat']})" in fit["text"]
    assert of_kind(findings(load("findings-mixed")), "driver-bound") == {}


def test_noisy_levels_and_the_findings_drawn_from_them() -> None:
    """asyncio at 32 users as a busy host would record it: 7.2% steal, flagged noisy."""
    results = copy.deepcopy(load("findings-hello"))
    for step in steps_at(results, "asyncio", 32):
        step["server"]["steal_percent"] = 7.2
        step["flags"].append(NOISY)
    found = findings(results)
    noisy = of_kind(found, "noisy")
    assert list(noisy) == ["asyncio"]
    assert noisy["asyncio"]["text"].startswith("asyncio at 32 users is noisy (CPU steal up to 7.2%)")
    knee = of_kind(found, "saturation")["threaded, selectors, asyncio"]  # asyncio's 8 users to 32: the noisy level
    assert knee["caveat"] == ("noisy for asyncio: steal 7.2%; high-spread for asyncio: repetitions over 10% apart")
    assert f"({knee['caveat']})" in knee["text"]
    assert of_kind(findings(load("findings-hello")), "noisy") == {}


def test_a_finding_from_contended_levels_says_so() -> None:
    """asyncio at 32 users as a machine busy with other processes would record it: 12.5% of the
    server's CPUs used by others, flagged contended (not noisy: no steal)."""
    results = copy.deepcopy(load("findings-hello"))
    for step in steps_at(results, "asyncio", 32):
        step["server"]["others_percent"] = 12.5
        step["flags"].append(CONTENDED)
    found = findings(results)
    knee = of_kind(found, "saturation")["threaded, selectors, asyncio"]
    assert knee["caveat"] == ("contended for asyncio: other processes took up to 12.5% of the server's CPUs; "
                              "high-spread for asyncio: repetitions over 10% apart")
    assert f"({knee['caveat']})" in knee["text"]
    assert of_kind(found, "noisy") == {}


# --- scalability --------------------------------------------------------------------------

def test_scalability_fits_each_backend() -> None:
    hello = of_kind(findings(load("findings-hello")), "scalability")
    assert list(hello) == ["iterative", "threaded", "selectors", "asyncio"]
    assert hello["threaded"]["text"].startswith("threaded fits the USL with contention σ=0.22")
    assert hello["threaded"]["figures"]["ok"] is True and hello["threaded"]["figures"]["peak_users"] > 8


def fed(results: dict) -> dict:
    """A copy in which no user starved: every closed-loop level is then fitted."""
    fed = copy.deepcopy(results)
    for step in fed["steps"]:
        step["starved_users"] = 0
    return fed


def test_levels_where_users_starved_are_left_out_of_the_fit_and_the_sentence_says_so() -> None:
    """cpu-bound: threaded starves at 64 users, leaving 3 of its 4 levels; hello: iterative
    from 8 users on, leaving 1; and, in a copy starved at 1 user too, none."""
    cpu = of_kind(findings(load("findings-cpu-bound")), "scalability")
    assert cpu["threaded"]["text"] == ("no USL fit for threaded: 3 user levels, and the fit has 3 parameters "
                                       "(needs at least 4); 64 users left out: users starved there")
    assert cpu["threaded"]["figures"]["left_out_starved_users"] == [64]
    hello = load("findings-hello")
    assert of_kind(findings(hello), "scalability")["iterative"]["text"] == (
        "no USL fit for iterative: 1 user level, and the fit has 3 parameters (needs at least 4); 8, 32 and 128 "
        "users left out: users starved there")
    for step in steps_at(hello, "iterative", 1):
        step["starved_users"] = 1
    assert of_kind(findings(hello), "scalability")["iterative"]["text"] == (
        "no USL fit for iterative: users starved at every level, so none measured X(N)")


def test_no_usl_fit_for_any_backend_is_one_finding() -> None:
    """hello with every backend starved at 32 and 128 users (and none below): each fit has 2
    levels left, one reason for all."""
    results = load("findings-hello")
    for step in results["steps"]:
        step["starved_users"] = 1 if step["users"] >= 32 else 0
    found = of_kind(findings(results), "scalability")
    assert list(found) == ["iterative, threaded, selectors, asyncio"]
    skipped = found["iterative, threaded, selectors, asyncio"]
    assert skipped["text"] == ("no USL fit for any backend: 2 user levels, and the fit has 3 parameters (needs at "
                               "least 4); left out where users starved: iterative at 32 and 128, threaded at 32 and "
                               "128, selectors at 32 and 128 and asyncio at 32 and 128 users")
    assert skipped["figures"]["backends"] == ["iterative", "threaded", "selectors", "asyncio"]
    assert skipped["figures"]["by_backend"]["asyncio"]["ok"] is False


def test_a_sweep_shorter_than_the_fit_is_a_note_not_a_finding() -> None:
    """mixed sweeps 3 user levels: the law's 3 parameters go through any 3 points, so no run
    of that shape can tell whether it holds. Its stored findings (told before this rule) lose
    that sentence too; a fit skipped on a longer sweep stays."""
    mixed = load("findings-mixed")
    assert of_kind(findings(mixed), "scalability") == {} == of_kind(findings(fed(mixed)), "scalability")
    assert shape_notes(Run.of(mixed)) == [
        "No Universal Scalability Law fit: this run swept 3 user levels (8, 32 and 128), and the fit has 3 "
        "parameters, so it needs at least 4 levels."]
    told = {"kind": "scalability", "backend": "selectors, asyncio", "level": None, "caveat": None,
            "text": "no USL fit for selectors and asyncio: 3 user levels, and the fit has 3 parameters (needs at least 4)",
            "figures": {"ok": False, "backends": ["selectors", "asyncio"]}}
    saturation = next(item for item in findings(mixed) if item["kind"] == "saturation")
    assert [item.text for item in stored_findings(Run.of({**mixed, "findings": [saturation, told]}))] == [
        saturation["text"]]
    hello = load("findings-hello")
    kept = of_kind(findings(hello), "scalability")["iterative"]
    assert stored_findings(Run.of({**hello, "findings": [kept]}))[0].text == kept["text"]
    assert shape_notes(Run.of(hello)) == []


# --- the verdict: the few findings atop the report -------------------------------------------

def told(name: str) -> list[tuple[str, str]]:
    """(kind, backend) of each finding in the verdict of a fixture run."""
    return [(item.kind, item.backend) for item in verdict_findings(stored_findings(Run.of(load(name))))]


@pytest.mark.parametrize("name, expected", [
    # one of each kind before a second of any; shown kind by kind, the decisive kinds first
    ("findings-mixed", [("starvation", "iterative"), ("starvation", "threaded"), ("head-of-line", "threaded"),
                        ("saturation", "iterative, threaded, forking, asyncio")]),
    # driver-bound is a caveat, not a verdict; a USL fit that was not made (iterative's) is none either
    ("findings-hello", [("starvation", "iterative"), ("saturation", "threaded, selectors, asyncio"),
                        ("scalability", "threaded"), ("scalability", "selectors")]),
    ("findings-c10k", [("starvation", "iterative"), ("refusals", "threaded")]),
    # capacities by the rate they hold, the highest first
    ("capacity-tiny", [("capacity", "selectors /"), ("capacity", "selectors /sleep?ms=1"), ("capacity", "iterative /"),
                       ("capacity", "iterative /sleep?ms=1")]),
], ids=lambda value: value if isinstance(value, str) else "")
def test_the_verdict_is_the_decisive_few_ranked(name: str, expected: list[tuple[str, str]]) -> None:
    assert told(name) == expected and len(expected) <= VERDICT_SIZE


def test_poor_fits_are_one_finding_naming_each_r2() -> None:
    """Fed (no user starved), iterative and asyncio fit poorly on cpu-bound; threaded and
    selectors-pool fit, each told alone; with asyncio gone, iterative's poor fit is a sentence
    of its own."""
    results = fed(load("findings-cpu-bound"))
    found = of_kind(findings(results), "scalability")
    assert list(found) == ["iterative, asyncio", "threaded", "selectors-pool"]
    poor = found["iterative, asyncio"]
    assert poor["text"] == "no USL fit for iterative and asyncio: poor fit (R² 0.04 and 0.71 < 0.9)"
    assert [round(fit["r2"], 2) for fit in poor["figures"]["by_backend"].values()] == [0.04, 0.71]
    alone = copy.deepcopy(results)
    alone["steps"] = [step for step in alone["steps"] if step["backend"] != "asyncio"]
    iterative = of_kind(findings(alone), "scalability")["iterative"]
    assert iterative["text"] == "no USL fit for iterative: poor fit (R²=0.04 < 0.9)"
    assert iterative["figures"]["ok"] is False and iterative["figures"]["r2"] < 0.9


def test_a_poor_fit_from_flagged_levels_names_whom_the_caveat_concerns() -> None:
    """asyncio's cpu-bound levels as if the repetitions spread over 10%: its poor fit was
    drawn from them, iterative's was not."""
    results = fed(load("findings-cpu-bound"))
    for step in results["steps"]:
        if step["backend"] == "asyncio":
            step["flags"] = [*step["flags"], HIGH_SPREAD]
    skipped = of_kind(findings(results), "scalability")["iterative, asyncio"]
    assert skipped["caveat"] == "high-spread for asyncio: repetitions over 10% apart"
    assert skipped["text"].endswith("< 0.9) (high-spread for asyncio: repetitions over 10% apart)")


def test_no_scalability_without_a_closed_loop() -> None:
    assert of_kind(findings(load("findings-c10k")), "scalability") == {}


# --- where findings appear ----------------------------------------------------------------

def test_findings_text_prints_one_line_per_finding() -> None:
    results = load("findings-c10k")
    text = findings_text(results)
    lines = text.splitlines()
    assert lines[0] == "findings:" and len(lines) == 1 + len(findings(results))
    assert "  - threaded at 1,000/s offered + 1,000 idle: 100% of requests were refused" in text
    assert format_findings([]) == ""


def test_findings_text_tells_what_the_run_stored() -> None:
    results = copy.deepcopy(load("findings-c10k"))
    results["findings"] = [{"kind": "starvation", "backend": "x", "level": None, "text": "as the run said",
                            "figures": {}, "caveat": None}]
    assert findings_text(results) == "findings:\n  - as the run said"
    results["findings"] = []
    assert findings_text(results) == ""


def test_report_opens_with_the_findings() -> None:
    results = load("findings-mixed")
    page = render_report(Run.of(results), [])
    assert page.index("<h2>Findings</h2>") < page.index("<h2>Summary</h2>")
    assert "asyncio at 32 users: p50 97.66 ms, 35.2x the best backend&#x27;s (forking, 2.77 ms;" in page


def test_report_escapes_stored_findings_and_skips_an_empty_list() -> None:
    results = copy.deepcopy(load("findings-c10k"))
    results["findings"] = [{"kind": "refusals", "backend": "x", "level": None, "text": "<b>x</b> & 5xx",
                            "figures": {}, "caveat": None}]
    page = render_report(Run.of(results), [])
    assert "&lt;b&gt;x&lt;/b&gt; &amp; 5xx" in page and "<b>x</b>" not in page
    results["findings"] = []
    assert "<h2>Findings</h2>" not in render_report(Run.of(results), [])


def test_a_run_with_no_good_step_has_no_findings() -> None:
    results = copy.deepcopy(load("findings-hello"))
    for step in results["steps"]:
        step["status"] = "failed"
    assert findings(results) == [] and findings_text(results) == ""
    assert "<h2>Findings</h2>" not in render_report(Run.of(results), [])
