"""The scalability finding: the Universal Scalability Law (harness.results.usl) fitted to each
backend's closed-loop goodput against users, told per backend; the fits skipped for one
reason told together (harness.results.finding_groups). A sweep of fewer user levels than
the fit needs is no finding: the law cannot apply to the run's shape, whatever it measured,
so the run says so once, as a note (shape_note)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from harness.results.finding_groups import in_table_order, usl_skip_group, usl_skip_kind
from harness.results.finding_levels import Level, finding
from harness.results.finding_rules import RunView
from harness.results.words import counted, joined
from harness.results.model import Finding
from harness.results.usl import MIN_LEVELS, PARAMETERS, UslFit, fit_usl


def scalability(run: RunView) -> list[dict[str, Any]]:
    """Per backend, the Universal Scalability Law fitted to its closed-loop goodput against
    users (harness.results.usl); backends whose fit was skipped for one reason, told together.
    A level where users starved measured the users answered, not the N the law divides the
    work among: it is left out of the fit, and the sentence says so."""
    found: list[dict[str, Any]] = []
    skipped: dict[str, list[tuple[str, list[Level], UslFit, dict[str, Any]]]] = {}
    everywhere: list[str] = []  # backends whose users starved at every level
    sweeps = [[level for level in sweep if level.good_rps is not None] for sweep in run.sweeps()]
    sweeps = [measured for measured in sweeps if measured]
    for every in [sweep for sweep in sweeps if _fits_shape(sweep)]:
        backend = every[0].backend
        measured = [level for level in every if not level.row.starved]
        starved = [level.users for level in every if level.row.starved]
        if not measured:
            everywhere.append(backend)
            continue
        fit = fit_usl([level.users for level in measured], [level.good_rps for level in measured])
        figures: dict[str, Any] = dict(fit.to_dict())
        if starved:
            figures["left_out_starved_users"] = starved
        if every[0].idle:
            figures["idle_connections"] = every[0].idle
        if not fit.ok:
            skipped.setdefault(usl_skip_kind(fit), []).append((backend, measured, fit, figures))
            continue
        sentence = fit.sentence(backend) + (f"; {_left_out(starved)}" if starved else "")
        found.append(finding("scalability", backend, None, sentence, figures, drawn_from=measured, spread=True))
    for group in skipped.values():
        if len(group) > 1:
            found.append(usl_skip_group(group, everyone=len(group) == len(sweeps)))
            continue
        (backend, measured, fit, figures), = group
        left_out = figures.get("left_out_starved_users")  # the users of levels left out, as above
        sentence = fit.sentence(backend) + (f"; {_left_out(left_out)}" if left_out else "")
        # a fit made (a poor one) is drawn from the levels; one never made, from none of them
        found.append(finding("scalability", backend, None, sentence, figures,
                             drawn_from=measured if fit.r2 is not None else (), spread=True))
    if everywhere:
        text = f"no USL fit for {joined(everywhere)}: users starved at every level, so none measured X(N)"
        found.append(finding("scalability", ", ".join(everywhere), None, text,
                             {"backends": everywhere, "ok": False, "reason": "users starved at every level"}))
    return in_table_order(found, run.backends())


def _left_out(users: Sequence[int]) -> str:
    """"32 and 128 users left out: users starved there", for a USL sentence."""
    return f"{joined([f'{n:,}' for n in users])} {'user' if list(users) == [1] else 'users'} left out: users starved there"


def _fits_shape(sweep: Sequence[Level]) -> bool:
    """Whether the sweep has the user levels the fit needs (its starved levels count: they
    are left out for what they measured, not for the run's shape)."""
    return len({level.users for level in sweep}) >= MIN_LEVELS


def out_of_shape(run: RunView) -> dict[str, list[int]]:
    """The backends (series) none of whose sweeps has the user levels a fit needs, each with
    its levels' users: the law cannot apply to them."""
    sweeps: dict[str, list[list[Level]]] = {}
    for sweep in run.sweeps():
        sweeps.setdefault(sweep[0].backend, []).append(sweep)
    return {backend: sorted({level.users for sweep in found for level in sweep})
            for backend, found in sweeps.items() if not any(_fits_shape(sweep) for sweep in found)}


def cannot_apply(finding: Finding, run: RunView) -> bool:
    """Whether a stored finding is a USL fit skipped for a shape the law cannot apply to
    (a run recorded before such fits were left out of the findings)."""
    if finding.kind != "scalability" or finding.figures.get("ok", True):
        return False
    named = finding.figures.get("backends") or [finding.backend]
    return set(named) <= set(out_of_shape(run))


def shape_note(run: RunView) -> str | None:
    """Why the run has no USL fit where its shape rules one out, in a sentence; None where every
    backend swept enough user levels."""
    short = out_of_shape(run)
    if not short:
        return None
    shapes = {tuple(users) for users in short.values()}
    if len(shapes) == 1:
        users = list(shapes.pop())
        swept = f"{counted(len(users), 'user level')} ({joined([f'{n:,}' for n in users])})"
    else:
        swept = "fewer user levels"
    who = "this run" if len(short) == len(run.backends()) else joined(list(short))
    return (f"No Universal Scalability Law fit: {who} swept {swept}, and the fit has {PARAMETERS} parameters, "
            f"so it needs at least {MIN_LEVELS} levels.")
