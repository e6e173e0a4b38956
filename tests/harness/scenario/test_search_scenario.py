"""Scenario files that search a rate within an objective, or send each request alone."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.run.plan import Level, plan_run
from harness.scenario import ScenarioError, load_scenario
from harness.scenario.load import RateSearch, Slo

SEARCH = '[load]\nslo = { p99_ms = 5 }\nrate = { search = [100, 9000] }\n'
REQUESTS = '[[request]]\npath = "/"\n[[request]]\nmethod = "POST"\npath = "/echo"\nbody = "x"\n'


def load(tmp_path: Path, text: str):
    path = tmp_path / "s.toml"
    path.write_text(text, encoding="utf-8")
    return load_scenario(path)


def test_a_search_reads_its_range_objective_and_defaults(tmp_path: Path) -> None:
    scenario = load(tmp_path, SEARCH + REQUESTS)
    assert scenario.search == RateSearch(low=100.0, high=9000.0, precision=0.1, budget_s=60.0)
    assert scenario.slo == Slo(p99_ms=5.0, error_share=0.001)
    assert scenario.rate == () and scenario.users == () and scenario.mix == "weighted"
    assert scenario.to_dict()["search"] == {"low": 100.0, "high": 9000.0, "precision": 0.1, "budget_s": 60.0}


def test_every_search_field_is_read(tmp_path: Path) -> None:
    scenario = load(tmp_path, '[load]\nslo = { p99_ms = 2.5, error_share = 0 }\n'
                              'rate = { search = [10, 20], precision = 0.05, budget = "2m" }\nmix = "each"\n' + REQUESTS)
    assert scenario.search == RateSearch(10.0, 20.0, 0.05, 120.0)
    assert scenario.slo == Slo(2.5, 0.0) and scenario.mix == "each"


@pytest.mark.parametrize("text, key, reason", [
    ('[load]\nrate = { search = [100, 9000] }\n', "load.rate", "needs an objective"),
    ('[load]\nusers = [1]\nslo = { p99_ms = 5 }\n', "load.slo", "set rate = { search"),
    (SEARCH + 'users = [8]\n', "load.users", "a rate search is open loop"),
    ('[load]\nslo = { p99_ms = 5 }\nrate = { search = [9000, 100] }\n', "load.rate.search", "LOW must be below HIGH"),
    ('[load]\nslo = { p99_ms = 5 }\nrate = { search = [100] }\n', "load.rate.search", "must be [LOW, HIGH]"),
    ('[load]\nslo = { p99_ms = 5 }\nrate = { search = [0, 100] }\n', "load.rate.search", "two positive"),
    ('[load]\nslo = { p99_ms = 5 }\nrate = { serch = [1, 100] }\n', "load.rate.serch", "did you mean 'search'"),
    ('[load]\nslo = { p99_ms = 5 }\nrate = { precision = 0.1 }\n', "load.rate.search", "required"),
    ('[load]\nslo = { p99_ms = 5 }\nrate = { search = [1, 100], precision = 2 }\n', "load.rate.precision",
     "between 0.01 and 1"),
    ('[load]\nslo = { p99_ms = 5 }\nrate = { search = [1, 100], budget = "0s" }\n', "load.rate.budget",
     "longer than zero"),
    ('[load]\nslo = { p99 = 5 }\nrate = { search = [1, 100] }\n', "load.slo.p99", "unknown key"),
    ('[load]\nslo = { error_share = 0.1 }\nrate = { search = [1, 100] }\n', "load.slo.p99_ms", "required"),
    ('[load]\nslo = { p99_ms = -1 }\nrate = { search = [1, 100] }\n', "load.slo.p99_ms", "positive"),
    ('[load]\nslo = { p99_ms = 5, error_share = 1.5 }\nrate = { search = [1, 100] }\n', "load.slo.error_share",
     "between 0 and 1"),
    (SEARCH + '[background]\nidle_connections = [0, 10]\n', "background.idle_connections", "one idle count"),
    (SEARCH + '[server]\ncpus = [1, 2]\n', "server.cpus", "all the server's CPUs"),
    ('[load]\nusers = [1]\nmix = "all"\n', "load.mix", "must be one of 'weighted', 'each'"),
])
def test_a_bad_search_names_the_file_the_key_and_the_reason(tmp_path: Path, text: str, key: str,
                                                            reason: str) -> None:
    with pytest.raises(ScenarioError) as error:
        load(tmp_path, text + REQUESTS)
    assert error.value.file.endswith("s.toml")
    assert error.value.key == key
    assert reason in error.value.reason


def test_users_and_cores_on_the_command_line_are_refused_for_a_search(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="searches an open-loop rate"):
        load(tmp_path, SEARCH + REQUESTS).with_overrides(users=[8])
    with pytest.raises(ScenarioError, match="--cores does not apply") as error:
        load(tmp_path, SEARCH + REQUESTS).with_overrides(cpus=[1, 2])
    assert (error.value.file, error.value.key) == ("command line", "server.cpus")


def test_mix_each_makes_a_level_per_request_sending_that_request_alone(tmp_path: Path) -> None:
    scenario = load(tmp_path, '[load]\nusers = [1, 4]\nmix = "each"\n' + REQUESTS)
    plan = plan_run(scenario, ["selectors"])
    assert plan.levels == (Level(1, None, 0, None, 0, "/"), Level(4, None, 0, None, 0, "/"),
                           Level(1, None, 0, None, 1, "POST /echo"), Level(4, None, 0, None, 1, "POST /echo"))
    specs = plan.specs(host="127.0.0.1", port=1)
    assert [[r.path for r in spec.requests] for spec in specs] == [["/"], ["/"], ["/echo"], ["/echo"]]
    assert plan.levels[2].name == "users=1 POST /echo"


def test_a_search_has_no_levels_until_it_has_searched(tmp_path: Path) -> None:
    scenario = load(tmp_path, SEARCH + 'mix = "each"\n' + REQUESTS)
    plan = plan_run(scenario, ["selectors", "asyncio"])
    assert plan.levels == () and plan.steps == []
    assert plan.descriptors >= scenario.connections  # sized for a probe
    searched = plan.after_search({"asyncio": (plan.probe_level(1, "POST /echo", 4000.0),)})
    assert plan.steps == []  # the plan itself does not change
    plan = searched
    assert [s.level.rate for s in plan.steps_of("asyncio")] == [4000.0] * scenario.repeat
    assert plan.steps_of("selectors") == []
    assert [r.path for r in plan.specs(host="h", port=1, backend="asyncio")[0].requests] == ["/echo"]
    # the ETA counts every search's budget, then each round's windows
    assert plan.seconds >= 2 * 2 * scenario.search.budget_s
