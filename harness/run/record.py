"""What a run records about itself as it goes, and about what stopped it: results.json
written after every change, the events, and where a fault or a Ctrl+C found the run
(Run in harness.run.runner is a RunRecord; harness.run.command turns these into the one
line a user reads)."""

from __future__ import annotations

import signal
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from harness.results.store import RESULTS_FILE, ResultsError, write_results
from harness.run.plan import Plan, PlannedStep


class BackendFailed(Exception):
    """The backend or its driver died mid-run; `kind` is the event recorded for it."""

    def __init__(self, message: str, *, kind: str = "backend-failed") -> None:
        super().__init__(message)
        self.kind = kind


class RunRecord:
    """results, saved atomically; `doing`, `backend` and `step` say where the run is."""

    results: dict[str, Any]
    plan: Plan
    run_dir: Path
    doing: str
    backend: str | None
    step: dict[str, Any] | None
    stopped_at: tuple[str, str | None, dict[str, Any] | None] | None
    saved_steps: int

    def save(self) -> None:
        try:
            write_results(self.run_dir, self.results)
        except ResultsError:
            self.stop_here()
            raise
        self.saved_steps = len(self.results["steps"])

    def stop_here(self) -> None:
        """Note where the run is as a fault stops it, before the cleanup on the way out moves
        on (the first fault counts: a Ctrl+C calls this from its signal handler)."""
        if self.stopped_at is None:
            self.stopped_at = (self.doing, self.backend, self.step)

    def event(self, kind: str, detail: str, *, backend: str | None = None,
              step: dict[str, Any] | None = None) -> None:
        """Record what happened to the run (see EVENT_KINDS); written with the next save."""
        self.results["events"].append({"t": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
                                       "kind": kind, "backend": backend, "step": step,
                                       "detail": detail.splitlines()[0] if detail else ""})

    def _unfinished(self, status: str, why: str, backend: str | None, step: dict[str, Any] | None) -> None:
        """Every backend not done with its rounds ends `status`: the one running at `step`,
        the others between two of their rounds."""
        for name, entry in self.results["backends"].items():
            if entry.get("status") != "running":
                continue
            if name == backend:
                entry.update(status=status, error=why, step=step)
            else:
                done = entry.get("rounds_done", 0)
                entry.update(status=status, error=f"{why}, after {done} of {self.plan.rounds} rounds", step=None)

    def interrupted(self, signame: str) -> str:
        """A Ctrl+C (or SIGTERM): record where it found the run, and what was running as
        interrupted; returns where ("during selectors users=4 rep 1/2")."""
        doing, backend, step = self.stopped_at or (self.doing, self.backend, self.step)
        self._unfinished("interrupted", f"interrupted ({signame}) {doing}", backend, step)
        self.event("interrupted", f"{signame} {doing}", backend=backend, step=step)
        return doing

    def write_failed(self, error: ResultsError) -> str:
        """results.json cannot be written: the run stops. Record why (one last atomic try, in
        case the space came back) and return the one line that says it."""
        reason = getattr(error, "reason", None) or str(error)
        measured, kept = len(self.results["steps"]), self.saved_steps
        doing, backend, step = self.stopped_at or (self.doing, self.backend, self.step)
        self._unfinished("failed", f"stopped: results.json could not be written ({reason})", backend, step)
        self.event("write-failed", f"cannot write results.json ({reason}) {doing}", backend=backend, step=step)
        self.results["status"] = "failed"
        try:
            self.save()
            held = f"all {plural_steps(measured)} and this error are in {self.run_dir / RESULTS_FILE} after all"
        except ResultsError:
            held = f"{self.run_dir / RESULTS_FILE} holds the {plural_steps(kept)} written before"
        return f"concurbench: error: cannot write results ({reason}): stopped after {plural_steps(measured)}; {held}"

    def _at(self, backend: str, steps: list[PlannedStep], done: int, phase: str) -> str:
        """The run is in the step after `done` of `backend`'s steps this round (its warm-up
        or its window); returns it as a phrase: "during selectors users=4 rep 1/2"."""
        if done >= len(steps):
            self.step, self.doing = None, f"while {backend}'s driver was stopping"
            return self.doing
        level, rep = steps[done].level, steps[done].repetition
        warmup = phase == "warmup"
        self.step = {"users": level.users, "rate": level.rate, "idle_connections": level.idle_connections,
                     "repetition": rep, "phase": "warm-up" if warmup else "measure"}
        where = ("probe" if rep < 0 else f"rep {rep + 1}/{self.plan.rounds}") + (" warm-up" if warmup else "")
        self.doing = f"during {backend} {level.name} {where}"
        return self.doing


def first_line(error: object) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def plural_steps(count: int) -> str:
    return f"{count} step" + ("" if count == 1 else "s")


def ms_text(us: float | None) -> str:
    """Microseconds as progress says them: "1.25 ms", or "-"."""
    return "-" if us is None else f"{us / 1000:.2f} ms"


def safe_name(name: str) -> str:
    """A backend's name as part of a file name."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)[:60]


def exit_words(status: int | None) -> str:
    """An exit status as words: "status 1", "killed by SIGKILL"."""
    if status is not None and status < 0:
        try:
            return f"killed by {signal.Signals(-status).name}"
        except ValueError:
            return f"killed by signal {-status}"
    return f"status {status}"
