"""How every concurbench chart looks: backend colours, titles, figure size, saving.

A backend keeps one colour in every chart of every run, so a reader who learnt "red is
iterative" on one page can trust it on the next. Charts render with matplotlib's Agg
canvas on a bare Figure, never through pyplot: no global state, no GUI, safe in a loop.
"""

from __future__ import annotations

import functools
import re
import zlib
from pathlib import Path
from typing import Any, Callable, Mapping, ParamSpec, Sequence, TypeVar

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullLocator
from matplotlib.typing import RcKeyType

from harness.results.model import Run
from harness.results.provenance import Metadata

P = ParamSpec("P")
R = TypeVar("R")

# About 800 px wide at dpi 100: readable in a README column or a laptop browser.
FIGSIZE = (8.0, 4.5)
DPI = 100

# Our models, in a fixed order and colour (tab10 hues). iterative is red: it stalls.
BACKEND_COLOURS: dict[str, str] = {
    "iterative": "#d62728",
    "threaded": "#1f77b4",
    "forking": "#9467bd",
    "selectors": "#2ca02c",
    "asyncio": "#ff7f0e",
    "gevent": "#8c564b",
    "selectors-pool": "#17becf",
}
# Variants and external backends ("cmd:uvicorn ...") draw from the colours ours do not use.
EXTRA_COLOURS = ("#e377c2", "#7f7f7f", "#bcbd22",
                 "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173")
# One line style and marker per run when runs are overlaid (compare).
RUN_STYLES: tuple[tuple[str, str], ...] = (("-", "o"), ("--", "s"), (":", "^"), ("-.", "D"))

ERROR_COLOURS: dict[str, str] = {"connect": "#7f7f7f", "timeout": "#d62728",
                                 "reset": "#ff7f0e", "bad_status": "#9467bd"}
# Which latency a chart shows, said on every latency chart. A closed-loop user sends when
# its last answer came, so send -> answer is the whole story; an open-loop request has an
# intended send time, and a blocked connection sends it late: response time counts from the
# intention (coordinated omission corrected, as wrk2 does), service time from the actual send.
LATENCY = "latency (send -> answer)"
RESPONSE_TIME = "response time (intended send -> answer)"
SERVICE_TIME = "service time (actual send -> answer)"
# A percentile that reaches a censored wait (a timeout, a starved user, an unsent request) is
# only a lower bound: drawn with an upward triangle.
LOWER_BOUND_MARKER = "^"
LOWER_BOUND_LABEL = "lower bound (reaches timeouts or waits so far)"

RC: dict[RcKeyType, object] = {  # matplotlib's rcParams names: a misspelt one is a type error
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "svg.fonttype": "none",  # text stays text: smaller files, searchable, selectable
    "svg.hashsalt": "concurbench",  # stable ids, so a redrawn SVG diffs cleanly
}
_LABEL_WIDTH = 28  # a "cmd:..." command line longer than this is cut in legends


def backend_colour(backend: str) -> str:
    """The backend's colour: fixed for our models, hash-stable for any other name.

    crc32, not hash(): Python salts str hashes per process, and the colour must not
    change between two runs of `concurbench report`."""
    if backend in BACKEND_COLOURS:
        return BACKEND_COLOURS[backend]
    return EXTRA_COLOURS[zlib.crc32(backend.encode("utf-8")) % len(EXTRA_COLOURS)]


def distinct_colours(backends: Sequence[str]) -> dict[str, str]:
    """A colour for each backend of one chart, none shared: its own where free (a label's
    model's, "threaded@3.13t" -> threaded's, for the first label of that model), else the
    first colour no other backend of the chart has. Hashing names can give two one colour."""
    palette = [*BACKEND_COLOURS.values(), *EXTRA_COLOURS]
    chosen: dict[str, str] = {}
    for backend in dict.fromkeys(backends):
        own = BACKEND_COLOURS.get(backend) or BACKEND_COLOURS.get(backend.split("@")[0]) or backend_colour(backend)
        taken = set(chosen.values())
        chosen[backend] = own if own not in taken else next((c for c in palette if c not in taken), own)
    return chosen


def backend_order(names: Sequence[str]) -> list[str]:
    """Our models in their usual order first, then the others in the given order."""
    known = [name for name in BACKEND_COLOURS if name in names]
    return known + [name for name in dict.fromkeys(names) if name not in BACKEND_COLOURS]


