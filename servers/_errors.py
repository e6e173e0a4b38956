"""The one error type of the protocol core. servers.http re-exports it."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from servers._messages import Request


class ProtocolError(Exception):
    """A request the server must refuse: `status` to answer, `close` if framing is lost.

    `requests` holds the requests completed earlier in the same `feed()` call: the
    caller answers those first, then the error. `head` is true when the refused request
    is known to be a HEAD: its answer must then carry no content (RFC 9110 9.3.2), or a
    client reading the next answer on the connection would take that content for it.
    """

    def __init__(self, status: int, reason: str, *, close: bool = True) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason
        self.close = close
        self.head = False
        self.requests: list[Request] = []
