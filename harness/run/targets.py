"""--backend as what to launch: {display name: launch target}, where a target is one of ours
by registry name (a variant with its flags: "forking --workers 2") or a `cmd:` server
command (a ready-made peer's, a scenario's [backends] entry's, or a literal one)."""

from __future__ import annotations

from harness.run.peers import PEERS, available, peer_command
from harness.scenario.fields import did_you_mean
from servers.backends import BACKENDS, variants


def resolve_backends(text: str, scenario_backends: tuple[tuple[str, str], ...] = ()) -> dict[str, str]:
    """--backend as {display name: launch target}: ours by name, a ready-made peer, a
    scenario's [backends] entry, or a literal cmd:COMMAND (which may contain commas)."""
    if text == "all":
        return {name: name for name in BACKENDS}
    if text.startswith("cmd:"):
        return {text: text}
    named = dict(scenario_backends)
    registered = variants()  # a variant by its id, e.g. forking-reuseport2: its flags go with it
    chosen: dict[str, str] = {}
    for name in (part.strip() for part in text.split(",")):
        if not name:
            continue
        if name == "all":
            chosen.update({ours: ours for ours in BACKENDS})
        elif name in registered:  # ours, or a variant: "--backend NAME FLAGS..." less "--backend"
            chosen[name] = " ".join(registered[name].flags[1:])
        elif name in named:
            chosen[name] = "cmd:" + named[name]
        elif name in PEERS:
            if not available(name):
                raise ValueError(f"backend {name!r} needs {PEERS[name].needs}, which is not installed: "
                                 "pip install 'concurbench[peers]'")
            chosen[name] = peer_command(name)
        else:
            choices = [*registered, *PEERS, *named]
            raise ValueError(f"unknown backend {name!r}{did_you_mean(name, ['all', *choices])}; choose from: all, {', '.join(choices)}, or cmd:COMMAND")
    if not chosen:
        raise ValueError(f"no backend in {text!r}")
    return chosen


def registry_name(target: str) -> str:
    """Which of our backends a launch target runs: "forking --workers 2" -> "forking"."""
    return target.split()[0]
