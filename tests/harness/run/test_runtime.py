"""GET /runtime after each step (harness/run/runtime.py): what a real server says of its
interpreter, and how the answers, which come in threads of their own, reach the step records."""

from __future__ import annotations

import platform
import threading
from typing import Any

import pytest

from harness.results.steps import GIL_ON
from harness.run import runtime
from harness.run.launch import free_port, launch_backend
from harness.run.runtime import RuntimeChecks, ask_runtime

pytestmark = pytest.mark.timeout(60)
FREE_THREADED_GIL_ON = {"python": "3.13.5", "free_threaded": True, "gil_enabled": True}


def step() -> dict[str, Any]:
    return {"flags": [], "runtime": None}


def test_one_of_our_servers_says_its_interpreter_and_gil() -> None:
    running = launch_backend("threaded")
    try:
        answer = ask_runtime(running.host, running.port)
    finally:
        running.stop()
    assert answer == {"python": platform.python_version(), "free_threaded": False, "gil_enabled": True}


def test_a_server_without_the_route_or_no_server_is_an_error_not_an_exception() -> None:
    running = launch_backend("cmd:python3 -m http.server --bind 127.0.0.1 {port}")
    try:
        assert ask_runtime(running.host, running.port) == {"error": "GET /runtime answered 404"}
    finally:
        running.stop()
    assert ask_runtime("127.0.0.1", free_port(), timeout=2)["error"].startswith("GET /runtime: ")


def test_answers_reach_their_steps_and_a_gil_that_came_back_is_flagged_and_said() -> None:
    answers = iter([FREE_THREADED_GIL_ON, {**FREE_THREADED_GIL_ON, "gil_enabled": False}])
    checks = RuntimeChecks("127.0.0.1", 1, ask=lambda host, port: next(answers))
    first, second = step(), step()
    said: list[str] = []
    checks.ask(first, "threaded@3.13t: users=8 rep 1")
    assert checks.merge(said.append, wait=5) == 1
    checks.ask(second, "threaded@3.13t: users=8 rep 2")
    assert checks.finish(said.append) == 1
    assert (first["runtime"], first["flags"]) == (FREE_THREADED_GIL_ON, [GIL_ON])
    assert (second["runtime"]["gil_enabled"], second["flags"]) == (False, [])
    assert said == ["threaded@3.13t: users=8 rep 1: the GIL was ON in the server (a free-threaded build): "
                    "flagged gil-on"]


def test_a_slow_answer_never_holds_the_loop_and_one_missing_at_the_end_is_recorded(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime, "RUNTIME_END_WAIT_S", 0.2)
    release = threading.Event()

    def late(host: str, port: int) -> dict[str, Any]:
        release.wait(10)
        return FREE_THREADED_GIL_ON

    checks = RuntimeChecks("127.0.0.1", 1, ask=late)
    waiting = step()
    checks.ask(waiting, "asyncio: users=8 rep 1")
    assert checks.merge(print) == 0 and waiting["runtime"] is None  # at once, with nothing to merge
    assert checks.finish(print) == 1
    assert waiting["runtime"] == {"error": "no answer to GET /runtime within 0.2 s of the start's end"}
    release.set()  # an answer after the end changes nothing
    assert checks.merge(print, wait=1) == 0 and waiting["flags"] == []
