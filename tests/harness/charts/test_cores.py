"""The server cores chart: good req/s and p99 against the server's CPU count, per backend, at
the run's highest closed-loop user level; drawn only when a run sweeps two or more counts.

Fixture run-cores (tests/fixtures/make_fixture_runs.py) sweeps 1, 2 and 4 CPUs at 8 and 32
users; every expectation here is computed from its steps.
"""

from __future__ import annotations

import copy
import shutil
import struct
import xml.etree.ElementTree as ET
from pathlib import Path
from statistics import median
from typing import Any, Callable

import pytest

from harness.results.model import Run, steps_of
from harness.charts.sweep import median_p99
from harness.charts.cores import (chart_users, core_points, draw_cores, has_core_sweep,
                                  pinning_notes)
from harness.charts.report import CHART_CAPTIONS, write_report
from harness.results.store import read_results
from support import FIXTURES

RUNS = FIXTURES / "runs"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def run_cores() -> dict[str, Any]:
    return read_results(RUNS / "run-cores")


def top_level_steps(run: dict[str, Any]) -> dict[tuple[str, int], list[dict[str, Any]]]:
    """(backend, cores) -> the good closed-loop steps at the run's highest user level."""
    top = max(step["users"] for step in run["steps"] if step.get("rate") is None)
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for step in run["steps"]:
        if step["status"] == "ok" and step["users"] == top and step.get("rate") is None:
            groups.setdefault((step["backend"], step["cores"]), []).append(step)
    return groups


def test_the_chart_shows_the_highest_closed_loop_user_level(run_cores: dict[str, Any]) -> None:
    users = {step["users"] for step in run_cores["steps"]}
    assert len(users) > 1 and chart_users(Run.of(run_cores)) == max(users)


def test_points_are_the_medians_over_repetitions(run_cores: dict[str, Any]) -> None:
    groups = top_level_steps(run_cores)
    points = core_points(Run.of(run_cores))
    assert {(backend, p.cores) for backend, line in points.items() for p in line} == set(groups)
    for backend, line in points.items():
        assert [p.cores for p in line] == sorted(p.cores for p in line)
        for point in line:
            reps = groups[backend, point.cores]
            assert len(reps) > 1
            assert point.good_rps == pytest.approx(median(rep["good_rps"] for rep in reps))
            assert point.p99_us == pytest.approx(median(rep["p99_us"] for rep in reps))
    # goodput, not throughput: somewhere the two differ, so a chart of req/s would fail above
    assert any(median(r["good_rps"] for r in reps) != median(r["rps"] for r in reps) for reps in groups.values())


def test_driver_bound_and_lower_bound_points_are_marked(run_cores: dict[str, Any]) -> None:
    groups = top_level_steps(run_cores)
    driver_bound = {key for key, reps in groups.items() if any("driver-bound" in rep["flags"] for rep in reps)}
    censored = {key for key, reps in groups.items()
                if all(rep["censored"] and rep["p99_us"] >= rep["censored_min_us"] for rep in reps)}
    assert driver_bound and censored  # the fixture has both, so these checks can fail
    points = core_points(Run.of(run_cores))
    assert {(b, p.cores) for b, line in points.items() for p in line if p.driver_bound} == driver_bound
    assert {(b, p.cores) for b, line in points.items() for p in line if p.p99_lower_bound} == censored


def rep(p99: int, censored_min: int | None = None) -> dict[str, Any]:
    return {"p99_us": p99, "censored": 0 if censored_min is None else 5, "censored_min_us": censored_min}


@pytest.mark.parametrize("reps, expected", [
    ([rep(1), rep(2), rep(3)], (2, False)),
    ([rep(1), rep(2, 2), rep(3)], (2, True)),
    ([rep(1), rep(2), rep(3, 3)], (2, False)),  # only a value above the median could be higher
    ([rep(1, 1), rep(2), rep(3)], (2, True)),  # the lowest could really be above the median
    ([rep(1), rep(3, 3)], (2, True)),  # even: the upper middle lifts the mean of the two
    ([{"p99_us": None}, rep(4)], (4, False)),  # a window with no answer has no p99
    ([{"p99_us": None}], (None, False)),
], ids=["no bound", "bound at the median", "bound above it", "bound below it", "even count",
        "a missing p99", "no p99 at all"])
def test_median_p99_and_whether_it_is_a_lower_bound(reps: list[dict[str, Any]], expected: tuple) -> None:
    assert median_p99(steps_of([{"backend": "threaded", "users": 8, **rep} for rep in reps])) == expected


def test_a_server_pinned_to_fewer_cpus_than_asked_is_noted(run_cores: dict[str, Any]) -> None:
    assert pinning_notes(core_points(Run.of(run_cores))) == []
    run = copy.deepcopy(run_cores)
    for step in run["steps"]:
        if step["backend"] == "forking" and step["cores"] == 4:
            step["server_cpus"] = [0, 1]
    assert pinning_notes(core_points(Run.of(run))) == ["forking at 4 cores: pinned to 2 CPUs"]


def test_the_chart_is_a_png_and_an_svg(run_cores: dict[str, Any], tmp_path: Path) -> None:
    png, svg = draw_cores(Run.of(run_cores), tmp_path)
    assert (png.name, svg.name) == ("server_cores.png", "server_cores.svg")
    head = png.read_bytes()[:24]
    assert head[:8] == PNG_SIGNATURE and head[12:16] == b"IHDR"
    width, height = struct.unpack(">II", head[16:24])
    assert 600 <= width <= 1000 and 400 <= height <= 900
    assert ET.parse(svg).getroot().tag == "{http://www.w3.org/2000/svg}svg"
    text = svg.read_text(encoding="utf-8")
    for words in ("server cores", f"at {chart_users(Run.of(run_cores))} users", "driver-bound", "lower bound"):
        assert words in text


