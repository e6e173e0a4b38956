"""Capacity at an objective (a rate search): one bar per backend, the highest offered rate it
held within the objective, a panel per request the scenario searched alone; each bar says the
server CPU us per request at that rate (measured in the rounds there). A floor (the range or
the driver ran out first) is a hatched bar marked +; a rate the search held but most rounds
did not is no bar, only an x at the search's rate. A second chart
draws every search path: each probe's rate in order, held (filled) or missed (hollow)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.artist import Artist
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from harness.charts.style import (backend_colour, backend_order, chart_title, new_figure, save_figure, styled,
                                  thousands_format)
from harness.results.model import Run
from harness.results.capacity import (BACKOFF, ROUNDS_AGGREGATE, UNFINISHED, Capacity, capacities, objective,
                                      p99_text)


def _by_route(rows: list[Capacity]) -> dict[str | None, list[Capacity]]:
    routes: dict[str | None, list[Capacity]] = {}
    for row in rows:
        routes.setdefault(row.route, []).append(row)
    for route, group in routes.items():
        order = backend_order([row.backend for row in group])
        group.sort(key=lambda row: order.index(row.backend))
    return routes


def _bar_text(row: Capacity) -> str:
    if row.status in UNFINISHED:
        return "the backend failed in its search" if row.status == "failed" else "search not finished"
    if row.found is None:
        return "missed at the lowest rate"
    told = row.told
    if row.rate is None:
        return f"search held {row.found:,.0f}; no rate held in most rounds"
    text = f"{row.rate:,.0f}" + ("+" if row.floor else "")
    if told is not None and told.cpu_us_per_request is not None:
        text += f" · {told.cpu_us_per_request:,.0f} µs CPU/req"
    if row.rate != row.found:
        text += f" · search found {row.found:,.0f}"
    return text


HELD, FLOOR, NOT_HELD = "held", "floor", "not-held"
# How each mark reads in the chart's legend.
MARK_LEGEND = {FLOOR: "hatched, +: a floor (the range searched or the driver ran out first)",
               NOT_HELD: "x, no bar: the search's rate, held in no round majority"}


def bar_mark(row: Capacity) -> tuple[float, str | None]:
    """The bar's length and its mark: the capacity told (HELD, or FLOOR), or for a rate the
    search held but most rounds did not, no bar and NOT_HELD at the search's rate; (0, None)
    where nothing was held (missed at the lowest rate, or no search finished)."""
    if row.rate is not None:
        return row.rate, FLOOR if row.floor else HELD
    if row.found is not None and row.status not in UNFINISHED:
        return 0.0, NOT_HELD
    return 0.0, None


@styled
def draw_capacity(results: Run, out_dir: Path) -> list[Path]:
    """capacity.png/.svg and capacity_search.png/.svg; [] for a run without a rate search."""
    rows = capacities(results)
    if not rows:
        return []
    routes = _by_route(rows)
    height = 1.2 + 0.45 * sum(len(group) for group in routes.values())
    figure, axes = new_figure(nrows=len(routes), height=max(height, 3.5))
    axes = np.atleast_1d(axes).reshape(-1, 1)
    top = max((row.rate or row.found or 0) for row in rows) or 1
    marks = set()
    for ax, (route, group) in zip(axes[:, 0], routes.items()):
        names = [row.backend for row in group]
        bars = ax.barh(names, [bar_mark(row)[0] for row in group], color=[backend_colour(name) for name in names])
        for bar, row in zip(bars, group):
            mark = bar_mark(row)[1]
            marks.add(mark)
            y, end = bar.get_y() + bar.get_height() / 2, bar.get_width()
            if mark == FLOOR:
                bar.set_hatch("//")
                bar.set_alpha(0.6)
            elif mark == NOT_HELD:
                ax.plot(row.found, y, marker="x", markersize=8, markeredgewidth=2, color=backend_colour(row.backend))
                end = row.found or 0.0
            ax.annotate(_bar_text(row), (end, y), xytext=(6, 0), textcoords="offset points", va="center", fontsize=8)
        ax.invert_yaxis()
        ax.set_xlim(0, top * 1.45)  # room for the labels
        ax.xaxis.set_major_formatter(thousands_format())
        ax.set_title(f"GET {route}" if route and not route.startswith(("POST", "PUT", "HEAD")) else (route or "the mix"),
                     fontsize=10, loc="left")
    axes[-1, 0].set_xlabel(f"highest offered requests/s held within {objective(results)}")
    handles: list[Artist] = ([Patch(facecolor="grey", alpha=0.6, hatch="//", label=MARK_LEGEND[FLOOR])]
                             if FLOOR in marks else [])
    if NOT_HELD in marks:
        handles.append(Line2D([], [], color="grey", linestyle="", marker="x", markeredgewidth=2,
                              label=MARK_LEGEND[NOT_HELD]))
    if handles:
        axes[0, 0].legend(handles=handles, fontsize=8)
    figure.suptitle(chart_title(results, "capacity at the objective"))
    paths = save_figure(figure, out_dir, "capacity")
    return paths + _draw_paths(results, routes, out_dir)


def _draw_paths(results: Run, routes: dict[str | None, list[Capacity]], out_dir: Path) -> list[Path]:
    """Each search's probes in order: the rate offered, filled where it held."""
    figure, axes = new_figure(ncols=len(routes))
    axes = np.atleast_1d(axes).reshape(1, -1)
    for ax, (route, group) in zip(axes[0], routes.items()):
        for row in group:
            colour = backend_colour(row.backend)
            steps = list(range(1, len(row.path) + 1))
            ax.plot(steps, [probe.rate for probe in row.path], color=colour, linewidth=1, label=row.backend)
            for step, probe in zip(steps, row.path):
                ax.plot(step, probe.rate, marker="o", color=colour,
                        markerfacecolor=colour if probe.passed else "white")
        ax.set_yscale("log")
        ax.set_xlabel("probe")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(route or "the mix", fontsize=10, loc="left")
    axes[0, 0].set_ylabel("offered requests/s (filled: held, hollow: missed)")
    axes[0, -1].legend(fontsize=8)
    figure.suptitle(chart_title(results, "capacity search paths"))
    return save_figure(figure, out_dir, "capacity_search")


