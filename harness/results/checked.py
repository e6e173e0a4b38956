"""Reading one JSON object of a results document with its types checked.

A value of the wrong type is refused where it is read, with the file, the key's full path
(`steps[3].server.cpu_percent`) and the reason, as a ResultsError: never a traceback from deep
inside a chart. Missing optional values read as None (or empty), which the model means as
"not measured".
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, TypeVar

from harness.results.store import ResultsError

_MISSING: Any = object()
T = TypeVar("T")


def _kind(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


class Checked:
    """One JSON object, at `where` in the document read from `source`."""

    def __init__(self, data: Mapping[str, Any], where: str, source: str) -> None:
        self.data, self.where, self.source = data, where, source

    def error(self, key: str, reason: str) -> ResultsError:
        return ResultsError(f"{self.source}: {self.where}{key}: {reason}")

    def keys(self) -> list[str]:
        return list(self.data)

    def _get(self, key: str, default: Any) -> Any:
        value = self.data.get(key)
        if value is None:
            if default is _MISSING:
                raise self.error(key, "missing" if key not in self.data else "must not be null")
            return default
        return value

    def integer(self, key: str, *, default: Any = _MISSING) -> int:
        value = self._get(key, default)
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise self.error(key, f"must be an integer, not {_kind(value)}")
        return int(value)

    def opt_int(self, key: str) -> int | None:
        return None if self.data.get(key) is None else self.integer(key)

    def number(self, key: str, *, default: Any = _MISSING) -> float:
        value = self._get(key, default)
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise self.error(key, f"must be a number, not {_kind(value)}")
        return value if isinstance(value, (int, float)) else float(value)

    def opt_num(self, key: str) -> float | None:
        return None if self.data.get(key) is None else self.number(key)

    def text(self, key: str, *, default: Any = _MISSING) -> str:
        value = self._get(key, default)
        if not isinstance(value, str):
            raise self.error(key, f"must be a string, not {_kind(value)}")
        return value

    def opt_str(self, key: str) -> str | None:
        return None if self.data.get(key) is None else self.text(key)

    def opt_bool(self, key: str) -> bool | None:
        value = self.data.get(key)
        if value is not None and not isinstance(value, bool):
            raise self.error(key, f"must be true or false, not {_kind(value)}")
        return value

    def _list(self, key: str) -> Sequence[Any]:
        value = self.data.get(key)
        if value is None:
            return ()
        if not isinstance(value, (list, tuple)):  # a tuple: the orchestrator's document, before JSON
            raise self.error(key, f"must be a list, not {_kind(value)}")
        return value

    def ints(self, key: str) -> list[int]:
        values = self._list(key)
        for i, value in enumerate(values):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise self.error(f"{key}[{i}]", f"must be an integer, not {_kind(value)}")
        return [int(value) for value in values]

    def strs(self, key: str) -> list[str]:
        values = self._list(key)
        for i, value in enumerate(values):
            if not isinstance(value, str):
                raise self.error(f"{key}[{i}]", f"must be a string, not {_kind(value)}")
        return list(values)

    def opt_sub(self, key: str) -> Checked | None:
        value = self.data.get(key)
        if value is None:
            return None
        if not isinstance(value, Mapping):
            raise self.error(key, f"must be an object, not {_kind(value)}")
        return Checked(value, f"{self.where}{key}.", self.source)

    def optional(self, key: str, make: Callable[[Checked], T]) -> T | None:
        """`make` of the object at `key`, or None where there is none."""
        sub = self.opt_sub(key)
        return None if sub is None else make(sub)

    def items(self, key: str) -> list[Checked]:
        subs = []
        for i, value in enumerate(self._list(key)):
            if not isinstance(value, Mapping):
                raise self.error(f"{key}[{i}]", f"must be an object, not {_kind(value)}")
            subs.append(Checked(value, f"{self.where}{key}[{i}].", self.source))
        return subs

    def mapping(self, key: str) -> dict[str, Checked]:
        """An object of objects (the backends by name)."""
        sub = self.opt_sub(key)
        if sub is None:
            return {}
        return {name: sub.opt_sub(name) or Checked({}, f"{sub.where}{name}.", self.source) for name in sub.keys()}

    def counts(self, key: str, names: Sequence[str]) -> dict[str, int]:
        sub = self.opt_sub(key)
        return {} if sub is None else {name: sub.integer(name) for name in names if sub.data.get(name) is not None}

    def opt_counts(self, key: str) -> dict[str, int] | None:
        sub = self.opt_sub(key)
        return None if sub is None else {name: sub.integer(name) for name in sub.keys()}

    def free(self, key: str) -> Mapping[str, Any]:
        """An object whose contents are its writer's own (metadata, the scenario as recorded)."""
        sub = self.opt_sub(key)
        return MappingProxyType({}) if sub is None else sub.data
