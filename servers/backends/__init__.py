"""The backend registry: flag name -> where the class lives, what it is, and its variants.

Modules load lazily, so an optional dependency (uvloop) costs nothing until asked for.
Every test that runs "against every backend" takes its list from `variants()`, so a new
backend registered here is covered by all of them without editing a test.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from importlib import import_module
from typing import Protocol

from servers.config import POOL_THREADS, ServerConfig


@dataclass(frozen=True)
class Variant:
    """A setting that changes the concurrency model, as tests and charts run it."""

    flags: tuple[str, ...]
    at_once: int | None = None  # requests answered at once (None: as many as arrive)
    # The kernel hashes each connection to one of `at_once` workers, busy or not (forking
    # --reuseport): two connections may wait on one worker while another idles, so only one
    # is sure to be answered at once.
    hashed: bool = False
    min_python: tuple[int, int] | None = None  # the oldest Python it runs on (None: any we support)
    needs: str | None = None  # a module beyond the standard library it imports (None: none)


@dataclass(frozen=True)
class Backend:
    target: str  # "module:Class"
    description: str  # one line, for --list and --help
    at_once: int | None = None  # requests answered at once by the plain model
    variants: dict[str, Variant] = field(default_factory=dict)  # id suffix -> variant
    min_python: tuple[int, int] | None = None  # the oldest Python it runs on (None: any we support)
    needs: str | None = None  # a module beyond the standard library it imports (None: none)


BACKENDS: dict[str, Backend] = {
    "iterative": Backend("servers.backends.iterative:IterativeServer",
                         "one connection at a time on the main thread; others wait in the backlog", at_once=1),
    "threaded": Backend("servers.backends.threaded:ThreadedServer",
                        "a thread per connection (--threads N: a bounded pool)",
                        variants={"pool4": Variant(("--threads", "4"), at_once=4)}),
    "forking": Backend("servers.backends.forking:ForkingServer",
                       "a process per connection, capped and reaped (--workers N: pre-fork)",
                       variants={"prefork2": Variant(("--workers", "2"), at_once=2),
                                 "reuseport2": Variant(("--workers", "2", "--reuseport"), at_once=2, hashed=True)}),
    "selectors": Backend("servers.backends.selectors_loop:SelectorsServer",
                         "one thread, non-blocking sockets, a hand-written selectors event loop"),
    "asyncio": Backend("servers.backends.asyncio_server:AsyncioServer",
                       "an asyncio.Protocol server on one event loop (--loop uvloop)"),
    "gevent": Backend("servers.backends.gevent_server:GeventServer",
                      "a greenlet per connection on gevent's cooperative sockets, running the blocking loop",
                      needs="gevent"),
    "selectors-pool": Backend("servers.backends.selectors_pool:SelectorsPoolServer",
                              "one selector thread waits on every connection; a pool of --threads N "
                              f"(default {POOL_THREADS}) answers complete requests", at_once=POOL_THREADS,
                              variants={"threads2": Variant(("--threads", "2"), at_once=2)}),
    "interpreters": Backend("servers.backends.interpreters:InterpretersServer",
                            "sub-interpreters in one process, each with its own GIL and a thread per connection "
                            "(--interpreters N, default one per CPU; Python 3.13+)", min_python=(3, 13)),
}


def variants() -> dict[str, Variant]:
    """Every backend and each of its variants: "threaded", "threaded-pool4", ... -> how to run it."""
    out: dict[str, Variant] = {}
    for name, backend in BACKENDS.items():
        out[name] = Variant(("--backend", name), backend.at_once, min_python=backend.min_python,
                            needs=backend.needs)
        for suffix, variant in backend.variants.items():
            out[f"{name}-{suffix}"] = replace(variant, flags=("--backend", name, *variant.flags),
                                              min_python=variant.min_python or backend.min_python,
                                              needs=variant.needs or backend.needs)
    return out


class Server(Protocol):
    def __init__(self, config: ServerConfig) -> None: ...

    def serve(self) -> None:
        """Bind, print the startup line, serve until SIGTERM/SIGINT, then shut down."""


def load_backend(name: str) -> type[Server]:
    if name not in BACKENDS:
        raise KeyError(f"unknown backend {name!r}; choose from: {', '.join(BACKENDS)}")
    module, _, attr = BACKENDS[name].target.partition(":")
    server: type[Server] = getattr(import_module(module), attr)
    return server
