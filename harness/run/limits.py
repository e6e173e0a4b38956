"""The descriptor limit a run needs, raised before anything starts.

The orchestrator raises its own RLIMIT_NOFILE (with servers.descriptors.raise_fd_limit,
the project's one owner of that), and the backends and drivers it starts inherit it. When the limit cannot reach what the plan needs
(harness.run.plan.needed_descriptors), the run says so before it starts and records the
limit, rather than letting connections fail with EMFILE mid-step.
"""

from __future__ import annotations

import resource
from dataclasses import dataclass

from servers.descriptors import raise_fd_limit


@dataclass(frozen=True)
class FdLimit:
    needed: int
    soft: int
    hard: int
    warning: str | None  # why the limit stays short of what is needed, and what to do

    def to_dict(self) -> dict[str, object]:
        return {"needed": self.needed, "soft": self.soft, "hard": self.hard}


def ensure_fd_limit(needed: int) -> FdLimit:
    soft, hard = raise_fd_limit(needed)
    infinite = resource.RLIM_INFINITY
    warning = None
    if soft != infinite and soft < needed:
        warning = (f"this scenario needs about {needed:,} file descriptors per process, but the limit is "
                   f"{soft:,} (hard limit {hard:,}) and only root can raise the hard one: run "
                   f"`ulimit -Hn {needed}` as root (or set nofile in /etc/security/limits.conf); "
                   f"past {soft:,}, connections fail with EMFILE and are counted as connect errors")
    return FdLimit(needed=needed, soft=soft if soft != infinite else needed, hard=hard if hard != infinite else needed,
                   warning=warning)
