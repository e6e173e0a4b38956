"""What stops a backend or a run, and how the record says it: a backend or its driver dying
mid-run (BackendFailed: recorded, and the run goes on with the next backend), nothing left
to measure (RunFailed: the run stops), and what a session of a started backend keeps for
the record of its failure."""

from __future__ import annotations

import signal
from dataclasses import dataclass

from harness.results.words import counted


class BackendFailed(Exception):
    """The backend or its driver died mid-run; `kind` is the event recorded for it."""

    def __init__(self, message: str, *, kind: str = "backend-failed") -> None:
        super().__init__(message)
        self.kind = kind


class RunFailed(Exception):
    """Nothing can be measured (the /cpu calibration failed): the run stops."""


@dataclass
class Session:
    """One start of a backend, as its end is recorded: whether it failed, and the last
    stderr of its last driver."""

    failed: bool = False
    driver_stderr: str = ""


def first_line(error: object) -> str:
    """An error's first line (its type's name if it has none): what one line of output holds."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def plural_steps(count: int) -> str:
    return counted(count, "step")


def exit_words(status: int | None) -> str:
    """An exit status as words: "status 1", "killed by SIGKILL"."""
    if status is not None and status < 0:
        try:
            return f"killed by {signal.Signals(-status).name}"
        except ValueError:
            return f"killed by signal {-status}"
    return f"status {status}"
