"""A count in words, its noun agreeing with it: '1 user', '8 users', '1 CPU'. The one owner
of the plural, for tables, findings, chart titles and the command line alike."""

from __future__ import annotations


def counted(count: int, noun: str, *, form: str = "") -> str:
    """`count` formatted with `form` (a format spec: "," for '1,000'), then `noun`, with an
    's' unless the count is one."""
    return f"{count:{form}} {noun}{'' if count == 1 else 's'}"
