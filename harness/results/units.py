"""Latencies are recorded in µs (measurement rule 2) and shown in ms: the one conversion, for a
chart's axis (`ms`) and for text (`ms_text`), so every table, sentence and report agrees."""

from __future__ import annotations

import math


def ms(us: float | None) -> float:
    """µs as ms for a chart; NaN (a gap in the line) where there is no value."""
    return math.nan if us is None else us / 1000


def ms_text(us: float | None, *, form: str = ",.2f", bound: bool = False, mark: str = ">=", unit: str = "",
            missing: str = "-") -> str:
    """µs as ms in words: `form` is the number's format spec, `bound` marks a lower bound with
    `mark` (">=" in plain text, "≥" in HTML), `unit` follows the number (" ms"), and `missing`
    stands for a value not recorded."""
    if us is None:
        return missing
    return f"{mark if bound else ''}{us / 1000:{form}}{unit}"
