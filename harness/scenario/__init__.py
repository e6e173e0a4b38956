"""Scenarios: a TOML file read into a validated, immutable Scenario (load.py, with the
table readers and ScenarioError in fields.py), and the built-in ones under builtin/."""

from harness.drivers.wire import RequestSpec
from harness.scenario.fields import ScenarioError, parse_duration
from harness.scenario.load import SCENARIO_DIR, Scenario, builtin_scenarios, load_scenario

__all__ = ["SCENARIO_DIR", "RequestSpec", "Scenario", "ScenarioError", "builtin_scenarios", "load_scenario",
           "parse_duration"]