def single_count(run: dict[str, Any]) -> dict[str, Any]:
    return {**run, "steps": [{**step, "cores": 2} for step in run["steps"]]}


def open_loop_only(run: dict[str, Any]) -> dict[str, Any]:
    return {**run, "steps": [{**step, "rate": 1000.0} for step in run["steps"]]}


def no_cores_recorded(run: dict[str, Any]) -> dict[str, Any]:
    return {**run, "steps": [{**step, "cores": None} for step in run["steps"]]}


@pytest.mark.parametrize("make", [single_count, open_loop_only, no_cores_recorded],
                         ids=["one core count", "open loop only", "cores null"])
def test_no_chart_without_a_closed_loop_sweep(run_cores: dict[str, Any], tmp_path: Path,
                                              make: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
    run = make(run_cores)
    assert not has_core_sweep(Run.of(run)) and draw_cores(Run.of(run), tmp_path) == [] and not list(tmp_path.iterdir())


def test_no_chart_for_a_run_from_before_the_sweep(tmp_path: Path) -> None:
    run = read_results(RUNS / "run-a")
    assert not any("cores" in step for step in run["steps"])
    assert draw_cores(Run.of(run), tmp_path) == [] and not list(tmp_path.iterdir())


def test_the_report_shows_the_chart_with_its_caption(tmp_path: Path) -> None:
    run_dir = tmp_path / "run-cores"
    shutil.copytree(RUNS / "run-cores", run_dir)
    page = write_report(run_dir).read_text(encoding="utf-8")
    assert (run_dir / "charts" / "server_cores.png").exists()
    assert 'alt="server_cores"' in page and CHART_CAPTIONS["server_cores"] in page
    assert "single event loop should not" in CHART_CAPTIONS["server_cores"]


# --- a sweep of each request alone, on the driver's CPU too (fixture findings-parallel) --------

from harness.charts.cores import ideal, route_style, shared_notes  # noqa: E402
from harness.charts.style import BACKEND_COLOURS, distinct_colours  # noqa: E402


@pytest.fixture(scope="module")
def run_parallel() -> dict[str, Any]:
    return read_results(RUNS / "findings-parallel")


def test_each_request_of_a_backend_is_a_line_of_its_own(run_parallel: dict[str, Any]) -> None:
    points = core_points(Run.of(run_parallel))
    assert list(points) == [f"{backend}@3.13 {route}" for backend in ("threaded", "forking-prefork2", "asyncio")
                            for route in ("/cpu?ms=5", "/cpu-shared?ms=5")]
    for name, line in points.items():
        reps = {cores: [step for step in run_parallel["steps"] if f"{step['backend']} {step['route']}" == name
                        and step["cores"] == cores] for cores in (1, 2)}
        assert [p.cores for p in line] == [1, 2] and {p.route for p in line} == {name.split(" ")[1]}
        assert [p.good_rps for p in line] == [pytest.approx(median(s["good_rps"] for s in reps[c])) for c in (1, 2)]
    styles = {route_style(points, line) for line in points.values()}
    assert len(styles) == 2  # one marker and line style per request


def test_the_ideal_is_linear_from_the_one_core_point(run_parallel: dict[str, Any]) -> None:
    for line in core_points(Run.of(run_parallel)).values():
        one = line[0].good_rps
        assert ideal(line) == [(1, one), (2, 2 * one)]
    without_one = [point for point in next(iter(core_points(Run.of(run_parallel)).values())) if point.cores != 1]
    assert ideal(without_one) == []


def test_the_counts_that_shared_the_drivers_cpu_are_noted_with_its_share(run_parallel: dict[str, Any]) -> None:
    shares = [step["driver"]["share_of_server_percent"] for step in run_parallel["steps"]
              if "shared-cpu" in step["flags"] and step["users"] == chart_users(Run.of(run_parallel))]
    assert shares and all(step["cores"] == 2 for step in run_parallel["steps"] if "shared-cpu" in step["flags"])
    assert shared_notes(core_points(Run.of(run_parallel))) == [
        f"2 cores: shared the driver's CPU (driver up to {max(shares):.1f}% of the server's CPUs)"]
    run = copy.deepcopy(run_parallel)
    for step in run["steps"]:
        if "shared-cpu" in step["flags"]:
            step["driver"]["share_of_server_percent"] = 6.0
    assert shared_notes(core_points(Run.of(run))) == [
        "2 cores: shared the driver's CPU (driver up to 6.0% of the server's CPUs: figures may be low)"]


def test_the_parallel_chart_draws_the_ideal_and_the_note(run_parallel: dict[str, Any], tmp_path: Path) -> None:
    png, svg = draw_cores(Run.of(run_parallel), tmp_path)
    text = svg.read_text(encoding="utf-8")
    for words in ("ideal: linear from its one-core point", "threaded@3.13 /cpu-shared?ms=5", "2 cores: shared the driver"):
        assert words in text


@pytest.mark.parametrize(("backends", "expected"), [
    (["threaded@3.13", "threaded@3.13t"], [BACKEND_COLOURS["threaded"], None]),
    (["forking-prefork2@3.13", "asyncio@3.13"], [None, BACKEND_COLOURS["asyncio"]]),
    (["asyncio", "asyncio@3.13"], [BACKEND_COLOURS["asyncio"], None]),
], ids=["two interpreters of one model", "a variant and a model", "own then labelled"])
def test_every_backend_of_a_chart_has_a_colour_of_its_own(backends: list[str], expected: list) -> None:
    colours = distinct_colours(backends)
    assert len(set(colours.values())) == len(backends)
    for backend, colour in zip(backends, expected):
        if colour is not None:
            assert colours[backend] == colour
