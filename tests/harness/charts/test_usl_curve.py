"""The USL on the throughput chart: a dotted curve in the backend's colour for each backend
whose levels fit, none for one that is skipped, fitted to good req/s of closed-loop levels.

usl-hello is the reference hello run trimmed (see tests/harness/results/test_usl.py): there
threaded fits (peak near 37 users) and forking does not (R² 0.86); run-a has 3 levels only.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harness.results.model import Run
from harness.charts import runs as plots
from harness.charts.levels import summarize_steps
from harness.charts.style import backend_colour, new_figure
from harness.charts.usl_curve import CURVE_LABEL, PEAK_LABEL, draw_usl_fits, fit_levels, usl_handles
from harness.results.store import read_results
from support import FIXTURES

RUNS = FIXTURES / "runs"


@pytest.fixture(scope="module")
def hello() -> dict[str, Any]:
    return read_results(RUNS / "usl-hello")


def drawn(ax: Any, prefix: str) -> dict[str, Any]:
    """The lines whose gid starts with prefix, by backend."""
    return {str(line.get_gid())[len(prefix):]: line for line in ax.lines
            if str(line.get_gid() or "").startswith(prefix)}


def test_curve_is_drawn_for_a_fitting_backend_only(hello: dict[str, Any]) -> None:
    summaries = summarize_steps(Run.of(hello))
    _, ax = new_figure()
    fits = draw_usl_fits(ax, summaries)
    assert set(fits) == set(summaries)
    assert fits["threaded"].ok and not fits["forking"].ok
    curves = drawn(ax, "usl-fit-")
    assert set(curves) == {backend for backend, fit in fits.items() if fit.ok}
    assert "threaded" in curves and "forking" not in curves
    line = curves["threaded"]
    assert line.get_linestyle() == ":" and line.get_color() == backend_colour("threaded")
    xs = np.asarray(line.get_xdata())
    assert (xs[0], xs[-1]) == pytest.approx((1, 128)) and len(xs) > 50  # dense, over the measured users
    assert np.asarray(line.get_ydata()) == pytest.approx(fits["threaded"].curve(xs))
    peaks = drawn(ax, "usl-peak-")
    assert peaks["threaded"].get_xdata()[0] == pytest.approx(fits["threaded"].peak_users)
    assert "forking" not in peaks
    labels = [handle.get_label() for handle in usl_handles(fits, summaries)]
    assert labels == [CURVE_LABEL, PEAK_LABEL]


def test_no_curve_and_no_legend_entry_when_nothing_fits() -> None:
    summaries = summarize_steps(Run.of(read_results(RUNS / "run-a")))  # 1, 8, 32 users: too few levels
    _, ax = new_figure()
    fits = draw_usl_fits(ax, summaries)
    assert fits and not any(fit.ok for fit in fits.values())
    assert all(fit.reason is not None and fit.reason.startswith("3 user levels") for fit in fits.values())
    assert not drawn(ax, "usl-") and usl_handles(fits, summaries) == []


def test_the_fit_reads_good_req_s_and_falls_back_to_req_s(hello: dict[str, Any]) -> None:
    fit = fit_levels(summarize_steps(Run.of(hello))["threaded"])
    halved = copy.deepcopy(hello)
    for step in halved["steps"]:
        step["good_rps"] = step["rps"] / 2
    assert fit_levels(summarize_steps(Run.of(halved))["threaded"]).lam == pytest.approx(fit.lam / 2, rel=0.01)
    for step in halved["steps"]:
        del step["good_rps"]  # recorded before goodput: req/s it is
    assert fit_levels(summarize_steps(Run.of(halved))["threaded"]).lam == pytest.approx(fit.lam, rel=0.01)


def test_open_loop_steps_are_not_fitted(hello: dict[str, Any]) -> None:
    fit = fit_levels(summarize_steps(Run.of(hello))["threaded"])
    mixed = copy.deepcopy(hello)
    mixed["steps"] += [{**step, "users": 64, "rate": 1000.0, "rps": 1000.0, "good_rps": 1000.0}
                       for step in hello["steps"] if step["backend"] == "threaded"]
    assert fit_levels(summarize_steps(Run.of(mixed))["threaded"]) == fit


def test_throughput_chart_carries_the_curves(hello: dict[str, Any], tmp_path: Path) -> None:
    svg = plots.throughput_vs_users(Run.of(hello), tmp_path)[1].read_text(encoding="utf-8")
    assert 'id="usl-fit-threaded"' in svg and 'id="usl-fit-forking"' not in svg
    assert CURVE_LABEL in svg and PEAK_LABEL in svg
