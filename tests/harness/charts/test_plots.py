"""Charts drawn from a stored run: every chart writes a sane PNG and a parseable SVG, and
keeps the conventions (titles, one colour per backend, failed backends noted, stalls seen).

The fixture runs come from tests/fixtures/make_fixture_runs.py; charts are drawn once per
module, since drawing is what takes the time.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Callable

import matplotlib
import pytest

from harness.results.model import Run, steps_of
from harness.charts import levels as chart_levels, runs as plots
from harness.charts.style import BACKEND_COLOURS, backend_colour, backend_label, short_cpu_model
from harness.results.metrics import merge_histograms
from harness.results.store import read_results
from support import FIXTURES, ROOT

RUNS = FIXTURES / "runs"
ROOT = ROOT
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

CHARTS: dict[str, Callable[..., list[Path]]] = {
    "throughput_vs_users": plots.throughput_vs_users,
    "latency_vs_users": plots.latency_vs_users,
    "latency_spectrum": plots.latency_spectrum,
    "timeseries": plots.timeseries,
    "resources": plots.resources,
    "errors": plots.errors,
}


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from the IHDR chunk, after checking the PNG signature."""
    head = path.read_bytes()[:24]
    assert head[:8] == PNG_SIGNATURE, f"{path.name} is not a PNG"
    assert head[12:16] == b"IHDR"
    return struct.unpack(">II", head[16:24])


def svg_text(path: Path) -> str:
    """The SVG's text, after checking that it parses and its root is <svg>."""
    root = ET.parse(path).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg", root.tag
    return path.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def run_a() -> dict[str, Any]:
    return read_results(RUNS / "run-a")


@pytest.fixture(scope="module")
def run_b() -> dict[str, Any]:
    return read_results(RUNS / "run-b")


