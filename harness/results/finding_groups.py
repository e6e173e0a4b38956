"""Findings that say the same of several backends, told once (findings are a short list): the
backends that saturate at one level, in one sentence with ranges, and the backends whose USL
fit was skipped for one reason, in one sentence naming them. The rules
(harness.results.finding_rules) decide what holds for each backend; this module only tells
several of them together. A grouped finding's "backend" is its backends joined by ", ", its
figures keep each one's numbers ("by_backend"), and its caveat names whom each flag concerns.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from harness.results.finding_levels import Level, change, finding, rps, times
from harness.results.usl import MIN_R2, UslFit
from harness.results.words import counted, joined

# Backends saturating at one level are told in one sentence from this many on: two sentences
# read as easily as one with ranges; eight near-identical ones (cpu-bound) hide the rest.
SATURATION_GROUP_MIN = 3


@dataclass(frozen=True)
class Knee:
    """One backend's knee: the level it is at and the first later level that shows it, with
    the figures that make it one (finding_rules finds it only where all four were measured,
    goodput and p99 at the knee above zero)."""

    at: Level
    past: Level
    good: float  # goodput at the knee
    p99: float  # p99 (µs) at the knee
    later: float  # goodput past it
    p99_past: float  # p99 (µs) past it
    bound: bool  # p99_past is a lower bound


def knee_figures(knee: Knee) -> dict[str, Any]:
    """One backend's knee: goodput and p99 at it, and at the first later level that shows it."""
    return {"good_rps": knee.good, "p99_us": knee.p99, "past_users": knee.past.users, "past_good_rps": knee.later,
            "past_p99_us": knee.p99_past, "past_p99_lower_bound": knee.bound,
            "p99_ratio": round(knee.p99_past / knee.p99, 3), "throughput_change": round(knee.later / knee.good - 1, 4)}


def saturation_group(knees: Sequence[Knee]) -> dict[str, Any]:
    """One finding for backends whose knee is at one level: ranges of their goodput at it, of
    the later levels that show it, of how much higher p99 is there and of the throughput change."""
    at = knees[0].at
    names = [knee.at.backend for knee in knees]
    figures = {name: knee_figures(knee) for name, knee in zip(names, knees)}
    ratios = sorted((f["past_p99_us"] / f["p99_us"], f["past_p99_lower_bound"]) for f in figures.values())
    changes = sorted(f["past_good_rps"] / f["good_rps"] for f in figures.values())
    goods = sorted(f["good_rps"] for f in figures.values())
    past = sorted({f["past_users"] for f in figures.values()})
    idle = f" + {at.idle:,} idle" if at.idle else ""
    where = (f"at {counted(past[0], 'user', form=',')}{idle}" if len(past) == 1
             else f"by {past[0]:,} to {past[-1]:,} users{idle}")
    text = (f"{joined(names)} saturate at {at.label()} ({span(rps(goods[0]), rps(goods[-1]))} req/s): {where} "
            f"p99 is {span(times(*ratios[0]), times(*ratios[-1]))} higher for "
            f"{span(change(changes[0]), change(changes[-1]))} throughput")
    return finding("saturation", ", ".join(names), at, text, {"backends": names, "by_backend": figures},
                   members={name: (knee.at, knee.past) for name, knee in zip(names, knees)}, spread=True)


def usl_skip_kind(fit: UslFit) -> str:
    """What skipped fits share to be told together: a poor fit (each with its own R²), or
    the same reason word for word (3 levels where the fit needs 4, say)."""
    return "poor fit" if fit.r2 is not None else str(fit.reason)


def usl_skip_group(skipped: Sequence[tuple[str, Sequence[Level], UslFit, Mapping[str, Any]]], *,
                   everyone: bool) -> dict[str, Any]:
    """One finding for backends (name, levels measured, fit, figures) whose fit was skipped
    for one reason: "any backend" when it is every backend of the run (`everyone`)."""
    names = [name for name, *_ in skipped]
    fits = [fit for _, _, fit, _ in skipped]
    reason = str(fits[0].reason)
    if usl_skip_kind(fits[0]) == "poor fit":
        reason = f"poor fit (R² {joined([f'{fit.r2:.2f}' for fit in fits])} < {MIN_R2:g})"
    text = f"no USL fit for {'any backend' if everyone else joined(names)}: {reason}"
    left_out = [f"{name} at {joined([f'{n:,}' for n in figs['left_out_starved_users']])}"
                for name, _, _, figs in skipped if figs.get("left_out_starved_users")]
    if left_out:  # levels where users starved are not X(N) (finding_rules.scalability)
        text += f"; left out where users starved: {joined(left_out)} users"
    figures = {"ok": False, "reason": reason, "backends": names,
               "by_backend": {name: dict(figs) for name, _, _, figs in skipped}}
    # a fit made (a poor one) is drawn from its levels; one never made, from none of them
    members = {name: levels if fit.r2 is not None else () for name, levels, fit, _ in skipped}
    return finding("scalability", ", ".join(names), None, text, figures, members=members, spread=True)


def span(low: str, high: str) -> str:
    """'205 to 233', or one figure when both ends read the same."""
    return low if low == high else f"{low} to {high}"


def in_table_order(found: list[dict[str, Any]], backends: Sequence[str]) -> list[dict[str, Any]]:
    """Findings in the summary table's order of their (first) backend."""
    return sorted(found, key=lambda item: backends.index(item["backend"].split(", ")[0]))
