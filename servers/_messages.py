"""The messages: a request's header fields, a parsed request, a response to build.

Plain data with no behaviour beyond lookup, and no imports from the package, so the
parser, the builder, the error type and the app all depend on this module and it on none
of them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import final

TEXT_PLAIN = "text/plain; charset=utf-8"


class Headers:
    """Header fields in their original order and case, with case-insensitive lookup."""

    __slots__ = ("_fields", "_index")

    def __init__(self, fields: list[tuple[bytes, bytes]], index: dict[bytes, bytes]) -> None:
        self._fields = fields
        self._index = index  # lowercased name -> value (repeats joined with ", ")

    @classmethod
    def from_fields(cls, fields: list[tuple[bytes, bytes]]) -> Headers:
        index: dict[bytes, bytes] = {}
        for name, value in fields:
            key = name.lower()
            index[key] = index[key] + b", " + value if key in index else value
        return cls(fields, index)

    def get(self, name: str | bytes, default: bytes | None = None) -> bytes | None:
        key = name.encode("latin-1") if isinstance(name, str) else name
        return self._index.get(key.lower(), default)

    def __contains__(self, name: object) -> bool:
        if isinstance(name, str):
            name = name.encode("latin-1")
        return isinstance(name, bytes) and name.lower() in self._index

    def __iter__(self) -> Iterator[tuple[bytes, bytes]]:
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Headers) and self._fields == other._fields

    def __repr__(self) -> str:
        return f"Headers({self._fields!r})"


@final  # so that `type(item) is not Request` narrows to the other kind (a ProtocolError)
@dataclass(slots=True)
class Request:
    method: str
    target: str
    path: str
    query: str
    version: str
    headers: Headers
    body: bytes
    keep_alive: bool


class Pieces:
    """A body made as it is sent, a piece at a time: its length is known before its bytes, so
    a 64 MiB answer costs a piece of memory, not 64 MiB, however slowly the client reads."""

    __slots__ = ("length", "make")

    def __init__(self, length: int, make: Callable[[], Iterator[bytes]]) -> None:
        self.length = length
        self.make = make  # a new iterator over the pieces each time it is called

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator[bytes]:
        return self.make()

    def __repr__(self) -> str:
        return f"Pieces({self.length})"


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes | Pieces = b""
    content_type: str = TEXT_PLAIN
    headers: tuple[tuple[str, str], ...] = ()