@pytest.fixture(scope="module")
def drawn(run_a: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    out = tmp_path_factory.mktemp("charts")
    return {name: draw(Run.of(run_a), out) for name, draw in CHARTS.items()}


@pytest.mark.parametrize("name", CHARTS)
def test_chart_writes_a_png_and_an_svg_of_each_figure(drawn: dict[str, list[Path]], name: str) -> None:
    paths = drawn[name]
    pngs = [p for p in paths if p.suffix == ".png"]
    assert pngs and sorted(p.with_suffix(".svg") for p in pngs) == sorted(p for p in paths if p.suffix == ".svg")
    for png in pngs:
        width, height = png_size(png)
        assert 400 <= width <= 2000 and 200 <= height <= 2000, (png.name, width, height)
        svg_text(png.with_suffix(".svg"))


def test_charts_are_about_800_px_wide(drawn: dict[str, list[Path]]) -> None:
    assert {png_size(p)[0] for paths in drawn.values() for p in paths if p.suffix == ".png"} == {800}


def test_timeseries_draws_one_figure_per_load_level(drawn: dict[str, list[Path]]) -> None:
    assert [p.stem for p in drawn["timeseries"] if p.suffix == ".png"] == [
        "timeseries_u1", "timeseries_u8", "timeseries_u32"]


@pytest.mark.parametrize("name", CHARTS)
def test_title_names_scenario_machine_and_pinning(drawn: dict[str, list[Path]], name: str) -> None:
    text = svg_text(drawn[name][1])
    for expected in ("hello", "bench-1", "Intel Xeon Platinum 8375C", "server CPU 0, driver CPU 1"):
        assert expected in text, expected


@pytest.mark.parametrize("name", ["throughput_vs_users", "latency_vs_users", "latency_spectrum"])
def test_every_backend_keeps_its_colour(drawn: dict[str, list[Path]], run_a: dict[str, Any], name: str) -> None:
    text = svg_text(drawn[name][1])
    present = {step["backend"] for step in run_a["steps"]}
    assert len(present) >= 5
    for backend in present:
        colour = BACKEND_COLOURS[backend]
        assert colour in text, f"{backend}'s {colour} missing from {name}"


def test_driver_bound_point_is_labelled(drawn: dict[str, list[Path]]) -> None:
    assert svg_text(drawn["throughput_vs_users"][1]).count("driver-bound") >= 2  # point + legend


def test_stall_is_marked_in_the_timeseries(drawn: dict[str, list[Path]], run_a: dict[str, Any]) -> None:
    iterative = next(s for s in run_a["steps"] if s["backend"] == "iterative" and s["users"] == 32)
    assert 0 in [second["requests"] for second in iterative["timeseries"]]
    svgs = {p.stem: p for p in drawn["timeseries"] if p.suffix == ".svg"}
    assert "stall" in svg_text(svgs["timeseries_u32"])
    assert "stall" not in svg_text(svgs["timeseries_u1"])  # one user: nothing to wait behind


def test_a_title_at_one_user_says_1_user(drawn: dict[str, list[Path]], tmp_path: Path, run_a: dict[str, Any]) -> None:
    svgs = {p.stem: p for p in drawn["timeseries"] if p.suffix == ".svg"}
    assert "per second at 1 user" in svg_text(svgs["timeseries_u1"])
    spectrum = plots.latency_spectrum(Run.of(run_a), tmp_path, users=1)[1]
    assert "at 1 user" in svg_text(spectrum)
    assert not any("1 users" in svg_text(path) for paths in drawn.values() for path in paths if path.suffix == ".svg")


def test_spectrum_axis_is_in_nines(drawn: dict[str, list[Path]]) -> None:
    text = svg_text(drawn["latency_spectrum"][1])
    for label in ("0%", "90%", "99%", "99.9%", "99.99%", "at 32 users"):
        assert label in text


def test_spectrum_matches_the_merged_histogram(run_a: dict[str, Any]) -> None:
    encoded = [s["histogram"] for s in run_a["steps"] if s["backend"] == "iterative" and s["users"] == 32]
    xs, ys = plots.percentile_spectrum(encoded)
    assert xs[0] == 1 and xs[-1] == pytest.approx(10_000)
    assert ys == sorted(ys)
    histogram = merge_histograms(encoded)
    for quantile in (0.9, 0.99, 0.999):
        index = min(range(len(xs)), key=lambda i: abs(xs[i] - 1 / (1 - quantile)))
        assert ys[index] * 1000 == histogram.get_value_at_percentile(quantile * 100)


def test_spectrum_at_a_chosen_load_level(run_a: dict[str, Any], tmp_path: Path) -> None:
    paths = plots.latency_spectrum(Run.of(run_a), tmp_path, users=8)
    assert "at 8 users" in svg_text(paths[1])


def test_failed_backend_is_omitted_and_noted(run_b: dict[str, Any], tmp_path: Path) -> None:
    assert "forking" not in chart_levels.summarize_steps(Run.of(run_b))
    assert "did not come up" in chart_levels.failed_backends(Run.of(run_b))["forking"]
    text = svg_text(plots.throughput_vs_users(Run.of(run_b), tmp_path)[1])
    assert "failed, not drawn: forking" in text
    assert BACKEND_COLOURS["forking"] not in text


def test_summary_flags_driver_bound_and_high_spread(run_a: dict[str, Any]) -> None:
    summaries = chart_levels.summarize_steps(Run.of(run_a))
    flagged = {(b, u): (s.driver_bound, s.high_spread) for b, by in summaries.items() for u, s in by.items()
               if s.driver_bound or s.high_spread}
    assert flagged == {("selectors", 32): (True, False), ("threaded", 32): (False, True)}


OTHER_BACKENDS = ("cmd:uvicorn --port {port} app:app", "cmd:gunicorn -w 4", "weird")


def test_other_backends_get_a_colour_stable_across_processes() -> None:
    colours = [backend_colour(name) for name in OTHER_BACKENDS]
    assert not set(colours) & set(BACKEND_COLOURS.values())
    child = subprocess.run(  # str hashes are salted per process; the colour must not be
        [sys.executable, "-c", "from harness.charts.style import backend_colour; "
         f"print(*map(backend_colour, {OTHER_BACKENDS!r}))"],
        cwd=ROOT, env={**os.environ, "PYTHONHASHSEED": "12345"}, capture_output=True, text=True, check=True)
    assert child.stdout.split() == colours


@pytest.mark.parametrize("model, short", [
    ("Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz", "Intel Xeon Platinum 8375C"),
    ("AMD EPYC 7R13 Processor", "AMD EPYC 7R13"),
    ("AMD Ryzen 9 5950X 16-Core Processor", "AMD Ryzen 9 5950X"),
    (None, "unknown CPU"),
], ids=["intel", "epyc", "ryzen", "unknown"])
def test_short_cpu_model(model: str | None, short: str) -> None:
    assert short_cpu_model(model) == short


def test_drawing_leaves_global_matplotlib_settings_alone(drawn: dict[str, list[Path]]) -> None:
    assert matplotlib.rcParams["svg.fonttype"] == matplotlib.rcParamsDefault["svg.fonttype"]


def test_charts_of_an_empty_run_still_draw(run_a: dict[str, Any], tmp_path: Path) -> None:
    empty = {**run_a, "steps": [], "backends": {}}
    for draw in (plots.throughput_vs_users, plots.errors, plots.latency_spectrum):
        png_size(draw(Run.of(empty), tmp_path)[0])


def test_a_step_with_no_completed_request_is_drawn_as_zero(run_a: dict[str, Any], tmp_path: Path) -> None:
    stalled = [{**s, "requests": 0, "rps": 0.0, "p50_us": None, "p99_us": None, "histogram": None}
               if s["backend"] == "iterative" and s["users"] == 32 else s for s in run_a["steps"]]
    summary = chart_levels.summarize_steps(Run.of({**run_a, "steps": stalled}))["iterative"][32]
    assert summary.rps.median == 0 and summary.p99_us is None
    png_size(plots.latency_vs_users(Run.of({**run_a, "steps": stalled}), tmp_path)[0])


def test_an_external_backend_is_drawn_in_its_own_colour(run_a: dict[str, Any], tmp_path: Path) -> None:
    name = "cmd:uvicorn --port {port} --workers 1 app:app"
    steps = [{**s, "backend": name} if s["backend"] == "asyncio" else s for s in run_a["steps"]]
    text = svg_text(plots.throughput_vs_users(Run.of({**run_a, "steps": steps}), tmp_path)[1])
    assert backend_colour(name) in text and backend_label(name) in text and backend_label(name) != name
    assert BACKEND_COLOURS["asyncio"] not in text


def _idle_sweep(run: dict[str, Any]) -> dict[str, Any]:
    """run-a's steps at one user level, repeated at 0 and 5,000 idle connections, the second
    with threaded capped (most held connections refused) and memory up for every backend."""
    users = min(step["users"] for step in run["steps"])
    steps = []
    for idle in (0, 5000):
        for step in run["steps"]:
            if step["users"] != users or step.get("rate") is not None:
                continue
            copy = {**step, "idle_connections": idle, "server": dict(step["server"]),
                    "background": {"idle_connected": idle, "idle_reconnects": 0, "slow_requests": 0, "slow_reconnects": 0}}
            if idle:
                copy["server"]["rss_bytes"] += 50 * 2 ** 20
                if step["backend"] == "threaded":
                    copy["background"]["idle_connected"] = 500
                    copy["errors"] = {**step["errors"], "bad_status": step["requests"]}
            steps.append(copy)
    return {**run, "steps": steps}


def test_idle_sweep_draws_the_c10k_chart_and_keeps_users_charts_at_the_baseline(
        run_a: dict[str, Any], tmp_path: Path) -> None:
    from harness.charts.idle import failed_share, held_open, idle_levels

    sweep = _idle_sweep(run_a)
    levels = idle_levels(Run.of(sweep))
    assert levels and all(list(by_idle) == [0, 5000] for by_idle in levels.values())
    assert held_open(levels["threaded"][5000]) == 500 and failed_share(levels["threaded"][5000]) == 100  # all 503
    assert failed_share(levels["threaded"][0]) < 50
    # at an offered rate, a server that answers nothing (iterative behind an idle socket) fails it all
    stuck = {"backend": "iterative", "users": 8, "rate": 1000.0, "duration_s": 5.0, "requests": 0,
             "errors": {"timeout": 0}}
    assert failed_share(list(steps_of([stuck]))) == 100 and failed_share(list(steps_of([{**stuck, "requests": 5000}]))) == 0
    # the users charts see only the baseline level: one step group per backend, not two
    assert all(len(summary.steps) == len([s for s in run_a["steps"] if s["backend"] == name
                                          and s["users"] == summary.users and s.get("rate") is None])
               for name, by_users in chart_levels.summarize_steps(Run.of(sweep)).items() for summary in by_users.values())
    paths = plots.draw_all(Run.of(sweep), tmp_path)
    assert tmp_path / "idle_connections.png" in paths
    png_size(tmp_path / "idle_connections.png")
    assert "500 connected" in svg_text(tmp_path / "idle_connections.svg")
    assert "idle_connections.png" not in [p.name for p in plots.draw_all(Run.of(run_a), tmp_path / "plain")]


def test_a_spectrum_of_a_run_without_histograms_says_so_instead_of_failing(tmp_path: Path) -> None:
    """A hand-made or trimmed results.json may hold figures but no histograms: the chart is
    drawn with each backend noted as missing (it raised a log-scale ValueError before)."""
    results = Run.of(read_results(RUNS / "findings-hello"))
    assert not any(step.histogram for step in results.steps)
    paths = plots.latency_spectrum(results, tmp_path)
    assert "no latency histogram stored at" in svg_text(next(p for p in paths if p.suffix == ".svg"))
