"""The server's own view of its interpreter after each step: GET /runtime (servers/app.py),
asked while the server still runs.

A free-threaded build can turn its GIL back on by itself: importing an extension that does
not declare itself free-threading safe does so for the whole process, silently, long after
start-up. So the interpreter's state at start-up (harness.run.interpreter) is not enough:
after every step the orchestrator asks the server what a request handler sees then, and a
step on a free-threaded build whose GIL was on is flagged (harness.results.steps.apply_runtime).

Each question runs in a thread of its own: a server busy with the next level's load (a
pre-fork worker held by a keep-alive user, the iterative server) answers when a connection
frees up, and the orchestrator's loop, which samples the window's CPU counters, must not
wait for it. The answers are merged into the step records by the orchestrator's own thread
(`merge`), the only one that touches the results. A `cmd:` server has no /runtime: nothing
is asked of it.
"""

from __future__ import annotations

import http.client
import json
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from harness.results.steps import GIL_ON, apply_runtime

RUNTIME_PATH = "/runtime"
# How long one question waits for its answer: a level's window and warm-up, the longest a
# busy server may hold it in its backlog (a keep-alive user on each pre-fork worker) before
# the driver closes that level's connections.
RUNTIME_TIMEOUT_S = 15.0
# At the end of a start the driver has stopped, so a question still waiting is answered at
# once by a working server; this long, and the step records that it got no answer.
RUNTIME_END_WAIT_S = 5.0


def ask_runtime(host: str, port: int, *, timeout: float = RUNTIME_TIMEOUT_S) -> dict[str, Any]:
    """GET /runtime from the server at host:port: {"python", "free_threaded", "gil_enabled"},
    or {"error": why} when it could not be had."""
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        connection.request("GET", RUNTIME_PATH, headers={"Connection": "close"})
        response = connection.getresponse()
        body = response.read()
        if response.status != 200:
            return {"error": f"GET {RUNTIME_PATH} answered {response.status}"}
        answer = json.loads(body)
        if not isinstance(answer, dict) or "gil_enabled" not in answer:
            return {"error": f"GET {RUNTIME_PATH} answered something else: {body[:60]!r}"}
        return {key: answer.get(key) for key in ("python", "free_threaded", "gil_enabled")}
    except (OSError, http.client.HTTPException, ValueError) as error:
        return {"error": f"GET {RUNTIME_PATH}: {error or type(error).__name__}"}
    finally:
        connection.close()


class RuntimeChecks:
    """One GET /runtime per step of one start of one of our servers."""

    def __init__(self, host: str, port: int, *, ask: Callable[..., dict[str, Any]] = ask_runtime) -> None:
        self.host, self.port = host, port
        self._ask = ask
        self._answers: queue.SimpleQueue[tuple[dict[str, Any], str, dict[str, Any]]] = queue.SimpleQueue()
        self._asked: list[dict[str, Any]] = []  # the step records asked for, in order
        self._pending = 0  # of those, how many answers are not merged yet

    def ask(self, step: dict[str, Any], what: str) -> None:
        """Ask, in a thread, for `step` (its record; `what` names it in a message)."""
        self._asked.append(step)
        self._pending += 1

        def question() -> None:
            self._answers.put((step, what, self._ask(self.host, self.port)))

        threading.Thread(target=question, name="concurbench-runtime", daemon=True).start()

    def merge(self, say: Callable[[str], None], *, wait: float = 0.0) -> int:
        """Put the answers that came into their step records (flagging gil-on, and saying so
        with `say`), waiting up to `wait` seconds for those still out. Returns how many
        records changed: the caller's next save writes them."""
        deadline = time.monotonic() + wait
        changed = 0
        while self._pending:
            left = deadline - time.monotonic()
            try:
                step, what, answer = self._answers.get(timeout=left) if left > 0 else self._answers.get_nowait()
            except queue.Empty:
                break
            self._pending -= 1
            changed += 1
            apply_runtime(step, answer)
            if GIL_ON in step["flags"]:
                say(f"{what}: the GIL was ON in the server (a free-threaded build): flagged {GIL_ON}")
        return changed

    def finish(self, say: Callable[[str], None]) -> int:
        """At the end of a start: merge what comes within RUNTIME_END_WAIT_S; a step still
        without an answer then records that it got none. Returns how many records changed."""
        changed = self.merge(say, wait=RUNTIME_END_WAIT_S)
        for step in self._asked:
            if step.get("runtime") is None:
                apply_runtime(step, {"error": f"no answer to GET {RUNTIME_PATH} within {RUNTIME_END_WAIT_S:g} s "
                                              "of the start's end"})
                changed += 1
        self._pending = 0
        return changed
