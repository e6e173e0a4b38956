"""[network] in a scenario file and --rtt on the command line: what they accept, what they
refuse (naming the file, the key and the reason), and the levels they make."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.run.plan import Level, plan_run
from harness.scenario import ScenarioError, load_scenario

REQUEST = '[[request]]\npath = "/"\n'


def load(tmp_path: Path, text: str):  # type: ignore[no-untyped-def]
    path = tmp_path / "net.toml"
    path.write_text(text)
    return load_scenario(path)


def test_a_round_trip_sweep_makes_a_level_per_round_trip_each_with_the_shared_link(tmp_path: Path) -> None:
    scenario = load(tmp_path, '[load]\nusers = [1, 8]\n[network]\nrtt_ms = [0, 20.5]\njitter_ms = 1\nloss = 0.01\n'
                              'bandwidth = "10mbit"\n' + REQUEST)
    assert scenario.network is not None
    assert scenario.network.rtts_ms == (0.0, 20.5) and scenario.network.bandwidth_bps == 10_000_000
    assert plan_run(scenario, ["asyncio"]).levels == (
        Level(1, None, 0, rtt_ms=0.0), Level(8, None, 0, rtt_ms=0.0),
        Level(1, None, 0, rtt_ms=20.5), Level(8, None, 0, rtt_ms=20.5))
    assert Level(8, None, 0, rtt_ms=20.5).name == "users=8 rtt=20.5ms"
    shape = scenario.network.shape(20.5)
    assert (shape.rtt_ms, shape.jitter_ms, shape.loss, shape.bandwidth_bps) == (20.5, 1.0, 0.01, 10_000_000)


def test_without_network_every_level_is_loopback(tmp_path: Path) -> None:
    scenario = load(tmp_path, "[load]\nusers = [2]\n" + REQUEST)
    assert scenario.network is None and plan_run(scenario, ["asyncio"]).levels == (Level(2, None, 0),)


@pytest.mark.parametrize(("table", "key", "reason"), [
    ("rtt_ms = -1", "network.rtt_ms", "milliseconds from 0"),
    ("rtt_ms = []", "network.rtt_ms", "empty sweep"),
    ("rtt_ms = [0, 0]", "network.rtt_ms", "twice"),
    ('rtt_ms = ["20ms"]', "network.rtt_ms[0]", "milliseconds"),
    ("loss = 1", "network.loss", "share of the packets"),
    ("bandwidth = 10", "network.bandwidth", "with its unit"),
    ('bandwidth = "fast"', "network.bandwidth", "fast"),
    ("delay_ms = 5", "network.delay_ms", "unknown key"),
])
def test_a_bad_network_key_names_the_file_the_key_and_why(tmp_path: Path, table: str, key: str, reason: str) -> None:
    with pytest.raises(ScenarioError) as error:
        load(tmp_path, f"[load]\nusers = [1]\n[network]\n{table}\n" + REQUEST)
    assert error.value.file.endswith("net.toml") and error.value.key == key and reason in error.value.reason


def test_rtt_on_the_command_line_adds_a_link_or_replaces_the_sweep(tmp_path: Path) -> None:
    plain = load(tmp_path, "[load]\nusers = [1]\n" + REQUEST).with_overrides(rtts_ms=[0, 50])
    assert plain.network is not None and plain.network.rtts_ms == (0.0, 50.0)
    assert "rtt_ms=[0.0, 50.0]" in plain.overrides
    lossy = load(tmp_path, "[load]\nusers = [1]\n[network]\nrtt_ms = 5\nloss = 0.1\n" + REQUEST)
    swept = lossy.with_overrides(rtts_ms=[10])
    assert swept.network is not None and (swept.network.rtts_ms, swept.network.loss) == ((10.0,), 0.1)
    with pytest.raises(ScenarioError) as error:
        lossy.with_overrides(rtts_ms=[-5])
    assert (error.value.file, error.value.key) == ("command line", "network.rtt_ms[0]")
