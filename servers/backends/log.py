"""The server's log: one line per event, on stderr, never stdout (stdout carries only the
startup line the launcher reads)."""

from __future__ import annotations

import sys


def log(message: str) -> None:
    sys.stderr.write(f"concurbench-server: {message}\n")
    sys.stderr.flush()