def capacity_html(results: Run) -> str:
    """The report's capacity section: a row per search with its path; "" without a search."""
    import html

    rows = capacities(results)
    if not rows:
        return ""
    def cell(value: float | None, scale: float = 1, places: int = 0) -> str:
        return "–" if value is None else f"{value / scale:,.{places}f}"

    lines = [f"<h2>Capacity within {html.escape(objective(results) or '')}</h2>",
             f"<p>Found by search (open loop, latency from each request's intended send time); every round then "
             f"measures the rate found and {BACKOFF:.0%} of it, and the capacity is the higher that held in most "
             "rounds (held: the rounds at that rate within the objective; + a floor; p99, good req/s and CPU: "
             f"{html.escape(ROUNDS_AGGREGATE)}; ≥ a lower bound). Path: each probe's offered req/s, ✓ held, "
             "✗ missed.</p>",
             '<div class="wide"><table><tr><th class=name>series</th><th>capacity req/s</th><th>held</th>'
             "<th>median p99 ms</th>"
             "<th>median good req/s</th><th>median CPU µs/req</th><th>search found</th>"
             "<th class=name>search path</th><th class=name>note</th></tr>"]
    for row in rows:
        steps = " → ".join(f"{probe.rate:,.0f} {'✓' if probe.passed else '✗'}" for probe in row.path)
        told = row.told
        rate = cell(row.rate) + ("+" if row.floor else "")
        held = f"{told.held}/{told.rounds}" if told is not None else "–"
        lines.append(f"<tr><td class=name>{html.escape(row.series)}</td><td>{rate}</td><td>{held}</td>"
                     f"<td>{p99_text(told).replace('>=', '≥').replace('-', '–')}</td>"
                     f"<td>{cell(told.good_rps if told else None)}</td>"
                     f"<td>{cell(told.cpu_us_per_request if told else None, places=1)}</td><td>{cell(row.found)}</td>"
                     f"<td class=name style='white-space: normal'>{html.escape(steps)}</td>"
                     f"<td class=name>{html.escape(row.note)}</td></tr>")
    return "\n".join(lines + ["</table></div>"])
