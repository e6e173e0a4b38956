"""Fixtures: every backend variant as a live server, servers started with custom flags, and
a client on a fresh connection. What they are built from is in support.py."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from support import VARIANTS, Client, LiveServer


@pytest.fixture(scope="module", params=list(VARIANTS), ids=list(VARIANTS))
def server(request: pytest.FixtureRequest) -> Iterator[LiveServer]:
    """One server per backend variant, shared by the tests of a module."""
    live = LiveServer(VARIANTS[request.param]).start()
    live.variant = request.param  # type: ignore[attr-defined]
    yield live
    live.kill()


@pytest.fixture
def start_server() -> Iterator:
    """Start servers with custom flags; all are killed at the end of the test."""
    started: list[LiveServer] = []

    def start(*args: str, port: int = 0, preexec: Callable[[], None] | None = None) -> LiveServer:
        live = LiveServer(tuple(args), port=port, preexec=preexec).start()
        started.append(live)
        return live

    yield start
    for live in started:
        live.kill()


@pytest.fixture
def client(server: LiveServer) -> Iterator[Client]:
    c = Client(server.connect())
    yield c
    c.close()
