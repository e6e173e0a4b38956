"""What a scenario file may make this machine run.

A scenario is mostly data, but two of its keys are commands: a [backends] entry is a shell
command started as a server, and [server] python names interpreters that are run (probed at
the start of a run, then serving). A file from elsewhere must not run them behind the user's
back, nor take a built-in backend's name, so that `--backend uvicorn` would start the file's
command. The scenarios shipped with the code are trusted; the commands of any other file
are shown, and run only with --trust-scenario.
"""

from __future__ import annotations

from harness.run.peers import PEERS
from harness.scenario import SCENARIO_DIR, Scenario, ScenarioError
from servers.backends import variants


def builtin_backend_names() -> tuple[str, ...]:
    """Every name --backend already means: ours, our variants, the ready-made peers, all."""
    return ("all", *variants(), *PEERS)


def check_backend_names(scenario: Scenario) -> None:
    """A [backends] entry may not take a built-in backend's name: ScenarioError if one does."""
    builtin = builtin_backend_names()
    for name, _ in scenario.backends:
        if name in builtin:
            raise ScenarioError(file=scenario.path, key=f"backends.{name}",
                                reason=f"{name!r} is a built-in backend; a scenario cannot replace one, "
                                       f"so name its command otherwise (e.g. 'my-{name}')")


def is_builtin(scenario: Scenario) -> bool:
    return scenario.path.resolve().parent == SCENARIO_DIR


def commands_to_trust(scenario: Scenario, chosen: dict[str, str], *, pythons_from_file: bool) -> list[str]:
    """What this run would execute because the scenario file says so, one line each: the
    [backends] entries --backend chose, and the file's [server] python (unless --server-python
    replaced it). Nothing for a built-in scenario."""
    if is_builtin(scenario):
        return []
    lines = [f"[backends] {name} = {command!r}" for name, command in scenario.backends if name in chosen]
    if pythons_from_file:
        lines += [f"[server] python = {python!r}" for python in scenario.pythons]
    return lines


def consent_problem(scenario: Scenario, commands: list[str]) -> str:
    """The refusal when a file's commands were not trusted: what they are and how to agree."""
    shown = "".join(f"\n  {line}" for line in commands)
    return (f"{scenario.path} runs commands of its own, which this run would execute:{shown}\n"
            "read them; if you trust them, run again with --trust-scenario")
