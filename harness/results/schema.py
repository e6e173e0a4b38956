"""The schema of results.json: its version, its history, and the upgrade of an older document.

This is the one place that knows what each version added. `upgrade` brings a document of any
version the project ever wrote to the current one, once, as pyperf's loader does; everything
after it (the typed model in model.py, and every stage that reads a run) knows only the current
shape. A key that an older version lacked is filled with its "not measured" value here.
"""

from __future__ import annotations

from typing import Any

# Schema history of results.json; bump SCHEMA_VERSION on any change a reader must know of, and
# add its upgrade below.
#   1  {"version", "metadata", "scenario", "status", "backends": {name: {...}}, "steps": [step, ...]}.
#   2  open loop: a step carries "rate" (offered req/s; null for closed loop) and "uncorrected"
#      (latency from the actual send). The run's "status" may be "failed"; a backend entry's
#      "status" may be "running" or "interrupted", and a failed or interrupted one carries
#      "step" (where it was: users, rate, idle_connections, repetition, phase); "events":
#      [{"t", "kind", "backend", "step", "detail"}], what happened to the run, in order.
#   3  what a window counts (docs/ARCHITECTURE.md): a request belongs to the window it completes
#      in; "rps" counts answers of any status and "good_rps" the 2xx/3xx ones; the histogram and
#      percentiles hold good answers plus "censored" lower bounds; "good_requests", "failures",
#      "error_share", "answers_by_class", "censored_min_us", "dropped", "dropped_max_us",
#      "starved_users", "background", "littles", "cycles"; "server" gains "pss_bytes",
#      "cpu_seconds", "cpu_us_per_request", "steal_percent"; "driver" gains "self_cpu_percent",
#      "cpu_percent_by_cpu", "steal_percent"; the flags "littles-law" and "noisy"; a step's
#      "repetition" is the round of an interleaved run (metadata "order"); metadata
#      "latency_floor". Steps of versions 1 and 2 lack these figures: they are unknown (None),
#      and not comparable one for one (their windows lost the requests in flight at each edge).
#   4  what version 3 files gained while still numbered 3, now always written: a step's
#      "server_cpus", "cores" (null unless the run sweeps the server's CPUs), "route" (null
#      unless the scenario's mix is "each"), "runtime" (GET /runtime after it; null for a cmd:
#      server), "server.others_percent", "driver.share_of_server_percent" and the flags
#      "contended", "shared-cpu", "gil-on"; a backend entry's "python"; the run's "capacity"
#      (a rate search) and "findings" (the sentences the run told, harness/results/findings.py).
#      A version 3 file may lack any of them: each reads as absent.
#   5  the network as a dimension: a step's "rtt_ms" (the emulated link's round trip; null over
#      loopback) and "link" ({"rtt_ms", "jitter_ms", "loss", "bandwidth_bps", "measured_rtt_ms",
#      "measured_bandwidth_bps", "relay_cpu_percent"}; null over loopback); the flags "rtt-off"
#      and "relay-bound"; the scenario's "network".
SCHEMA_VERSION = 5


def _to_2(document: dict[str, Any]) -> None:
    """Version 1 ran closed loop only."""
    for step in document["steps"] if isinstance(document.get("steps"), (list, tuple)) else ():
        if isinstance(step, dict):
            step.setdefault("rate", None)
            step.setdefault("uncorrected", None)


def _to_3(document: dict[str, Any]) -> None:
    """Version 2's figures stay as they were; what it did not count is unknown, not zero."""


def _to_4(document: dict[str, Any]) -> None:
    """Version 3's later keys are optional: a step without them ran on unrecorded CPUs, not
    swept, sending the whole mix."""
    for step in document["steps"] if isinstance(document.get("steps"), (list, tuple)) else ():
        if isinstance(step, dict):
            step.setdefault("cores", None)
            step.setdefault("route", None)
            step.setdefault("runtime", None)


def _to_5(document: dict[str, Any]) -> None:
    """Every run before version 5 talked over loopback."""
    for step in document["steps"] if isinstance(document.get("steps"), (list, tuple)) else ():
        if isinstance(step, dict):
            step.setdefault("rtt_ms", None)
            step.setdefault("link", None)


# UPGRADES[v] brings a version v document to version v + 1.
UPGRADES = {1: _to_2, 2: _to_3, 3: _to_4, 4: _to_5}


def upgrade(document: dict[str, Any]) -> dict[str, Any]:
    """`document` (a results.json of a known version, which the caller checked) brought to
    SCHEMA_VERSION, in place; returned for convenience."""
    for version in range(document["version"], SCHEMA_VERSION):
        UPGRADES[version](document)
    document["version"] = SCHEMA_VERSION
    return document
