"""The backend registry: flag name -> (import string, one-line description).

Modules load lazily, so an optional dependency (uvloop) costs nothing until asked for.
"""

from __future__ import annotations

from importlib import import_module
from typing import Protocol

from servers.config import ServerConfig

BACKENDS: dict[str, tuple[str, str]] = {
    "iterative": ("servers.backends.iterative:IterativeServer",
                  "one connection at a time on the main thread; others wait in the backlog"),
    "threaded": ("servers.backends.threaded:ThreadedServer",
                 "a thread per connection (--threads N: a bounded pool)"),
    "forking": ("servers.backends.forking:ForkingServer",
                "a process per connection, capped and reaped (--workers N: pre-fork)"),
    "selectors": ("servers.backends.selectors_loop:SelectorsServer",
                  "one thread, non-blocking sockets, a hand-written selectors event loop"),
    "asyncio": ("servers.backends.asyncio_server:AsyncioServer",
                "an asyncio.Protocol server on one event loop (--loop uvloop)"),
}


class Server(Protocol):
    def __init__(self, config: ServerConfig) -> None: ...

    def serve(self) -> None:
        """Bind, print the startup line, serve until SIGTERM/SIGINT, then shut down."""


def load_backend(name: str) -> type[Server]:
    if name not in BACKENDS:
        raise KeyError(f"unknown backend {name!r}; choose from: {', '.join(BACKENDS)}")
    module, _, attr = BACKENDS[name][0].partition(":")
    return getattr(import_module(module), attr)
