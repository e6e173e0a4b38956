"""Charts and report after issue 13: goodput beside throughput, CPU per request, which latency
each chart shows, lower bounds marked, and no warning cut (what a chart cannot hold, the
report lists, and the chart says how many).

The run is fixture run-a with the keys a step carries since issue 13 added, and a few
things to warn of: refusals, starved users at many levels, censored waits, a noisy step, a
Little's-law step, an open-loop sweep with dropped requests. Its charts are drawn once.
"""

from __future__ import annotations

import copy
import html
import shutil
from pathlib import Path
from typing import Any

import pytest

from harness.results.model import Run, load, steps_of
from harness.charts import cost, levels as chart_levels, runs as plots
from harness.charts.compare_formats import compare_runs
from harness.charts.notes import MAX_CHART_NOTES, chart_lines, level_warnings, spanned, step_warnings
from harness.charts.open_loop import draw_open_loop
from harness.charts.report import write_report
from harness.charts.style import LATENCY, LOWER_BOUND_LABEL, RESPONSE_TIME, SERVICE_TIME
from harness.results.store import read_results, write_results
from harness.results.summary import pick_repetition
from support import FIXTURES

RUNS = FIXTURES / "runs"


def with_new_keys(run: dict[str, Any], *, good_share: float = 0.9) -> dict[str, Any]:
    """run's steps as issue 13 records them. threaded at 32 users: 1 - good_share of its
    answers are 503s; every backend at 8 and 32 users starved some users; iterative at 32:
    censored waits from its p99 up; asyncio at 8: noisy; selectors at 8: littles-law."""
    run = copy.deepcopy(run)
    run.pop("version", None)
    for step in run["steps"]:
        backend, users, requests = step["backend"], step["users"], step["requests"]
        refused = int(requests * (1 - good_share)) if (backend, users) == ("threaded", 32) else 0
        step["errors"]["bad_status"] += refused
        step.update(
            good_requests=requests - refused, good_rps=round((requests - refused) / step["duration_s"], 1),
            answers_by_class={"2xx": requests - refused, "3xx": 0, "4xx": 0, "5xx": refused, "other": 0},
            censored=0, censored_min_us=None, dropped=None, dropped_max_us=None,
            starved_users=users // 4 if users > 1 else 0, rate=None, uncorrected=None,
            littles={"users": users, "predicted": float(users), "ratio": 1.0, "gap_us": 25.0,
                     "cycle_us": 1000.0, "tolerance": 0.06})
        if (backend, users) == ("iterative", 32):
            # 2% of its record, more than the 1% above p99: p99 is a lower bound (summary.lower_bound)
            step.update(censored=requests // 50, censored_min_us=step["p99_us"])
        step["server"].update(cpu_seconds=step["server"]["cpu_percent"] / 100 * step["duration_s"],
                              steal_percent=0.4, pss_bytes=None)
        step["server"]["cpu_us_per_request"] = round(step["server"]["cpu_seconds"] * 1e6 / requests, 1)
        step["driver"].update(steal_percent=0.2, cpu_percent_by_cpu={"1": step["driver"]["cpu_percent"]})
        if (backend, users) == ("asyncio", 8):
            step["server"]["steal_percent"] = 7.0
            step["flags"].append("noisy")
        if (backend, users) == ("selectors", 8):
            step["littles"].update(predicted=7.2, ratio=0.9)
            step["flags"].append("littles-law")
    for backend in ("iterative", "asyncio"):  # an open-loop sweep beside the closed loop
        for rate in (1000.0, 4000.0):
            for rep in range(2):
                base = next(s for s in run["steps"] if s["backend"] == backend and s["users"] == 8)
                step = copy.deepcopy(base)
                dropped = 1500 + rep if backend == "iterative" and rate == 4000 else 0
                step.update(users=8, rate=rate, repetition=rep, flags=[], starved_users=0, littles=None,
                            rps=rate - dropped / 10, good_rps=rate - dropped / 10, dropped=dropped,
                            dropped_max_us=900_000 if dropped else None,
                            uncorrected={"p50_us": base["p50_us"], "p99_us": base["p99_us"] // 2})
                run["steps"].append(step)
    return run


@pytest.fixture(scope="module")
def run_a() -> dict[str, Any]:
    return read_results(RUNS / "run-a")


@pytest.fixture(scope="module")
def new_run(run_a: dict[str, Any]) -> dict[str, Any]:
    return with_new_keys(run_a)


@pytest.fixture(scope="module")
def stored(new_run: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The new-schema run written as results.json, its report (and charts) drawn from it."""
    run_dir = tmp_path_factory.mktemp("run") / "run-new"
    run_dir.mkdir()
    write_results(run_dir, new_run)
    write_report(run_dir)
    return run_dir


def svg(path: Path) -> str:
    """An SVG's text, entities decoded ("->" rather than "-&gt;")."""
    return html.unescape(path.read_text(encoding="utf-8"))


# --- no warning cut ---

@pytest.mark.parametrize("count", [0, 1, MAX_CHART_NOTES, MAX_CHART_NOTES + 1, 10])
def test_a_chart_shows_what_fits_and_counts_the_rest(count: int) -> None:
    lines = [f"note {i}" for i in range(count)]
    shown = chart_lines(lines)
    assert len(shown) == min(count, MAX_CHART_NOTES)
    if count > MAX_CHART_NOTES:
        assert shown[:-1] == lines[:MAX_CHART_NOTES - 1]
        assert shown[-1] == f"+ {count - MAX_CHART_NOTES + 1} more in the report (report.html, Flags and warnings)"
    else:
        assert shown == lines


def test_every_starvation_note_is_in_the_report_and_the_chart_counts_what_it_left(stored: Path) -> None:
    notes = chart_levels.starved_notes(chart_levels.summarize_steps(Run.of(read_results(stored))))
    assert len(notes) == 10 > MAX_CHART_NOTES  # five backends at 8 and 32 users
    page = html.unescape((stored / "report.html").read_text(encoding="utf-8"))
    for note in notes:
        assert note in page
    assert "forking at 32 users: 8 of 32 got no answer in a window (their wait so far is in these latencies, " \
           "as a lower bound)" in notes
    chart = svg(stored / "charts" / "latency_vs_users.svg")
    assert f"+ {len(notes) - MAX_CHART_NOTES + 1} more in the report" in chart and "..." not in chart


def test_dropped_open_loop_requests_are_noted_on_the_chart(stored: Path) -> None:
    text = svg(stored / "charts" / "latency_vs_rate.svg")
    assert "iterative at 4,000/s offered: 3,001 requests due were never sent" in text


# --- the report lists every flag of every step, explained with its numbers ---

def test_report_explains_every_flag_of_every_step(stored: Path, new_run: dict[str, Any]) -> None:
    """One row per backend, level and flag, naming the repetitions that carry it; every step's
    own explanation is in it, word for word or with each figure that differs as a range."""
    page = html.unescape((stored / "report.html").read_text(encoding="utf-8"))
    table = page[page.index('<table class="warnings">'):]
    table = table[:table.index("</table>")]
    run = Run.of(new_run)
    expected = sum(len(s["flags"]) + bool(s["starved_users"]) + bool(s["censored"]) + bool(s["dropped"])
                   for s in new_run["steps"])
    assert sum(len(w.items) for w in step_warnings(run)) == expected
    grouped = level_warnings(run)
    assert table.count("<tr") - 1 == len(grouped) == len({(w.backend, w.load, w.name) for w in grouped})
    for step in step_warnings(run):
        for name, text in step.items:
            [warning] = [w for w in grouped if (w.backend, w.load, w.name) == (step.backend, step.load, name)]
            assert step.repetition in warning.repetitions and text in dict((t, r) for r, t in warning.texts)
            assert (warning.text or text) in table
    assert "CPU steal server 7.0%, driver 0.2% (over 5%)" in table
    assert "8 users, but throughput x cycle time gives 7.2 (ratio 0.90" in table
    assert "the driver's busiest CPU was" in table  # selectors at 32 users in run-a
    assert "of their median apart (over 10%)" in table  # threaded at 32
    assert "latency values are waits cut short" in table  # iterative at 32
    for flag in ("driver-bound", "high-spread", "littles-law", "noisy"):
        assert f'id="flag-{flag}"' in page


@pytest.mark.parametrize("texts, told", [
    (["7 of 8 got no answer", "7 of 8 got no answer"], "7 of 8 got no answer"),
    (["the shortest 4,998.9 ms", "the shortest 4,998.6 ms", "the shortest 4,998.7 ms"],
     "the shortest 4,998.6–4,998.9 ms"),
    (["gives 67.0 (ratio 0.52, over 5%)", "gives 65.5 (ratio 0.51, over 5%)"], "gives 65.5–67.0 (ratio 0.51–0.52, over 5%)"),
    (["CPU steal server 7.0%", "CPU steal driver 7.0%"], None),  # words differ: told one by one
], ids=["same", "one-figure", "figures", "words"])
def test_explanations_that_differ_in_figures_only_are_told_once_with_ranges(texts: list[str], told: str | None) -> None:
    assert spanned(texts) == told


# --- goodput, CPU per request ---

def test_goodput_is_drawn_beside_throughput_where_it_differs(stored: Path, run_a: dict[str, Any],
                                                             tmp_path: Path) -> None:
    assert "good req/s (2xx/3xx answers)" in svg(stored / "charts" / "throughput_vs_users.svg")
    all_good = plots.throughput_vs_users(Run.of(with_new_keys(run_a, good_share=1.0)), tmp_path / "good")[1]
    assert "every answer 2xx/3xx" in svg(all_good) and "good req/s (2xx" not in svg(all_good)
    old = plots.throughput_vs_users(Run.of(run_a), tmp_path / "old")[1]
    assert "good req/s" not in svg(old) and "2xx" not in svg(old)  # never recorded: nothing claimed


def test_cpu_per_request_chart_is_drawn_from_the_stored_results(stored: Path, monkeypatch: pytest.MonkeyPatch,
                                                                tmp_path: Path) -> None:
    assert (stored / "charts" / "cpu_per_request.png").exists() and (stored / "charts" / "cpu_per_request.svg").exists()
    assert 'alt="cpu_per_request"' in (stored / "report.html").read_text(encoding="utf-8")
    results = load(stored)
    drawn = {}
    monkeypatch.setattr(cost, "save_figure", lambda figure, out, stem: drawn.setdefault(stem, figure) and [])
    cost.cpu_per_request(results, tmp_path)
    bars = [patch.get_height() for patch in drawn["cpu_per_request"].axes[0].patches]
    expected = []
    for backend in ("iterative", "threaded", "forking", "selectors", "asyncio"):
        for users, rate in ((1, None), (8, None), (32, None), (8, 1000.0), (8, 4000.0)):
            reps = [s for s in results.steps if (s.backend, s.users, s.rate) == (backend, users, rate)]
            if reps:
                expected.append(pick_repetition(reps).server.cpu_us_per_request)
    assert sorted(bars) == sorted(expected) and len(bars) == 5 * 3 + 2 * 2


def test_no_cpu_per_request_chart_for_results_that_did_not_record_it(run_a: dict[str, Any], tmp_path: Path) -> None:
    assert not cost.has_cpu_per_request(Run.of(run_a)) and cost.draw_cost(Run.of(run_a), tmp_path) == []
    assert cost.has_cpu_per_request(Run.of(with_new_keys(run_a)))


# --- which latency, and lower bounds ---

def test_every_latency_chart_says_which_latency(stored: Path) -> None:
    charts = stored / "charts"
    for name in ("latency_vs_users", "latency_spectrum", "timeseries_u8"):
        assert LATENCY == "latency (send -> answer)" and LATENCY in svg(charts / f"{name}.svg"), name
    open_loop = svg(charts / "latency_vs_rate.svg")
    assert RESPONSE_TIME == "response time (intended send -> answer)" and RESPONSE_TIME in open_loop
    assert SERVICE_TIME == "service time (actual send -> answer)" and SERVICE_TIME in open_loop


def test_lower_bounds_are_marked(stored: Path, run_a: dict[str, Any], tmp_path: Path) -> None:
    summary = chart_levels.summarize_steps(Run.of(read_results(stored)))["iterative"][32]
    assert summary.p99_lower_bound and not summary.p50_lower_bound
    assert LOWER_BOUND_LABEL in svg(stored / "charts" / "latency_vs_users.svg")
    assert LOWER_BOUND_LABEL in svg(stored / "charts" / "latency_spectrum.svg")  # at 32 users
    assert LOWER_BOUND_LABEL not in svg(plots.latency_vs_users(Run.of(run_a), tmp_path)[1])
    assert "≥" in (stored / "report.html").read_text(encoding="utf-8")


def test_summary_of_a_level_is_the_median_goodput_repetition(new_run: dict[str, Any]) -> None:
    reps = [s for s in new_run["steps"] if (s["backend"], s["users"], s["rate"]) == ("threaded", 32, None)]
    reps[0]["starved_users"], reps[1]["starved_users"] = 30, 0
    summary = chart_levels._summary("threaded", 32, list(steps_of(reps)))
    chosen = sorted(reps, key=lambda s: s["good_rps"])[1]
    assert (summary.p99_us, summary.cpu_us_per_request) == (chosen["p99_us"], chosen["server"]["cpu_us_per_request"])
    assert summary.starved == 30 and summary.good_differs()
    for rep in reps:  # a process tree: RSS counts shared pages once per process, PSS once
        rep["server"].update(rss_bytes=7 * 2 ** 30, pss_bytes=50 * 2 ** 20)
    assert chart_levels._summary("threaded", 32, list(steps_of(reps))).rss_bytes == 50 * 2 ** 20


def test_open_loop_charts_draw_for_the_new_keys(new_run: dict[str, Any], tmp_path: Path) -> None:
    paths = draw_open_loop(Run.of(new_run), tmp_path)
    assert "good req/s" not in svg(tmp_path / "achieved_vs_offered.svg")  # all answers were good
    assert len(paths) == 4


# --- compare ---

def test_compare_uses_goodput_when_both_runs_have_it(run_a: dict[str, Any], tmp_path: Path) -> None:
    dirs = []
    for name, share in (("new-a", 1.0), ("new-b", 0.5)):  # same rps; half of b's threaded at 32 refused
        dirs.append(tmp_path / name)
        dirs[-1].mkdir()
        write_results(dirs[-1], with_new_keys(run_a, good_share=share))
    output = compare_runs(dirs)
    assert "throughput: good req/s (2xx/3xx answers per second)" in output and "new-a good req/s" in output
    row = next(line for line in output.splitlines() if line.startswith("threaded") and " 32 " in line)
    assert row.endswith("slower") and "0.50x" in row
    old_dir = tmp_path / "old"
    shutil.copytree(RUNS / "run-a", old_dir)  # results schema 1: no goodput
    mixed = compare_runs([old_dir, dirs[1]])
    assert "WARNING: old was recorded with results schema 1, whose windows lost the requests" in mixed
    assert "WARNING" not in output
    assert "not every run recorded goodput" in mixed and "1.00x" in next(
        line for line in mixed.splitlines() if line.startswith("threaded") and " 32 " in line)