def backend_label(backend: str) -> str:
    """A legend label: the name, with a long external command cut short."""
    if len(backend) <= _LABEL_WIDTH:
        return backend
    return backend[: _LABEL_WIDTH - 1] + "…"


def run_style(index: int) -> tuple[str, str]:
    """(line style, marker) of the index-th run in an overlay."""
    return RUN_STYLES[index % len(RUN_STYLES)]


def short_cpu_model(model: str | None) -> str:
    """'Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz' -> 'Intel Xeon Platinum 8375C'."""
    if not model:
        return "unknown CPU"
    text = re.sub(r"\((R|TM|tm|r)\)", "", model)
    text = re.sub(r"\s+@.*$", "", text)
    text = re.sub(r"\b(CPU|Processor|\d+-Core)\b", "", text)
    text = " ".join(text.split())
    return text if len(text) <= 40 else text[:39] + "…"


def _cpus(cpus: Any) -> str:
    if isinstance(cpus, (list, tuple)) and cpus:
        return ",".join(str(cpu) for cpu in cpus)
    return "unpinned"


def machine_line(metadata: Metadata) -> str:
    """'bench-1 (Intel Xeon Platinum 8375C) · server CPU 0, driver CPU 1'."""
    host = metadata.hostname or "unknown host"
    return (f"{host} ({short_cpu_model(metadata.cpu_model)}) · "
            f"server CPU {_cpus(metadata.server_cpus)}, driver CPU {_cpus(metadata.driver_cpus)}")


def chart_title(results: Run, what: str) -> str:
    """Two lines: the scenario and the chart, then the machine and the pinning."""
    return f"{results.scenario.get('name', '?')}: {what}\n{machine_line(results.metadata)}"


def new_figure(*, height: float = FIGSIZE[1], ncols: int = 1, nrows: int = 1,
               sharex: bool = False) -> tuple[Figure, Any]:
    """A figure ~800 px wide and its axes (one, or an array); draw it inside @styled."""
    figure = Figure(figsize=(FIGSIZE[0], height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(nrows=nrows, ncols=ncols, sharex=sharex, squeeze=True)
    return figure, axes


def _milliseconds(value: float, _position: Any = None) -> str:
    """Milliseconds as a tick label: 0.05, 1, 250, 2,000 (no exponent, µs resolution)."""
    return f"{value:,.6g}" if value == 0 or value >= 0.01 else f"{value:.3f}"


def ms_format() -> FuncFormatter:
    """A fresh tick formatter for a millisecond axis (a formatter belongs to one axis)."""
    return FuncFormatter(_milliseconds)


def thousands_format() -> FuncFormatter:
    """A fresh tick formatter for counts: 16,000 rather than 16000 or 1.6e4."""
    return FuncFormatter(lambda value, _position: f"{value:,.0f}")


def users_axis(ax: Any, users: Sequence[int]) -> None:
    """A log x axis ticked at exactly the measured user counts (1, 8, 32, not 10^1)."""
    ax.set_xscale("log")
    ax.set_xticks(list(users), labels=[str(u) for u in users])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("users (concurrent connections, log scale)")


def note_failed(figure: Figure, failed: Mapping[str, str]) -> None:
    """Name the backends that are not drawn, and why, under the chart."""
    if failed:
        text = "; ".join(f"{backend_label(name)}: {reason}" for name, reason in failed.items())
        # supxlabel, not figure.text: constrained layout makes room for it
        figure.supxlabel(f"failed, not drawn: {text}", x=0.01, ha="left", fontsize=7,
                         color="#a00", wrap=True)


def save_figure(figure: Figure, out_dir: Path, stem: str) -> list[Path]:
    """Write stem.png and stem.svg into out_dir; return both paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{stem}.png", out_dir / f"{stem}.svg"]
    figure.savefig(paths[0], dpi=DPI, metadata={"Software": None})
    # The PNG's draw placed every axes; keep those places rather than lay out again,
    # which costs as much as the drawing itself.
    figure.set_layout_engine("none")
    figure.savefig(paths[1], metadata={"Date": None})  # reproducible: no timestamp
    return paths


def styled(draw: Callable[P, R]) -> Callable[P, R]:
    """Run a chart function under the house rcParams, leaving the caller's untouched."""
    @functools.wraps(draw)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with matplotlib.rc_context(RC):
            return draw(*args, **kwargs)
    return wrapper
