"""Reading a scenario file's TOML tables: typed values, durations and sweeps, and the one
error type, which names the file, the dotted key and the reason.

harness.scenario.load builds the Scenario from these; nothing here knows what a scenario is.
"""

from __future__ import annotations

import difflib
import functools
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, TypeVar

_BARE_SECONDS = re.compile(r"\d+(?:\.\d*)?|\.\d+")
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h)\s*")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_TYPE_NAMES = {bool: "a boolean", int: "an integer", float: "a float", str: "a string",
               list: "an array", dict: "a table"}

Number = TypeVar("Number", int, float)  # what a sweep holds: int counts or float seconds


class ScenarioError(Exception):
    """A scenario file that cannot be used: which file, which key, and why."""

    def __init__(self, *, file: str | Path, key: str, reason: str) -> None:
        super().__init__(str(file), key, reason)
        self.file, self.key, self.reason = str(file), key, reason

    def __reduce__(self) -> tuple[Any, ...]:  # keyword-only __init__ needs help to pickle
        return functools.partial(ScenarioError, file=self.file, key=self.key,
                                 reason=self.reason), ()

    def __str__(self) -> str:
        where = f"{self.file}: {self.key}" if self.key else self.file
        return f"{where}: {self.reason}"


def did_you_mean(name: str, names: Iterable[str]) -> str:
    """' (did you mean 'quick'?)' for the name closest to a misspelt one (difflib), else ""."""
    close = difflib.get_close_matches(name, list(names), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def parse_duration(value: str | int | float) -> float:
    """Seconds from "500ms", "10s", "2m", "1m30s", "1h", "2.5" or a number; never negative."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError(f"a duration is a string like '10s' or seconds, not {_show(value)}")
    if isinstance(value, str):
        text = value.strip()
        if _BARE_SECONDS.fullmatch(text):
            seconds = float(text)
        elif text and re.fullmatch(f"(?:{_DURATION_PART.pattern})+", text):
            parts = _DURATION_PART.findall(text)
            seconds = sum(float(number) * _UNIT_SECONDS[unit] for number, unit in parts)
        else:
            raise ValueError(f"bad duration {value!r}: write e.g. '500ms', '10s' or '1m30s'")
    else:
        seconds = float(value)
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"bad duration {value!r}: must be zero or more seconds")
    return seconds


@dataclass(frozen=True)
class _Table:
    """A TOML table being read, with the dotted prefix its errors are reported under."""

    file: str
    prefix: str
    data: dict[str, Any]

    def fail(self, name: str, reason: str) -> NoReturn:
        key = f"{self.prefix}.{name}" if self.prefix and name else self.prefix or name
        raise ScenarioError(file=self.file, key=key, reason=reason) from None

    def allow(self, *names: str) -> None:
        for name in self.data:
            if name not in names:
                self.fail(name, f"unknown key{did_you_mean(name, names)}; allowed: {', '.join(sorted(names))}")

    def value(self, name: str, kind: type, expected: str, *, default: Any) -> Any:
        value = self.data.get(name, default)
        if name in self.data and _wrong_type(value, kind):
            self.fail(name, f"must be {expected}; got {_show(value)}")
        return value

    def table(self, name: str, *, required: bool) -> _Table:
        if required and name not in self.data:
            self.fail(name, f"required: add a [{name}] table")
        data = self.value(name, dict, f"a table ([{name}])", default={})
        return _Table(file=self.file, prefix=f"{self.prefix}.{name}" if self.prefix else name,
                      data=data)

    def count(self, name: str, *, default: int, minimum: int) -> int:
        expected = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        value = self.value(name, int, expected, default=default)
        if value < minimum:
            self.fail(name, f"must be {expected}; got {value}")
        return value

    def duration(self, name: str, *, default: str, positive: bool) -> float:
        try:
            seconds = parse_duration(self.data.get(name, default))
        except ValueError as exc:
            self.fail(name, str(exc))
        if positive and seconds == 0:
            self.fail(name, "must be longer than zero")
        return seconds

    def sweep(self, name: str, *, kind: type[Number], what: str) -> tuple[Number, ...]:
        noun = "integer" if kind is int else "number"  # an int is a number, a bool neither
        expected = f"a non-empty array of positive {noun}s"
        values = self.value(name, list, f"{expected}, e.g. [1, 8, 32]", default=[])
        if name in self.data and not values:
            self.fail(name, f"empty sweep: must be {expected}")
        for i, value in enumerate(values):
            numeric = not _wrong_type(value, kind) or (kind is float and type(value) is int)
            if not numeric or not math.isfinite(value) or value <= 0:
                self.fail(f"{name}[{i}]", f"must be a positive {noun}; got {_show(value)}")
            if value in values[:i]:
                self.fail(name, f"lists the {what} {value} twice; each value is one step")
        return tuple(kind(v) for v in values)  # an int stays an int; a float sweep's ints become floats


def _wrong_type(value: Any, kind: type) -> bool:
    """True unless value is a kind; bool never counts as int (TOML keeps them apart)."""
    return isinstance(value, bool) is not (kind is bool) or not isinstance(value, kind)


def _show(value: Any) -> str:
    kind = next((n for t, n in _TYPE_NAMES.items() if isinstance(value, t)),
                type(value).__name__)
    text = str(value).lower() if isinstance(value, bool) else repr(value)
    return f"{text[:40]} ({kind})"
