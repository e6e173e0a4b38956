"""Counts and lists in words: '1 user', '8 users'; 'a, b and c'. The one owner of the plural
and of a list in a sentence, for tables, findings, chart titles and the command line alike."""

from __future__ import annotations

from collections.abc import Sequence


def counted(count: int, noun: str, *, form: str = "") -> str:
    """`count` formatted with `form` (a format spec: "," for '1,000'), then `noun`, with an
    's' unless the count is one."""
    return f"{count:{form}} {noun}{'' if count == 1 else 's'}"


def joined(texts: Sequence[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    return texts[0] if len(texts) == 1 else ", ".join(texts[:-1]) + " and " + texts[-1]
