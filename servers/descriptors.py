"""A process's descriptor limit, raised for the sockets it will hold.

Every connection is a file descriptor, and the usual soft limit of 1,024 would be hit long
before a model's real limits (c10k holds 10,000 idle connections). The one owner of this
idea for the whole project: a server raises its own to the hard limit (as Go and nginx
do); the harness's orchestrator and drivers raise theirs to what a run needs.
"""

from __future__ import annotations

import resource


def raise_fd_limit(needed: int | None = None) -> tuple[int, int]:
    """Soft RLIMIT_NOFILE up to `needed` (None: up to the hard limit), and the hard limit
    too when it may (root); returns (soft, hard) after the change, which may still be short
    of `needed`. A limit that cannot move is left alone."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    infinite = resource.RLIM_INFINITY
    if needed is None:
        needed = hard
    if soft == infinite or (needed != infinite and soft >= needed):
        return soft, hard
    target_hard = hard if hard == infinite or (needed != infinite and hard >= needed) else needed
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, target_hard))
    except (ValueError, OSError):  # raising the hard limit needs root (CAP_SYS_RESOURCE)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass
    return resource.getrlimit(resource.RLIMIT_NOFILE)
