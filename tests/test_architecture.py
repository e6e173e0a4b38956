"""The shape of the code, read from the source: no import circles, stages that only look
down, processes started only where processes are owned, locust only in driver processes,
gevent only in them and in the gevent server's.

The import graph is built with ast from every `import` and `from ... import` in servers/
and harness/, those inside functions too: a lazy import that hides a circle is still a
circle. Each rule is a plain function over that graph, tried here on small made-up trees
first, so that a rule that could never fail would show. What gevent's rules protect, a
process left unpatched, is also checked at run time, on real processes.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from dataclasses import dataclass

import pytest
from support import ROOT, Client, ServerSpec, request, server_specs

ROOT = ROOT

# What each stage of the harness may import from the harness (itself included). The stages
# look down: results is a leaf that anyone may read, charts read results only, drivers run
# in processes of their own and share only results' vocabulary (metrics, error kinds), a
# scenario is made of driver requests (and of a network link's shape), network is a leaf that
# makes an emulated link, and the run puts everything together. cli, on top, may import anything.
STAGES: dict[str, frozenset[str]] = {
    "harness.results": frozenset({"harness.results"}),
    "harness.charts": frozenset({"harness.charts", "harness.results"}),
    "harness.drivers": frozenset({"harness.drivers", "harness.results"}),
    "harness.scenario": frozenset({"harness.scenario", "harness.drivers", "harness.network"}),
    "harness.network": frozenset({"harness.network"}),
    "harness.run": frozenset({"harness.run", "harness.scenario", "harness.drivers", "harness.results",
                              "harness.charts", "harness.network"}),
    "harness.cli": frozenset({"harness"}),
    "harness.arguments": frozenset({"harness"}),  # the cli's parser: what every command accepts
    "harness": frozenset(),  # the package itself: a docstring
}
# Only these start processes: the run owns every backend and driver process (through
# harness.run.processes.spawn, and the /cpu calibration, git for metadata, `concurbench
# worker`'s exec); the wrk driver runs wrk, the tool it wraps; the network package runs `ip`
# and an emulated link's relay. Locust starts no process of ours: its master/worker processes
# are started by harness.run.driver.
PROCESS_OWNERS = ("harness.run", "harness.drivers.wrk", "harness.network")
# Importing locust monkey-patches the whole process with gevent: only driver processes may.
GEVENT_PACKAGES = ("harness.drivers.locust", "harness.drivers.distributed")
GEVENT_MODULES = ("locust", "gevent")
# The gevent backend monkey-patches the server process that loads it: in servers/ only it
# may import gevent, and nothing imports it (the registry names it by a string, loaded lazily).
GEVENT_BACKEND = "servers.backends.gevent_server"

SUBPROCESS_CALLS = {"Popen", "run", "call", "check_call", "check_output", "getoutput", "getstatusoutput"}
OS_CALLS = {"fork", "forkpty", "system", "popen", "posix_spawn", "posix_spawnp"}
OS_CALL_PREFIXES = ("exec", "spawn")


@dataclass(frozen=True)
class Module:
    name: str
    imports: frozenset[str]  # every dotted name an import statement names, absolute
    spawns: tuple[str, ...]  # "line N: what" for each process-starting call or import


def within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def parse_module(name: str, source: str, *, is_package: bool = False) -> Module:
    imports: set[str] = set()
    spawns: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                imports.add(alias.name)
                if within(alias.name, "multiprocessing"):
                    spawns.append(f"line {node.lineno}: import {alias.name}")
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package this module is in
                package = name.split(".") if is_package else name.split(".")[:-1]
                base = ".".join(package[:len(package) - node.level + 1] + ([node.module] if node.module else []))
            imports.add(base)
            imports.update(f"{base}.{alias.name}" for alias in node.names)
            for alias in node.names:
                if _starts_process(base, alias.name) or within(base, "multiprocessing") or (
                        base == "harness.run.processes" and alias.name == "spawn"):
                    spawns.append(f"line {node.lineno}: from {base} import {alias.name}")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and isinstance(
                node.func.value, ast.Name) and _starts_process(node.func.value.id, node.func.attr):
            spawns.append(f"line {node.lineno}: {node.func.value.id}.{node.func.attr}()")
    return Module(name, frozenset(imports), tuple(spawns))


def _starts_process(module: str, attribute: str) -> bool:
    if module == "subprocess":
        return attribute in SUBPROCESS_CALLS
    if module == "os":
        return attribute in OS_CALLS or attribute.startswith(OS_CALL_PREFIXES)
    return (module, attribute) in {("pty", "spawn"), ("processes", "spawn"), ("asyncio", "create_subprocess_exec"),
                                   ("asyncio", "create_subprocess_shell")}


def load_tree(*packages: str) -> dict[str, Module]:
    modules = {}
    for package in packages:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            name = ".".join(parts[:-1] if is_package else parts)
            modules[name] = parse_module(name, path.read_text(encoding="utf-8"), is_package=is_package)
    return modules


def graph(modules: dict[str, Module]) -> dict[str, set[str]]:
    """module -> the modules of the tree it imports (a from-import's names count when they
    are modules: `from harness.results import store`)."""
    return {name: {other for other in module.imports if other in modules and other != name}
            for name, module in modules.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every import circle, as the modules in it (Tarjan's strongly connected components)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in sorted(edges.get(node, ())):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in edges.get(node, ()):
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def stage_of(name: str) -> str | None:
    """The stage a module is in: the longest package of STAGES holding it ("harness" holds
    only itself, so a new top-level module must be given a stage)."""
    matches = [stage for stage in STAGES if (name == stage if stage == "harness" else within(name, stage))]
    return max(matches, key=len) if matches else None


def stage_violations(edges: dict[str, set[str]]) -> list[str]:
    """Harness imports that look up (or sideways) rather than down, per STAGES."""
    problems = []
    for name, imported in sorted(edges.items()):
        if not within(name, "harness"):
            continue
        stage = stage_of(name)
        if stage is None:
            problems.append(f"{name} belongs to no stage: add it to a stage's package, or to STAGES")
            continue
        for other in sorted(imported):
            if within(other, "harness") and not any(within(other, allowed) for allowed in STAGES[stage]):
                problems.append(f"{name} imports {other}: {stage} may import only {sorted(STAGES[stage])}")
    return problems


def process_violations(modules: dict[str, Module]) -> list[str]:
    return [f"{name}: {spawn}: only {', '.join(PROCESS_OWNERS)} start processes"
            for name, module in sorted(modules.items())
            if within(name, "harness") and not any(within(name, owner) for owner in PROCESS_OWNERS)
            for spawn in module.spawns]


def gevent_violations(modules: dict[str, Module]) -> list[str]:
    """locust or gevent imported outside the driver packages, or those packages imported
    from outside them (which would bring locust in)."""
    problems = []
    for name, module in sorted(modules.items()):
        if not within(name, "harness") or any(within(name, package) for package in GEVENT_PACKAGES):
            continue
        for other in sorted(module.imports):
            if any(within(other, banned) for banned in (*GEVENT_MODULES, *GEVENT_PACKAGES)):
                problems.append(f"{name} imports {other}: only {', '.join(GEVENT_PACKAGES)} may")
    return problems


def gevent_backend_violations(modules: dict[str, Module]) -> list[str]:
    """gevent or locust imported in servers/ outside the gevent backend, or the gevent
    backend imported by any module at all."""
    problems = []
    for name, module in sorted(modules.items()):
        for other in sorted(module.imports):
            if within(other, GEVENT_BACKEND):
                problems.append(f"{name} imports {other}: only the registry may name it, by a string")
            elif within(name, "servers") and name != GEVENT_BACKEND and any(
                    within(other, banned) for banned in GEVENT_MODULES):
                problems.append(f"{name} imports {other}: in servers/ only {GEVENT_BACKEND} may")
    return problems


def servers_violations(modules: dict[str, Module]) -> list[str]:
    """servers/ is standalone: the system under test knows nothing of the load side."""
    return [f"{name} imports {other}" for name, module in sorted(modules.items()) if within(name, "servers")
            for other in sorted(module.imports) if within(other, "harness")]


# --- the rules, on made-up trees: each can fail -------------------------------------------


def made_up(sources: dict[str, str]) -> dict[str, Module]:
    return {name: parse_module(name, source) for name, source in sources.items()}


def test_a_circle_is_found_even_through_a_lazy_import() -> None:
    tree = made_up({"harness.results.steps": "from harness.results.store import X\n",
                    "harness.results.store": "def f():\n    from harness.results.summary import rows\n",
                    "harness.results.summary": "from harness.results import steps\n",
                    "harness.results.metrics": "import math\n"})
    assert cycles(graph(tree)) == [["harness.results.steps", "harness.results.store", "harness.results.summary"]]


def test_relative_imports_are_resolved() -> None:
    module = parse_module("servers.backends.threaded", "from .server import Server\nfrom .. import http\n")
    assert {"servers.backends.server", "servers.http"} <= module.imports


@pytest.mark.parametrize(("name", "source", "broken"), [
    pytest.param("harness.results.store", "from harness.run.processes import PROJECT_ROOT", True, id="results-up"),
    pytest.param("harness.results.store", "from harness.results import metrics", False, id="results-itself"),
    pytest.param("harness.charts.runs", "import harness.run.plan", True, id="charts-to-run"),
    pytest.param("harness.charts.runs", "from harness.drivers.spec import DriverSpec", True, id="charts-to-drivers"),
    pytest.param("harness.charts.runs", "from harness.results.steps import median_of", False, id="charts-to-results"),
    pytest.param("harness.drivers.spec", "from harness.scenario import Scenario", True, id="drivers-up"),
    pytest.param("harness.plots", "import math", True, id="no-stage"),
])
def test_stages_look_down(name: str, source: str, broken: bool) -> None:
    others = ("harness.run.processes", "harness.run.plan", "harness.drivers.spec", "harness.scenario",
              "harness.results.metrics", "harness.results.steps")
    tree = made_up({**dict.fromkeys(others, ""), name: source})
    assert bool(stage_violations(graph(tree))) is broken


@pytest.mark.parametrize(("name", "source", "broken"), [
    pytest.param("harness.charts.report", "import subprocess\nsubprocess.run(['git'])", True, id="subprocess"),
    pytest.param("harness.cli", "import os\nos.execve('x', [], {})", True, id="exec"),
    pytest.param("harness.cli", "from os import fork", True, id="from-os-import-fork"),
    pytest.param("harness.results.store", "import multiprocessing", True, id="multiprocessing"),
    pytest.param("harness.cli", "from harness.run.processes import spawn", True, id="spawn-helper"),
    pytest.param("harness.run.launch", "import subprocess\nsubprocess.Popen(['x'])", False, id="run-owns"),
    pytest.param("harness.drivers.wrk.driver", "import subprocess\nsubprocess.Popen(['wrk'])", False, id="wrk"),
    pytest.param("harness.drivers.locust.driver", "import os\nos.fork()", True, id="locust-driver"),
    pytest.param("harness.charts.report", "import subprocess\nsubprocess.TimeoutExpired", False, id="no-call"),
])
def test_only_the_run_and_the_wrk_driver_start_processes(name: str, source: str, broken: bool) -> None:
    assert bool(process_violations(made_up({name: source}))) is broken


@pytest.mark.parametrize(("name", "source", "broken"), [
    pytest.param("harness.run.runner", "import locust", True, id="locust-in-run"),
    pytest.param("harness.drivers.spec", "from gevent.monkey import get_original", True, id="gevent-in-spec"),
    pytest.param("harness.cli", "def f():\n    import harness.drivers.locust.driver", True, id="lazy-driver"),
    pytest.param("harness.drivers.locust.user", "from locust import User", False, id="locust-driver"),
    pytest.param("harness.drivers.distributed.roles", "import gevent", False, id="distributed"),
])
def test_locust_only_in_driver_processes(name: str, source: str, broken: bool) -> None:
    assert bool(gevent_violations(made_up({name: source}))) is broken


@pytest.mark.parametrize(("name", "source", "broken"), [
    pytest.param("servers.backends.threaded", "import gevent", True, id="gevent-in-threaded"),
    pytest.param("servers.backends.listener", "from gevent.socket import socket", True, id="gevent-in-listener"),
    pytest.param("servers.__main__", "def f():\n    from gevent import monkey", True, id="lazy-gevent"),
    pytest.param("servers.__main__", "from servers.backends import gevent_server", True, id="main-imports-it"),
    pytest.param("servers.backends.iterative", "from . import gevent_server", True, id="relative"),
    pytest.param("harness.run.launch", "from servers.backends.gevent_server import GeventServer", True,
                 id="harness-imports-it"),
    pytest.param("harness.drivers.locust.user", "import servers.backends.gevent_server", True,
                 id="driver-imports-it"),
    pytest.param("servers.backends.gevent_server", "from gevent import monkey", False, id="the-backend"),
    pytest.param("servers.backends", "BACKENDS = {'gevent': 'servers.backends.gevent_server:GeventServer'}",
                 False, id="by-name"),
])
def test_gevent_only_in_the_gevent_backend(name: str, source: str, broken: bool) -> None:
    assert bool(gevent_backend_violations(made_up({name: source}))) is broken


def test_servers_may_not_import_the_harness_checker_can_fail() -> None:
    assert servers_violations(made_up({"servers.app": "from harness.results import metrics"}))


# --- the rules, on the real tree ------------------------------------------------------------


@pytest.fixture(scope="module")
def tree() -> dict[str, Module]:
    return load_tree("servers", "harness")


def test_the_tree_is_read(tree: dict[str, Module]) -> None:
    assert {"harness.cli", "harness.results.store", "servers.http"} <= set(tree)
    assert "harness.results.metrics" in graph(tree)["harness.results.steps"]


@pytest.mark.parametrize("package", ["servers", "harness"])
def test_no_import_circles(tree: dict[str, Module], package: str) -> None:
    edges = {name: {o for o in imported if within(o, package)} for name, imported in graph(tree).items()
             if within(name, package)}
    assert cycles(edges) == []


def test_harness_stages_look_down(tree: dict[str, Module]) -> None:
    assert stage_violations(graph(tree)) == []


def test_processes_are_started_only_by_their_owners(tree: dict[str, Module]) -> None:
    assert process_violations(tree) == []


def test_locust_and_gevent_stay_in_driver_processes(tree: dict[str, Module]) -> None:
    assert gevent_violations(tree) == []


def test_servers_do_not_import_the_harness(tree: dict[str, Module]) -> None:
    assert servers_violations(tree) == []


def test_gevent_stays_in_its_backend(tree: dict[str, Module]) -> None:
    assert gevent_backend_violations(tree) == []


# --- the same, at run time ------------------------------------------------------------------


def probe(code: str) -> str:
    """The last line `python -c code` prints, run from the project as a server would be."""
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip().splitlines()[-1]


def test_the_harness_process_never_imports_gevent(tree: dict[str, Module]) -> None:
    """Every harness module outside the driver packages, with what they import from servers/."""
    names = sorted(name for name in tree if within(name, "harness")
                   and not any(within(name, package) for package in GEVENT_PACKAGES))
    code = (f"import importlib, sys\nfor name in {names!r}: importlib.import_module(name)\n"
            "print(sorted({'gevent', 'greenlet', 'locust'} & set(sys.modules)))")
    assert probe(code) == "[]"


@pytest.mark.parametrize("spec", server_specs())
def test_only_the_gevent_server_process_imports_gevent(start_server, monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
                                                       spec: ServerSpec) -> None:
    """The real server process, serving: PYTHONPROFILEIMPORTTIME has it list on stderr every
    module it imports."""
    monkeypatch.setenv("PYTHONPROFILEIMPORTTIME", "1")
    live = start_server(*spec.args, python=spec.executable)
    client = Client(live.connect())
    client.send(request(close=True))
    assert client.read_response().status == 200
    assert live.stop() == 0
    imported = {line.rpartition("|")[2].strip() for line in live.stderr.decode().splitlines()
                if line.startswith("import time:")}
    assert "servers.backends" in imported  # the list is there to read
    assert ("gevent" in imported) is (spec.variant == "gevent")


def test_the_gevent_server_process_is_patched_before_its_sockets_exist() -> None:
    """As `python -m servers --backend gevent` does: servers.__main__ first, then the backend.
    A listener class bound to the unpatched socket would make every connection block the
    whole process."""
    code = ("import servers.__main__\nfrom servers.backends import load_backend\nload_backend('gevent')\n"
            "import gevent.socket\nfrom gevent import monkey\nfrom servers.backends.server import BaseServer\n"
            "print([name for name in ('socket', 'select', 'selectors', 'threading', 'time')"
            " if not monkey.is_module_patched(name)], BaseServer.listener_class is gevent.socket.socket)")
    assert probe(code) == "[] True"
