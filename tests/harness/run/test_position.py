"""Where a run stands: each Position says itself as the one line and the record read it, and
records the backend and step a fault is charged to."""

from __future__ import annotations

import pytest

from harness.run.plan import Level
from harness.run.position import PROBE, Activity, Position, Start, StepAt

USERS_4 = Level(4, None, 0)
RATE = Level(4, 800.0, 0, None, 1, "/sleep?ms=1")


@pytest.mark.parametrize(("position", "said"), [
    pytest.param(Position(Activity.PREPARING), "before the run started", id="preparing"),
    pytest.param(Position(Activity.CALIBRATING), "during the /cpu calibration", id="calibrating"),
    pytest.param(Position(Activity.STARTING, "silent", Start(0, 1)), "while silent was starting", id="one-round"),
    pytest.param(Position(Activity.STARTING, "asyncio", Start(1, 3)), "while asyncio was starting (round 2/3)",
                 id="starting-round"),
    pytest.param(Position(Activity.STOPPING, "asyncio", Start(None, 2)), "while asyncio was stopping (search)",
                 id="stopping-search"),
    pytest.param(Position(Activity.DRIVING, "selectors", step=StepAt(USERS_4, 0, 2, warmup=False)),
                 "during selectors users=4 rep 1/2", id="window"),
    pytest.param(Position(Activity.DRIVING, "asyncio", step=StepAt(USERS_4, 1, 2, warmup=True), series="asyncio (wrk)"),
                 "during asyncio (wrk) users=4 rep 2/2 warm-up", id="second-driver-warm-up"),
    pytest.param(Position(Activity.DRIVING, "asyncio", step=StepAt(RATE, PROBE, 1, warmup=False)),
                 "during asyncio rate=800/s /sleep?ms=1 probe", id="probe"),
    pytest.param(Position(Activity.STOPPING_DRIVER, "threaded"), "while threaded's driver was stopping",
                 id="driver-stopping"),
    pytest.param(Position(Activity.BETWEEN, "threaded", Start(0, 2)), "between backends (after threaded, round 1/2)",
                 id="between-rounds"),
    pytest.param(Position(Activity.BETWEEN, "threaded", Start(0, 1)), "between backends (after threaded)",
                 id="between"),
    pytest.param(Position(Activity.REPORTING), "while drawing the report (the results are saved)", id="report"),
])
def test_a_position_says_where_the_run_stands(position: Position, said: str) -> None:
    assert str(position) == said


def test_a_step_records_its_level_repetition_and_phase() -> None:
    position = Position(Activity.DRIVING, "selectors", step=StepAt(Level(2, None, 100), 1, 2, warmup=True))
    assert position.step_dict == {"users": 2, "rate": None, "idle_connections": 100, "repetition": 1,
                                  "phase": "warm-up"}
    assert Position(Activity.STOPPING, "selectors", Start(1, 2)).step_dict is None


@pytest.mark.parametrize(("position", "running"), [
    pytest.param(Position(Activity.DRIVING, "selectors", step=StepAt(USERS_4, 0, 1, warmup=False),
                          series="selectors (wrk)"), "selectors", id="its-backend-not-its-series"),
    pytest.param(Position(Activity.STOPPING, "stubborn", Start(0, 1)), "stubborn", id="stopping"),
    pytest.param(Position(Activity.BETWEEN, "threaded", Start(0, 2)), None, id="between"),
    pytest.param(Position(Activity.SAVING), None, id="no-backend"),
])
def test_a_fault_is_charged_to_the_backend_running(position: Position, running: str | None) -> None:
    assert position.running == running


@pytest.mark.parametrize(("start", "label", "recorded"), [
    pytest.param(Start(0, 1), None, 0, id="the-one-round"),
    pytest.param(Start(2, 3), "round 3/3", 2, id="a-round"),
    pytest.param(Start(None, 3), "search", "search", id="search"),
])
def test_a_start_is_said_and_recorded(start: Start, label: str | None, recorded: int | str) -> None:
    assert (start.label, start.recorded) == (label, recorded)
