"""What `concurbench list` shows, on one screen: our backends with their variants, the
ready-made peers, the Pythons the servers can run under here, and each built-in scenario
with about how long it takes at its defaults against all our backends.

The time is an estimate from the plan (harness.run.plan: each level's warm-up and window,
each backend's start, in every round) and the run's own start; the Pythons are found as a
run finds them (harness.run.interpreter), so a backend a Python cannot run is not counted.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from harness.network.link import missing
from harness.run.interpreter import (Interpreter, InterpreterError, expand_backends, leave_out_unfit,
                                     own_interpreter, probe, resolve_interpreters, unfit)
from harness.run.peers import PEERS, available
from harness.run.plan import plan_run
from harness.run.pythons import BUILD_COMMAND, BUILDS, built
from harness.run.targets import resolve_backends
from harness.scenario import Scenario, ScenarioError, builtin_scenarios, load_scenario
from servers.backends import BACKENDS

# What a run takes once, whatever its plan: the /cpu calibration, the latency floor (a 1 s
# window) and the results. Measured once on the 2-CPU development VM: quick against 1, 3 and 7
# backends at 1 and 3 levels took 2.8 s more than its starts, warm-ups and windows.
RUN_START_S = 3.0
FIRST = "quick"  # the scenario to start with, listed first
WIDTH = 100  # when the terminal's width is not known (output into a pipe or a file)


@dataclass(frozen=True)
class PythonFound:
    """A Python the servers may run under: its --server-python name, and what it is or why
    it is not there."""

    name: str
    interpreter: Interpreter | None
    why_not: str = ""


def listing(width: int | None = None) -> str:
    """The whole of `concurbench list`, lines cut to `width` (the terminal's, else WIDTH)."""
    width = width or shutil.get_terminal_size((WIDTH, 24)).columns
    scenarios = _scenarios()
    lines = [*backend_lines(), "", *peer_lines(), "", *python_lines(pythons_here(scenarios)), "",
             *scenario_lines(scenarios)]
    return "\n".join(_cut(line, width) for line in lines)


def backend_lines() -> list[str]:
    """Each of our backends, its variants (a name --backend takes) under it."""
    width = max(map(len, BACKENDS))
    lines = [f"backends (--backend NAME,...; 'all': these {len(BACKENDS)}, not their variants):"]
    for name, backend in BACKENDS.items():
        lines.append(f"  {name:<{width}}  {backend.description}")
        own = [f"{name}-{suffix} ({' '.join(variant.flags)})" for suffix, variant in backend.variants.items()]
        if own:
            lines.append(f"    {'variant' if len(own) == 1 else 'variants'}: {', '.join(own)}")
        why = unfit(name, own_interpreter())
        if why:
            lines.append(f"    under Python {own_interpreter().version}: {why}")
    return lines


def peer_lines() -> list[str]:
    """The ready-made peers, each marked where its package is missing."""
    width = max(map(len, PEERS))
    lines = ["ready-made peers (other servers serving the same app; --backend NAME):"]
    for name, peer in PEERS.items():
        note = "" if available(name) else "  [not installed: pip install 'concurbench[peers]']"
        lines.append(f"  {name:<{width}}  {peer.description}{note}")
    return lines


def pythons_here(scenarios: Mapping[str, Scenario | ScenarioError]) -> list[PythonFound]:
    """This Python, the builds `make pythons` makes (built or not), and the commands the
    scenarios name ([server] python) that run here."""
    found = [PythonFound("this one", own_interpreter())]
    for short in BUILDS:
        if built(short) is None:
            found.append(PythonFound(short, None, f"not built: `{BUILD_COMMAND}` builds it (once, about 10 minutes)"))
        else:
            found.append(_probed(short))
    named = dict.fromkeys(path for scenario in scenarios.values() if isinstance(scenario, Scenario)
                          for path in scenario.pythons if path not in BUILDS)
    found += [python for python in map(_probed, named) if python.interpreter is not None]
    return found


def _probed(path: str) -> PythonFound:
    try:
        return PythonFound(path, probe(path))
    except InterpreterError as error:
        return PythonFound(path, None, str(error))


def python_lines(pythons: Iterable[PythonFound]) -> list[str]:
    found = list(pythons)
    width = max(len(python.name) for python in found)
    lines = ["Pythons the servers can run under (--server-python NAME):"]
    for python in found:
        interpreter = python.interpreter
        if interpreter is None:
            lines.append(f"  {python.name:<{width}}  {python.why_not}")
            continue
        kind = ", free-threaded" if interpreter.free_threaded else ""
        where = ("the default" if python.name == "this one"
                 else f"built by `{BUILD_COMMAND}`" if python.name in BUILDS else "on PATH")
        lines.append(f"  {python.name:<{width}}  Python {interpreter.version}{kind}: {where}")
    return lines


def scenario_lines(scenarios: Mapping[str, Scenario | ScenarioError]) -> list[str]:
    """Each scenario, quick first: about how long it takes, and what it shows."""
    names = sorted(scenarios, key=lambda name: (name != FIRST, name))
    width = max(map(len, names))
    lines = ["scenarios (--scenario NAME; about how long each takes at its defaults, against all our backends):"]
    for name in names:
        scenario = scenarios[name]
        if isinstance(scenario, ScenarioError):
            lines.append(f"  {name:<{width}}  {'':>12}  (invalid: {scenario.reason})")
        else:
            lines.append(f"  {name:<{width}}  {estimate_text(scenario):>12}  {scenario.description}")
            lacking = missing() if scenario.network is not None else None
            if lacking:  # such a run is refused before it starts (harness.run.command.network_problem)
                lines.append(f"    not here: {lacking}")
    return lines


def estimate_text(scenario: Scenario) -> str:
    """'about 2 min', 'about 45 s', or why the scenario cannot run here."""
    try:
        seconds = default_seconds(scenario)
    except InterpreterError:
        return "needs Pythons"
    return f"about {seconds:.0f} s" if seconds < 90 else f"about {seconds / 60:.0f} min"


def default_seconds(scenario: Scenario) -> float:
    """The wall time to expect of `concurbench run --scenario NAME` against all our backends,
    each under each Python the scenario names that is here (those it cannot run left out, as
    a run leaves them out): the plan's starts, warm-ups and windows, and the run's own start."""
    interpreters, _ = resolve_interpreters(scenario.pythons, source=f"{scenario.path}: server.python:",
                                           skip_missing=scenario.skip_missing_python)
    backends, pythons = expand_backends(resolve_backends("all", scenario.backends), interpreters)
    backends, _ = leave_out_unfit(backends, pythons)
    return RUN_START_S + plan_run(scenario, backends).seconds


def _scenarios() -> dict[str, Scenario | ScenarioError]:
    """The built-in scenarios by name, each loaded, or why it cannot be."""
    found: dict[str, Scenario | ScenarioError] = {}
    for name in builtin_scenarios():
        try:
            found[name] = load_scenario(name)
        except ScenarioError as error:
            found[name] = error
    return found


def _cut(line: str, width: int) -> str:
    """The line, cut at a word and ending in '…' where it would pass `width` columns: a
    description's first words say what it is, and the whole is one flag away."""
    if len(line) <= width:
        return line
    kept = line[:width - 1]
    if " " in kept[width // 2:]:  # a word's end near the edge, not the columns' padding
        kept = kept[:kept.rindex(" ")]
    return kept.rstrip(" ,;:") + "…"

