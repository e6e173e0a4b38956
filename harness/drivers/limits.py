"""A process's descriptor limit, raised for the sockets it will hold.

Every connection is a file descriptor: c10k's 10,000 idle connections need more than the
usual soft limit of 1,024. The orchestrator raises its own before a run, and every backend
and driver it starts inherits it (harness.run.limits); a driver raises its own too, for
when it runs without one (a worker on another machine, a test).
"""

from __future__ import annotations

import resource


def raise_fd_limit(needed: int) -> tuple[int, int]:
    """Soft RLIMIT_NOFILE up to `needed` (the hard limit too, when it may: root); returns
    (soft, hard) after the change, which may still be short of `needed`."""
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
    return soft, hard
