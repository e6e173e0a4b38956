"""Fixtures: every backend variant as a live server on each interpreter, servers started with
custom flags, a client on a fresh connection, and waits run side by side. What they are built
from is in support.py."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from support import Client, LiveServer, ServerSpec, server_specs, side_by_side


@pytest.fixture(scope="module", params=server_specs())
def server(request: pytest.FixtureRequest) -> Iterator[LiveServer]:
    """One server per backend variant and interpreter, shared by the tests of a module."""
    spec: ServerSpec = request.param
    live = spec.start()
    yield live
    live.kill()


@pytest.fixture
def start_server() -> Iterator:
    """Start servers with custom flags; all are killed at the end of the test."""
    started: list[LiveServer] = []

    def start(*args: str, port: int = 0, preexec: Callable[[], None] | None = None,
              python: str = sys.executable) -> LiveServer:
        live = LiveServer(tuple(args), port=port, preexec=preexec, python=python).start()
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


@pytest.fixture(scope="module")
def _side_by_side_outcomes() -> dict[str, dict[str, Any]]:
    return {}


@pytest.fixture
def at_once(request: pytest.FixtureRequest, _side_by_side_outcomes: dict[str, dict[str, Any]]) -> Callable[..., Any]:
    """`at_once(scenario)`: this case's outcome of `scenario(start, **its params)`, run side by
    side (support.side_by_side) with every other selected case of the same test. The first case
    to ask runs them all; each then checks its own, and a scenario's exception fails its case."""

    def outcome(scenario: Callable[..., Any]) -> Any:
        node = request.node
        test = node.originalname
        if test not in _side_by_side_outcomes:
            cases = [item for item in node.session.items
                     if item.parent is node.parent and getattr(item, "originalname", None) == test
                     and item.get_closest_marker("skip") is None]
            _side_by_side_outcomes[test] = side_by_side(
                {item.nodeid: functools.partial(scenario, **item.callspec.params) for item in cases})
        result = _side_by_side_outcomes[test][node.nodeid]
        if isinstance(result, BaseException):
            raise result
        return result

    return outcome
