"""The plan of a run: a scenario's load levels in order, the rounds that interleave the
backends, each backend's steps, the driver specs, the wall time and the descriptors it needs."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.drivers.spec import DESCRIPTOR_HEADROOM
from harness.run.plan import DRIVER_START_S, START_STOP_S, Level, PlannedStep, plan_run, planned_seconds
from harness.scenario import load_scenario

SWEEP = """
[load]
users = [1, 8]
rate = [500]
connections = 4
duration = "2s"
warmup = "1s"
repeat = 2

[background]
idle_connections = [0, 100]
slow_clients = 3

[[request]]
path = "/"
"""


@pytest.fixture
def plan(tmp_path: Path):  # type: ignore[no-untyped-def]
    path = tmp_path / "sweep.toml"
    path.write_text(SWEEP)
    return plan_run(load_scenario(path), ["selectors", "asyncio"])


def test_levels_are_users_then_rates_at_each_idle_count(plan) -> None:  # type: ignore[no-untyped-def]
    assert plan.levels == (Level(1, None, 0), Level(8, None, 0), Level(4, 500.0, 0),
                           Level(1, None, 100), Level(8, None, 100), Level(4, 500.0, 100))
    assert [level.name for level in plan.levels[2:4]] == ["rate=500/s", "users=1 idle=100"]


def test_rounds_interleave_the_backends_each_through_every_level(plan) -> None:  # type: ignore[no-untyped-def]
    assert plan.rounds == 2
    assert plan.order == [(0, "selectors"), (0, "asyncio"), (1, "selectors"), (1, "asyncio")]  # A B A B
    assert len(plan.steps) == 2 * 2 * 6
    assert plan.steps[:2] == [PlannedStep("selectors", Level(1, None, 0), 0),
                              PlannedStep("selectors", Level(8, None, 0), 0)]
    assert plan.steps[6:12] == plan.steps_of("asyncio", 0)
    assert plan.steps[12] == PlannedStep("selectors", Level(1, None, 0), 1)  # round 2 starts over with the first
    assert plan.steps[18:] == plan.steps_of("asyncio", 1)
    assert plan.steps_of("asyncio") == plan.steps_of("asyncio", 0) + plan.steps_of("asyncio", 1)


def test_one_driver_spec_per_level_each_one_warm_up_and_one_window(plan) -> None:  # type: ignore[no-untyped-def]
    specs = plan.specs(host="127.0.0.1", port=8000)
    assert [(s.users, s.rate, s.idle_connections) for s in specs] == [
        (level.users, level.rate, level.idle_connections) for level in plan.levels]
    assert {(s.repeat, s.duration_s, s.warmup_s, s.slow_clients) for s in specs} == {(1, 2.0, 1.0, 3)}


def test_time_counts_every_round_s_starts_and_warm_ups(plan) -> None:  # type: ignore[no-untyped-def]
    rounds, backends, levels = 2, 2, 6
    assert planned_seconds(plan.scenario, backends=2, start_stop_s=0) == rounds * backends * levels * (1.0 + 2.0)
    assert plan.seconds == (planned_seconds(plan.scenario, backends=2, start_stop_s=0)
                            + rounds * backends * (START_STOP_S + DRIVER_START_S))


def test_descriptors(plan) -> None:  # type: ignore[no-untyped-def]
    assert plan.descriptors == 8 + 100 + 3 + DESCRIPTOR_HEADROOM  # the most users beside the most idle sockets
