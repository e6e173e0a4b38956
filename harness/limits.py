"""The descriptor limit a scenario needs, raised before anything starts.

Every connection is a file descriptor on both sides: c10k's 10,000 idle connections need
more than the usual soft limit of 1,024. The orchestrator raises its own RLIMIT_NOFILE
(the hard limit too, when it may: root), and the backends and drivers it starts inherit it.
When the limit cannot reach what the scenario needs, the run says so before it starts and
records the limit, rather than letting connections fail with EMFILE mid-step.
"""

from __future__ import annotations

import resource
from dataclasses import dataclass

from harness.scenario import Scenario

# Descriptors beyond the connections: the interpreter, pipes, result files, epoll, logs.
HEADROOM = 256


@dataclass(frozen=True)
class FdLimit:
    needed: int
    soft: int
    hard: int
    warning: str | None  # why the limit stays short of what is needed, and what to do

    def to_dict(self) -> dict[str, object]:
        return {"needed": self.needed, "soft": self.soft, "hard": self.hard}


def needed_descriptors(scenario: Scenario) -> int:
    """The most one process holds at once: the driver, with every user and background socket."""
    users = max((*scenario.users, scenario.connections if scenario.rate else 0), default=0)
    return users + max(scenario.idle_connections, default=0) + scenario.slow_clients + HEADROOM


def ensure_fd_limit(needed: int) -> FdLimit:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    infinite = resource.RLIM_INFINITY
    if soft != infinite and soft < needed:
        target_hard = hard if hard == infinite or hard >= needed else needed
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (needed, target_hard))
        except (ValueError, OSError):  # raising the hard limit needs root (CAP_SYS_RESOURCE)
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            except (ValueError, OSError):
                pass
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    warning = None
    if soft != infinite and soft < needed:
        warning = (f"this scenario needs about {needed:,} file descriptors per process, but the limit is "
                   f"{soft:,} (hard limit {hard:,}) and only root can raise the hard one: run "
                   f"`ulimit -Hn {needed}` as root (or set nofile in /etc/security/limits.conf); "
                   f"past {soft:,}, connections fail with EMFILE and are counted as connect errors")
    return FdLimit(needed=needed, soft=soft if soft != infinite else needed, hard=hard if hard != infinite else needed,
                   warning=warning)
