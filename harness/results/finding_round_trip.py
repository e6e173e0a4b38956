"""The round-trip finding (kind "round-trip"): over an emulated link, which models kept up with
their users as the round trip grew, and which hit a cap.

By Little's law N closed-loop users, each waiting a round trip per request, ask for at most
N / RTT requests a second. At the run's largest round trip and highest user level, a backend
that answered at least KEPT_UP_SHARE of that kept up: its model answers every connection at
once; one below CAPPED_SHARE hit a cap: it serves a connection at a time, or a pool's few,
and connections / RTT is all it can make. One sentence for those that kept up, one per
backend that hit a cap; nothing for a run without a swept link.
"""

from __future__ import annotations

from typing import Any

from harness.results.finding_levels import Level, finding, rps, share
from harness.results.finding_rules import RunView
from harness.results.words import counted, joined

KEPT_UP_SHARE = 0.9  # a closed loop's cycle adds the driver's own gap to the round trip
CAPPED_SHARE = 0.5


def round_trip(run: RunView) -> list[dict[str, Any]]:
    """At the largest round trip: who kept up with users / RTT, and who hit a cap."""
    shaped = [level for level in run.levels if level.closed and level.reps[0].rtt_ms is not None]
    rtts = {rtt for level in shaped if (rtt := level.reps[0].rtt_ms) is not None}
    if len(rtts) < 2 or not max(rtts):  # no sweep: nothing moved away
        return []
    far = max(rtts)
    users = max(level.users for level in shaped if level.reps[0].rtt_ms == far)
    at: dict[str, Level] = {level.reps[0].without_rtt: level for level in shaped
                            if level.reps[0].rtt_ms == far and level.users == users}
    bound = users / (far / 1000)
    found = []
    kept = {name: level for name, level in at.items() if (level.good_rps or 0.0) >= KEPT_UP_SHARE * bound}
    if kept:
        names = joined(list(kept))
        figures = joined([rps(level.good_rps or 0.0) for level in kept.values()])
        text = (f"{counted(users, 'user')} a {far:g} ms round trip away ask for at most {rps(bound)} req/s (users / round trip, "
                f"Little's law), and {names} kept up ({figures} good req/s)")
        found.append(finding("round-trip", ", ".join(kept), next(iter(kept.values())), text,
                             {"rtt_ms": far, "users": users, "bound_rps": round(bound, 1),
                              "good_rps": {name: level.good_rps for name, level in kept.items()}},
                             members={name: (level,) for name, level in kept.items()}))
    for name, level in at.items():
        good = level.good_rps or 0.0
        if good >= CAPPED_SHARE * bound:
            continue
        connections = good * far / 1000
        text = (f"{name} at a {far:g} ms round trip: {rps(good)} good req/s of the {rps(bound)} that {counted(users, 'user')} "
                f"can ask for ({share(good / bound)}): as if it answered {connections:.1f} connections at a time "
                f"(good req/s x round trip), a cap the round trip exposes")
        found.append(finding("round-trip", name, level, text,
                             {"rtt_ms": far, "users": users, "bound_rps": round(bound, 1), "good_rps": good,
                              "connections_at_once": round(connections, 2)}, drawn_from=(level,)))
    return found
