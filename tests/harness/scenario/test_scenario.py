"""Scenario files: every built-in loads, and each rule a bad file breaks is named."""

from __future__ import annotations

import hashlib
import pickle
import sys
from pathlib import Path

import pytest

from servers.backends import BACKENDS

from harness.run.plan import planned_seconds
from harness.scenario import (
    RequestSpec, Scenario, ScenarioError, builtin_scenarios, load_scenario, parse_duration,
)

LOAD = '[load]\nusers = [1, 8]\nduration = "2s"\n'
REQUEST = '[[request]]\nmethod = "GET"\npath = "/"\n'
GOOD = LOAD + REQUEST

SHIPPED = ["quick", "hello", "close", "io-bound", "cpu-bound", "mixed", "big-response",
           "idle-preconnect", "slowloris", "c10k", "open-loop", "interpreters", "capacity", "parallel", "wan"]


def write(tmp_path: Path, text: str, name: str = "mine.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("name", SHIPPED)
def test_builtin_scenario_loads(name: str) -> None:
    scenario = load_scenario(name)
    assert scenario.name == name
    assert scenario.description
    assert scenario.requests and (scenario.users or scenario.rate or scenario.search)
    assert scenario.sha256 == hashlib.sha256(scenario.path.read_bytes()).hexdigest()


def test_every_shipped_file_is_listed_and_nothing_else() -> None:
    assert sorted(builtin_scenarios()) == sorted(SHIPPED)


def test_quick_takes_about_two_minutes_for_every_backend() -> None:
    """`make demo`: --backend all on the harness's own Python, which leaves out the backends
    that need a newer one (the interpreters backend, 3.13+)."""
    runs_here = [b for b in BACKENDS.values() if b.min_python is None or sys.version_info[:2] >= b.min_python]
    assert 90 <= planned_seconds(load_scenario("quick"), backends=len(runs_here), start_stop_s=1.5) <= 130


def test_parallel_takes_a_few_minutes_for_three_backends() -> None:
    """Short windows (4 s, 1 s warm-up): six models on two interpreters, twelve labels, take four times as long."""
    assert 120 <= planned_seconds(load_scenario("parallel"), backends=3, start_stop_s=1.5) <= 300


@pytest.mark.parametrize("name, check", [
    ("close", lambda s: s.keep_alive is False),
    ("io-bound", lambda s: s.requests[0].path == "/sleep?ms=10"),
    ("cpu-bound", lambda s: s.requests[0].path == "/cpu?ms=5"),
    ("mixed", lambda s: [(r.path, r.weight) for r in s.requests] == [("/", 95), ("/cpu?ms=50", 5)]),
    ("big-response", lambda s: s.requests[0].path == "/bytes?size=1048576"),
    ("idle-preconnect", lambda s: s.idle_connections == (1,) and "--request-timeout" in s.server_args),
    ("slowloris", lambda s: s.slow_clients == 200),
    ("c10k", lambda s: s.idle_connections == (0, 1000, 5000, 10_000)
     and "--max-connections" in s.server_args_for("threaded") and "--max-connections" not in s.server_args_for("asyncio")),
    ("capacity", lambda s: s.search is not None and s.slo.p99_ms == 10 and s.mix == "each"
     and [r.path for r in s.requests] == ["/", "/sleep?ms=1"]),
    ("hello", lambda s: (s.users, s.duration_s, s.warmup_s, s.repeat) == ((1, 8, 32, 128), 10, 2, 3)),
    # a new connection per request, so no pre-fork worker holds a user; each request alone, on
    # 1 and 2 server CPUs, the second borrowed from the driver where the machine has no more
    ("parallel", lambda s: s.keep_alive is False and s.mix == "each" and s.cpus == (1, 2) and s.share_driver_cpus
     and [r.path for r in s.requests] == ["/cpu?ms=5", "/cpu-shared?ms=5"]),
    # clients a round trip away, over the emulated link
    ("wan", lambda s: s.network is not None and s.network.rtts_ms == (0, 20, 100) and s.users == (64,)),
], ids=lambda v: v if isinstance(v, str) else "")
def test_builtin_scenario_does_what_its_name_says(name: str, check) -> None:
    assert check(load_scenario(name))


def test_a_users_file_loads_with_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    scenario = load_scenario(str(path))
    assert scenario == Scenario(
        name="mine", path=path.resolve(), description="", users=(1, 8), rate=(), connections=16,
        requests=(RequestSpec(method="GET", path="/"),), duration_s=2.0, warmup_s=2.0,
        repeat=3, keep_alive=True, timeout_s=10.0, idle_connections=(0,), slow_clients=0,
        slow_interval_s=1.0, server_args=(), sha256=hashlib.sha256(path.read_bytes()).hexdigest())


def test_every_field_is_read(tmp_path: Path) -> None:
    scenario = load_scenario(write(tmp_path, """
        description = "all of it"
        [load]
        users = [4]
        rate = [500, 1000.5]
        duration = "1m"
        warmup = 0
        repeat = 1
        keep_alive = false
        timeout = "500ms"
        [background]
        idle_connections = 3
        slow_clients = 2
        slow_interval = 0.25
        [server]
        args = ["--request-timeout", "2"]
        [[request]]
        method = "POST"
        path = "/echo"
        body = "hi"
        headers = { X-Trace = "1", Accept = "text/plain" }
        weight = 7
        """))
    assert (scenario.users, scenario.rate, scenario.duration_s, scenario.warmup_s) == (
        (4,), (500.0, 1000.5), 60.0, 0.0)
    assert (scenario.repeat, scenario.keep_alive, scenario.timeout_s) == (1, False, 0.5)
    assert (scenario.idle_connections, scenario.slow_clients, scenario.slow_interval_s) == ((3,), 2, 0.25)
    assert scenario.server_args == ("--request-timeout", "2")
    assert scenario.requests == (RequestSpec(method="POST", path="/echo", body="hi", weight=7,
                                             headers=(("X-Trace", "1"), ("Accept", "text/plain"))),)


def test_idle_sweep_and_per_backend_args(tmp_path: Path) -> None:
    """c10k's shape: each load level at each idle count; one backend's extra flags after the shared ones."""
    scenario = load_scenario(write(tmp_path, GOOD + """
        [background]
        idle_connections = [0, 100]
        [server]
        args = ["--request-timeout", "60"]
        [server.backend.threaded]
        args = ["--max-connections", "50"]
        """))
    assert scenario.idle_connections == (0, 100)
    assert scenario.server_args_for("threaded") == ("--request-timeout", "60", "--max-connections", "50")
    assert scenario.server_args_for("selectors") == ("--request-timeout", "60")
    # 3 rounds x 2 users x 2 idle levels, each a warm-up and one window
    assert planned_seconds(scenario, backends=1, start_stop_s=0) == 3 * 2 * 2 * (2.0 + 2.0)


def test_open_loop_only_is_accepted(tmp_path: Path) -> None:
    scenario = load_scenario(write(tmp_path, '[load]\nrate = [100]\n' + REQUEST))
    assert (scenario.users, scenario.rate) == ((), (100.0,))


BAD_FILES = [
    # (id, file text, key, fragment of the reason)
    ("toml-syntax-error", GOOD + "oops\n", "line 7", "invalid TOML"),
    ("unknown-top-level-key", "colour = 1\n" + GOOD, "colour", "unknown key; allowed: backends, background"),
    ("misspelt-key-gets-a-guess", "[loads]\n" + GOOD, "loads", "did you mean 'load'?"),
    ("unknown-load-key", LOAD + "user = [3]\n" + REQUEST, "load.user", "did you mean 'users'?"),
    ("unknown-request-key", GOOD + "verb = 'GET'\n", "request[0].verb", "allowed: body, headers"),
    ("unknown-background-key", GOOD + "[background]\nidle = 1\n", "background.idle", "unknown key"),
    ("unknown-server-key", GOOD + "[server]\nflags = []\n", "server.flags", "allowed: args"),
    ("load-is-required", REQUEST, "load", "required"),
    ("load-must-be-a-table", "load = 3\n" + REQUEST, "load", "must be a table"),
    ("users-or-rate-required", '[load]\nduration = "1s"\n' + REQUEST, "load", "users (closed loop) or rate"),
    ("users-must-be-an-array", "[load]\nusers = 8\n" + REQUEST, "load.users", "got 8 (an integer)"),
    ("users-sweep-not-empty", "[load]\nusers = []\n" + REQUEST, "load.users", "empty sweep"),
    ("users-not-zero", "[load]\nusers = [1, 0]\n" + REQUEST, "load.users[1]", "positive integer"),
    ("users-not-negative", "[load]\nusers = [-4]\n" + REQUEST, "load.users[0]", "got -4"),
    ("users-bool-is-not-int", "[load]\nusers = [true]\n" + REQUEST, "load.users[0]", "true (a boolean)"),
    ("users-not-float", "[load]\nusers = [1.5]\n" + REQUEST, "load.users[0]", "positive integer"),
    ("users-not-string", "[load]\nusers = ['8']\n" + REQUEST, "load.users[0]", "(a string)"),
    ("users-no-duplicates", "[load]\nusers = [8, 8]\n" + REQUEST, "load.users", "user count 8 twice"),
    ("rate-sweep-not-empty", "[load]\nusers = [1]\nrate = []\n" + REQUEST, "load.rate", "empty sweep"),
    ("rate-positive", "[load]\nrate = [0.0]\n" + REQUEST, "load.rate[0]", "positive number"),
    ("rate-finite", "[load]\nrate = [inf]\n" + REQUEST, "load.rate[0]", "positive number"),
    ("rate-bool-is-not-number", "[load]\nrate = [false]\n" + REQUEST, "load.rate[0]", "(a boolean)"),
    ("rate-no-duplicates", "[load]\nrate = [100, 100.0]\n" + REQUEST, "load.rate", "twice"),
    ("duration-needs-a-unit", LOAD.replace('"2s"', '"2 days"') + REQUEST, "load.duration", "bad duration"),
    ("duration-positive", LOAD.replace('"2s"', "0") + REQUEST, "load.duration", "longer than zero"),
    ("duration-not-negative", LOAD.replace('"2s"', "-1") + REQUEST, "load.duration", "zero or more"),
    ("duration-bool-is-not-seconds", LOAD.replace('"2s"', "true") + REQUEST, "load.duration", "not true"),
    ("warmup-not-negative", LOAD + "warmup = '-1s'\n" + REQUEST, "load.warmup", "bad duration"),
    ("timeout-positive", LOAD + "timeout = '0ms'\n" + REQUEST, "load.timeout", "longer than zero"),
    ("repeat-positive", LOAD + "repeat = 0\n" + REQUEST, "load.repeat", "positive integer; got 0"),
    ("repeat-bool-is-not-int", LOAD + "repeat = true\n" + REQUEST, "load.repeat", "(a boolean)"),
    ("repeat-not-float", LOAD + "repeat = 2.0\n" + REQUEST, "load.repeat", "(a float)"),
    ("keep-alive-is-bool", LOAD + "keep_alive = 1\n" + REQUEST, "load.keep_alive", "true or false"),
    ("idle-connections-not-negative", GOOD + "[background]\nidle_connections = -1\n",
     "background.idle_connections", "integer >= 0"),
    ("idle-sweep-not-negative", GOOD + "[background]\nidle_connections = [0, -5]\n",
     "background.idle_connections[1]", "integer >= 0; got -5"),
    ("idle-sweep-not-empty", GOOD + "[background]\nidle_connections = []\n",
     "background.idle_connections", "empty sweep"),
    ("idle-sweep-no-duplicates", GOOD + "[background]\nidle_connections = [10, 10]\n",
     "background.idle_connections", "lists 10 twice"),
    ("backend-args-name-a-backend", GOOD + "[server.backend.threads]\nargs = ['--max-connections', '5']\n",
     "server.backend.threads", "did you mean 'threaded'"),
    ("backend-args-only-args", GOOD + "[server.backend.forking]\nflags = []\n",
     "server.backend.forking.flags", "unknown key"),
    ("backend-args-port-belongs-to-launcher", GOOD + "[server.backend.forking]\nargs = ['--port', '1']\n",
     "server.backend.forking.args[0]", "--port is set by the launcher"),
    ("slow-clients-is-int", GOOD + "[background]\nslow_clients = '10'\n",
     "background.slow_clients", "(a string)"),
    ("slow-interval-positive", GOOD + "[background]\nslow_interval = 0\n",
     "background.slow_interval", "longer than zero"),
    ("server-args-is-array", GOOD + "[server]\nargs = '--x'\n", "server.args", "array of strings"),
    ("server-args-are-strings", GOOD + "[server]\nargs = ['--timeout', 2]\n", "server.args[1]", "(an integer)"),
    ("server-port-belongs-to-launcher", GOOD + "[server]\nargs = ['--port=80']\n",
     "server.args[0]", "--port is set by the launcher"),
    ("description-is-string", "description = 1\n" + GOOD, "description", "must be a string"),
    ("request-required", LOAD, "request", "at least one [[request]]"),
    ("request-is-array-of-tables", LOAD + "[request]\npath = '/'\n", "request", "array of tables"),
    ("request-entries-are-tables", "request = [1]\n" + LOAD, "request[0]", "must be a table"),
    ("method-is-token", GOOD + REQUEST.replace("GET", "GE T"), "request[1].method", "not an HTTP method"),
    ("method-case-sensitive", LOAD + REQUEST.replace("GET", "get"), "request[0].method", "write 'GET'"),
    ("method-is-string", LOAD + REQUEST.replace('"GET"', "1"), "request[0].method", "must be a string"),
    ("path-required", LOAD + "[[request]]\nmethod = 'GET'\n", "request[0].path", "required"),
    ("path-starts-with-slash", LOAD + REQUEST.replace('"/"', '"index.html"'), "request[0].path",
     "must start with '/'"),
    ("path-has-no-space", LOAD + REQUEST.replace('"/"', '"/a b"'), "request[0].path", "without spaces"),
    ("path-is-ascii", LOAD + REQUEST.replace('"/"', '"/café"'), "request[0].path", "percent-encode"),
    ("path-has-no-fragment", LOAD + REQUEST.replace('"/"', '"/#top"'), "request[0].path", "'#'"),
    ("weight-positive", GOOD + "weight = 0\n", "request[0].weight", "positive integer"),
    ("weight-bool-is-not-int", GOOD + "weight = true\n", "request[0].weight", "(a boolean)"),
    ("body-is-string", GOOD + "body = 3\n", "request[0].body", "must be a string"),
    ("headers-is-table", GOOD + "headers = 'x'\n", "request[0].headers", "must be a table"),
    ("header-value-is-string", GOOD + "headers = { X-A = 1 }\n", "request[0].headers.X-A", "(an integer)"),
    ("header-value-has-no-newline", GOOD + 'headers = { X-A = "a\\r\\nB: c" }\n',
     "request[0].headers.X-A", "printable ASCII"),
    ("header-name-is-token", GOOD + 'headers = { "X A" = "1" }\n', "request[0].headers.X A",
     "not a valid header name"),
    ("header-host-belongs-to-driver", GOOD + 'headers = { Host = "x" }\n', "request[0].headers.Host",
     "the driver sends"),
    ("header-connection-follows-keep-alive", GOOD + 'headers = { connection = "close" }\n',
     "request[0].headers.connection", "load.keep_alive"),
    ("header-names-ignore-case", GOOD + 'headers = { X-A = "1", x-a = "2" }\n',
     "request[0].headers.x-a", "repeats 'X-A'"),
    ("request-not-repeated", GOOD + REQUEST + "weight = 3\n", "request[1]", "repeats request[0]"),
]


@pytest.mark.parametrize("text, key, reason", [case[1:] for case in BAD_FILES],
                         ids=[case[0] for case in BAD_FILES])
def test_bad_file_is_refused_naming_key_and_reason(tmp_path: Path, text: str, key: str,
                                                    reason: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    assert (caught.value.file, caught.value.key) == (str(path), key)
    assert reason in caught.value.reason
    assert str(caught.value) == f"{path}: {key}: {caught.value.reason}"


@pytest.mark.parametrize("make, reason", [
    (lambda tmp: tmp / "absent.toml", "no such scenario file"),
    (lambda tmp: "no-such-builtin", "built-in scenarios: big-response, c10k"),
    (lambda tmp: tmp, "is a directory"),
    (lambda tmp: write_bytes(tmp / "latin1.toml", b"description = '\xe9'\n"), "not UTF-8"),
], ids=["missing-file", "unknown-name-lists-builtins", "directory", "not-utf8"])
def test_unreadable_file_is_refused_without_key(tmp_path: Path, make, reason: str) -> None:
    with pytest.raises(ScenarioError) as caught:
        load_scenario(make(tmp_path))
    assert caught.value.key == ""
    assert reason in str(caught.value)


def write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_scenario_error_survives_pickling() -> None:
    error = pickle.loads(pickle.dumps(ScenarioError(file="f.toml", key="load.users", reason="bad")))
    assert (error.file, error.key, error.reason, str(error)) == (
        "f.toml", "load.users", "bad", "f.toml: load.users: bad")


def test_overrides_return_a_changed_copy() -> None:
    quick = load_scenario("quick")
    changed = quick.with_overrides(users=[2, 4], duration_s=1.5, warmup_s=0, repeat=1)
    assert (changed.users, changed.duration_s, changed.warmup_s, changed.repeat) == ((2, 4), 1.5, 0, 1)
    assert changed.overrides == ("users=[2, 4]", "duration_s=1.5", "warmup_s=0.0", "repeat=1")
    assert (changed.requests, changed.sha256) == (quick.requests, quick.sha256)
    assert quick.with_overrides() == quick


@pytest.mark.parametrize("override", [
    {"users": []}, {"users": [0]}, {"users": [True]}, {"duration_s": 0}, {"warmup_s": -1},
    {"repeat": 0}, {"duration_s": float("nan")},
], ids=["no-users", "zero-users", "bool-users", "zero-duration", "negative-warmup",
        "zero-repeat", "nan-duration"])
def test_bad_override_is_refused_by_the_files_rules(override: dict) -> None:
    with pytest.raises(ScenarioError) as caught:
        load_scenario("quick").with_overrides(**override)
    assert caught.value.file == "command line"
    assert caught.value.key.startswith("load.")


@pytest.mark.parametrize("given, seconds", [
    ("500ms", 0.5), ("10s", 10.0), ("2m", 120.0), ("1h", 3600.0), ("1m30s", 90.0),
    ("1.5s", 1.5), (" 2 s ", 2.0), ("0s", 0.0), ("2.5", 2.5), (3, 3.0), (0.25, 0.25),
], ids=lambda v: repr(v))
def test_duration_is_read_in_seconds(given, seconds: float) -> None:
    assert parse_duration(given) == seconds


@pytest.mark.parametrize("given", [
    "", "s", "10 sec", "10S", "-1s", "1e3s", "inf", "nan", "10s junk", -1, float("inf"),
    True, None, [1],
], ids=lambda v: repr(v))
def test_bad_duration_is_refused(given) -> None:
    with pytest.raises(ValueError):
        parse_duration(given)
