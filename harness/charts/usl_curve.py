"""The Universal Scalability Law on the throughput chart: each backend's fit to its closed-loop
levels (results.usl), drawn as a thin dotted curve in its colour, with its peak marked.

The fit reads the same figure the chart draws as "good req/s": the median over repetitions
of 2xx/3xx answers per second, or of req/s for steps recorded without goodput (an older version). Driver-bound
levels are fitted like any other (their figure is a floor); saying so is the sentence's
reader's job, not the fit's.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
from matplotlib.lines import Line2D

from harness.charts.levels import StepSummary
from harness.charts.style import backend_colour
from harness.results.usl import UslFit, fit_usl

# Dense enough that the curve looks smooth on a log axis spanning 1..10,000 users.
CURVE_POINTS = 200
CURVE_LABEL = "USL fit (dotted)"
PEAK_LABEL = "USL peak"
PEAK_MARKER = "D"


def fitted_rps(summary: StepSummary) -> float:
    """The level's throughput as the fit sees it: good req/s when recorded, else req/s."""
    return (summary.good_rps or summary.rps).median


def fit_levels(by_users: Mapping[int, StepSummary]) -> UslFit:
    """The USL fit to one backend's closed-loop levels (one median per level), leaving out the
    levels where users starved, as the scalability finding does: their throughput is that of
    the users answered, not X(N)."""
    fitted = {users: summary for users, summary in by_users.items() if not summary.starved}
    return fit_usl(list(fitted), [fitted_rps(summary) for summary in fitted.values()])


def draw_usl_fits(ax: Any, summaries: Mapping[str, Mapping[int, StepSummary]]) -> dict[str, UslFit]:
    """Draw every backend's fit that is ok, over its own users, with its peak where that lies
    inside them; return every backend's fit, skipped ones too. Each curve's gid is
    "usl-fit-BACKEND" (an id in the SVG)."""
    fits = {backend: fit_levels(by_users) for backend, by_users in summaries.items()}
    for backend, fit in fits.items():
        if not fit.ok:
            continue
        colour, users = backend_colour(backend), list(summaries[backend])
        n = np.geomspace(min(users), max(users), CURVE_POINTS)
        ax.plot(n, fit.curve(n), color=colour, linestyle=":", linewidth=1.2, zorder=1,
                gid=f"usl-fit-{backend}")
        peak = _shown_peak(fit, users)
        if peak is not None:
            ax.plot([peak], fit.curve([peak]), linestyle="", marker=PEAK_MARKER,
                    markersize=6, color=colour, markerfacecolor="white", zorder=3, gid=f"usl-peak-{backend}")
    return fits


def usl_handles(fits: Mapping[str, UslFit], summaries: Mapping[str, Mapping[int, StepSummary]]) -> list[Line2D]:
    """Legend entries for what draw_usl_fits drew: the dotted curve, and the peak if any shows."""
    handles = []
    if any(fit.ok for fit in fits.values()):
        handles.append(Line2D([], [], color="black", linestyle=":", linewidth=1.2, label=CURVE_LABEL))
    if any(fit.ok and _shown_peak(fit, list(summaries[backend])) is not None for backend, fit in fits.items()):
        handles.append(Line2D([], [], color="black", linestyle="", marker=PEAK_MARKER, markerfacecolor="white",
                              label=PEAK_LABEL))
    return handles


def _shown_peak(fit: UslFit, users: list[int]) -> float | None:
    """The fit's peak (users) if it lies inside the measured users (beyond them it is a
    guess); None if it lies outside or the fit has none."""
    peak = fit.peak_users
    return peak if peak is not None and min(users) <= peak <= max(users) else None
