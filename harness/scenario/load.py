"""Scenario files: a TOML description of the load (users, durations, request mix) read
into an immutable, validated Scenario.

Contract: load_scenario() returns a Scenario or raises ScenarioError naming the file, the
dotted key (``load.users``, ``request[2].method``) and the reason; nothing else escapes.
Request indices count from 0, in file order.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from harness.drivers.wire import RequestSpec, SpecError, is_token
from harness.scenario.fields import _show, _Table, did_you_mean
from harness.scenario.network import Network, read_network, rtt_sweep
from harness.scenario.objective import RateSearch, Slo, read_search, read_slo
from servers.backends import BACKENDS

SCENARIO_DIR = Path(__file__).resolve().with_name("builtin")

# A path goes on the request line as is: visible ASCII, no space, no fragment.
_PATH = re.compile(r"/[\x21-\x22\x24-\x7e]*")
# A header value: visible ASCII, space and tab; CR or LF would split the request.
_HEADER_VALUE = re.compile(r"[\t\x20-\x7e]*")

# The driver computes these from the scenario; a file that set them would contradict it.
_DRIVER_HEADERS = {
    "host": "the driver sends the target's host",
    "content-length": "the driver computes it from body",
    "transfer-encoding": "the driver sends body with Content-Length",
    "connection": "set load.keep_alive instead",
}
# The launcher sets these for every backend (it picks a free port, for one).
_LAUNCHER_FLAGS = ("--backend", "--host", "--port")
# What a file downloaded from anywhere must not choose: the directory served under /static/.
_REFUSED_FLAGS = {"--docroot": "would let the file choose which directory of this machine the server serves"}



# [load] mix: "weighted" sends the [[request]] tables as one mix; "each" runs every request
# alone, as a series of its own ("asyncio /sleep?ms=1"), so one scenario can answer per route.
MIXES = ("weighted", "each")


@dataclass(frozen=True)
class Scenario:
    """A validated scenario file; durations are in seconds."""

    name: str
    path: Path
    description: str
    requests: tuple[RequestSpec, ...]  # the request mix, checked by the scenario's rules too
    users: tuple[int, ...]
    rate: tuple[float, ...]  # open loop: offered req/s, one level each
    connections: int  # open loop: the connections each rate is spread across
    duration_s: float
    warmup_s: float
    repeat: int
    keep_alive: bool
    timeout_s: float
    idle_connections: tuple[int, ...]  # a sweep: every load level is run at each count
    slow_clients: int
    slow_interval_s: float
    server_args: tuple[str, ...]
    sha256: str
    # [server.backend.NAME] args: flags for one backend only, after server_args (e.g. the
    # --max-connections that caps threaded and forking in c10k).
    backend_args: tuple[tuple[str, tuple[str, ...]], ...] = ()
    backends: tuple[tuple[str, str], ...] = ()  # [backends]: named external server commands
    # [server] python: the interpreters our servers run under, each a dimension like users
    # (empty: the harness's own); [server] cpus: server CPU counts, each run in turn.
    pythons: tuple[str, ...] = ()
    cpus: tuple[int, ...] = ()
    # [server] share_driver_cpus: a sweep to more server CPUs than the machine has beside the
    # driver's may use the driver's too (each such step is flagged shared-cpu).
    share_driver_cpus: bool = False
    # [server] missing_python = "skip": run on the interpreters of `pythons` that are there and
    # say which were skipped and why (a built-in comparison on a machine with fewer Pythons);
    # "refuse" (the default, and always for --server-python): one missing stops the run.
    skip_missing_python: bool = False
    overrides: tuple[str, ...] = ()  # what the command line changed, e.g. "repeat=1"
    mix: str = "weighted"
    slo: Slo | None = None
    search: RateSearch | None = None
    network: Network | None = None  # [network]: the emulated link, None: loopback

    def requests_of(self, request: int | None) -> tuple[RequestSpec, ...]:
        """The requests a level sends: the whole mix (None), or one of them alone (mix "each")."""
        return self.requests if request is None else (self.requests[request],)

    def with_overrides(self, *, users: Sequence[int] | None = None,
                       duration_s: float | None = None, warmup_s: float | None = None,
                       repeat: int | None = None, pythons: Sequence[str] | None = None,
                       cpus: Sequence[int] | None = None, rtts_ms: Sequence[float] | None = None) -> Scenario:
        """A copy with command-line overrides, held to the file's rules: a bad value
        raises ScenarioError whose file is "command line"."""
        given = {"users": None if users is None else list(users), "duration": duration_s,
                 "warmup": warmup_s, "repeat": repeat}
        load = _Table(file="command line", prefix="load",
                      data={key: value for key, value in given.items() if value is not None})
        changes: dict[str, Any] = {}
        if users is not None:
            if self.search is not None:
                load.fail("users", "this scenario searches an open-loop rate (load.rate.search): it has no users")
            changes["users"] = load.sweep("users", kind=int, what="user count")
        if duration_s is not None:
            changes["duration_s"] = load.duration("duration", default="", positive=True)
        if warmup_s is not None:
            changes["warmup_s"] = load.duration("warmup", default="", positive=False)
        if repeat is not None:
            changes["repeat"] = load.count("repeat", default=1, minimum=1)
        server = _Table(file="command line", prefix="server", data={
            key: list(value) for key, value in (("python", pythons), ("cpus", cpus)) if value is not None})
        if pythons is not None:
            changes["pythons"] = _pythons(server)
            changes["skip_missing_python"] = False  # named on the command line: each must be there
        if cpus is not None:
            if self.search is not None:
                server.fail("cpus", "a rate search runs on all the server's CPUs: --cores does not apply to it")
            changes["cpus"] = server.sweep("cpus", kind=int, what="CPU count")
        if rtts_ms is not None:
            network = _Table(file="command line", prefix="network", data={"rtt_ms": list(rtts_ms)})
            if self.search is not None and len(rtts_ms) > 1:
                network.fail("rtt_ms", "a rate search runs at one round trip: give one value")
            changes["network"] = dataclasses.replace(self.network or Network(),
                                                     rtts_ms=rtt_sweep(network, list(rtts_ms)))
        # An interpreter by its file name: its directory is the machine's (measurement rule 13).
        shown = {**changes, **({"pythons": tuple(Path(p).name for p in changes["pythons"])}
                               if "pythons" in changes else {})}
        if "network" in shown:
            shown["rtt_ms"] = shown.pop("network").rtts_ms
        noted = tuple(f"{key}={list(v) if isinstance(v, tuple) else v}"
                      for key, v in shown.items())
        return dataclasses.replace(self, **changes, overrides=self.overrides + noted)

    def server_args_for(self, backend: str) -> tuple[str, ...]:
        """The flags one of our backends starts with: [server] args, then its own."""
        return self.server_args + dict(self.backend_args).get(backend, ())

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form, for results metadata and for a driver in another process."""
        data = dataclasses.asdict(self)
        data["path"] = str(self.path)
        # Headers as [name, value] pairs, as results.json has always held them.
        data["requests"] = [{**r, "headers": [list(pair) for pair in r["headers"].items()]} for r in data["requests"]]
        return data


def builtin_scenarios() -> dict[str, Path]:
    """The shipped scenarios by name (the file stem), sorted."""
    return {p.stem: p for p in sorted(SCENARIO_DIR.glob("*.toml"))}


def load_scenario(name_or_path: str | Path) -> Scenario:
    """A built-in scenario by name, or a scenario file by path."""
    builtins = builtin_scenarios()
    path = builtins.get(str(name_or_path)) or Path(name_or_path)
    top = _Table(file=str(path), prefix="", data={})
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        hint = (f"{did_you_mean(str(name_or_path), builtins)}; built-in scenarios: {', '.join(builtins)}"
                if path.suffix != ".toml" else "")
        top.fail("", f"no such scenario file{hint}")
    except IsADirectoryError:
        top.fail("", "is a directory, not a scenario file")
    except OSError as exc:
        top.fail("", f"cannot read: {exc.strerror}")
    try:
        doc = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        top.fail("", f"not UTF-8 text (byte {exc.start})")
    except tomllib.TOMLDecodeError as exc:  # Python 3.11 puts the position in the message
        where = re.search(r" \(at line (\d+), column (\d+)\)$", str(exc))
        if not where:
            top.fail("", f"invalid TOML: {exc}")
        column = f" (column {where[2]})"
        top.fail(f"line {where[1]}", f"invalid TOML: {str(exc)[:where.start()]}{column}")
    return _build(_Table(file=str(path), prefix="", data=doc),
                  name=path.stem, path=path.resolve(), sha256=hashlib.sha256(raw).hexdigest())


def _build(top: _Table, *, name: str, path: Path, sha256: str) -> Scenario:
    top.allow("description", "load", "background", "server", "request", "backends", "network")
    load = top.table("load", required=True)
    load.allow("users", "rate", "connections", "duration", "warmup", "repeat", "keep_alive", "timeout", "slo", "mix")
    users = load.sweep("users", kind=int, what="user count")
    search = read_search(load.table("rate", required=False)) if isinstance(load.data.get("rate"), dict) else None
    rate = () if search else load.sweep("rate", kind=float, what="rate")
    if not users and not rate and not search:
        top.fail("load", "needs users (closed loop) or rate (open loop), or both")
    slo = read_slo(load.table("slo", required=False)) if "slo" in load.data else None
    background = top.table("background", required=False)
    background.allow("idle_connections", "slow_clients", "slow_interval")
    server = top.table("server", required=False)
    server.allow("args", "backend", "python", "cpus", "share_driver_cpus", "missing_python")
    idle, cpus = _idle_sweep(background), server.sweep("cpus", kind=int, what="CPU count")
    if search and slo is None:
        load.fail("rate", "a rate search needs an objective to hold: add slo = { p99_ms = 10, error_share = 0.001 }")
    if slo and not search:
        load.fail("slo", "an objective is what a rate search holds to: set rate = { search = [LOW, HIGH] }")
    if search and users:
        load.fail("users", "a rate search is open loop: remove users (run a closed-loop sweep as its own scenario)")
    if search and (len(idle) > 1 or cpus):
        top.fail("background.idle_connections" if len(idle) > 1 else "server.cpus",
                 "a rate search runs at one idle count and on all the server's CPUs: give one value, or none")
    network = read_network(top.table("network", required=False)) if "network" in top.data else None
    if search and network and len(network.rtts_ms) > 1:
        top.fail("network.rtt_ms", "a rate search runs at one round trip: give one value")
    mix = load.value("mix", str, "a string", default="weighted")
    if mix not in MIXES:
        load.fail("mix", f"must be one of {', '.join(repr(m) for m in MIXES)}; got {mix!r}")
    return Scenario(
        name=name, path=path, sha256=sha256,
        description=top.value("description", str, "a string", default=""),
        requests=_request_mix(top),
        users=users, rate=rate,
        connections=load.count("connections", default=16, minimum=1),
        duration_s=load.duration("duration", default="10s", positive=True),
        warmup_s=load.duration("warmup", default="2s", positive=False),
        repeat=load.count("repeat", default=3, minimum=1),
        keep_alive=load.value("keep_alive", bool, "true or false", default=True),
        timeout_s=load.duration("timeout", default="10s", positive=True),
        idle_connections=idle,
        slow_clients=background.count("slow_clients", default=0, minimum=0),
        slow_interval_s=background.duration("slow_interval", default="1s", positive=True),
        server_args=_server_args(server),
        backend_args=_backend_args(server.table("backend", required=False)),
        backends=_named_backends(top.table("backends", required=False)),
        pythons=_pythons(server),
        cpus=cpus, share_driver_cpus=server.value("share_driver_cpus", bool, "true or false", default=False),
        skip_missing_python=_missing_python(server),
        mix=mix, slo=slo, search=search, network=network,
    )


def _missing_python(server: _Table) -> bool:
    """[server] missing_python: "refuse" (default) or "skip"."""
    value = server.value("missing_python", str, "a string", default="refuse")
    if value not in ("refuse", "skip"):
        server.fail("missing_python", f"must be 'refuse' or 'skip'; got {value!r}")
    return value == "skip"


def _pythons(server: _Table) -> tuple[str, ...]:
    """[server] python: one interpreter (a path or a command) or an array of them, each
    compared like a user level. Whether each is a Python 3.11+ is checked at the run's start."""
    value = server.data.get("python", [])
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or ("python" in server.data and not values):
        server.fail("python", f"must be an interpreter (a path or a command) or a non-empty array of them; "
                              f"got {_show(value)}")
    for i, path in enumerate(values):
        if not isinstance(path, str) or not path.strip():
            server.fail(f"python[{i}]" if isinstance(value, list) else "python",
                        f"must be a non-empty string; got {_show(path)}")
        if path in values[:i]:
            server.fail("python", f"lists {path!r} twice; each interpreter is one dimension value")
    return tuple(values)


_BACKEND_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]*")


def _named_backends(table: _Table) -> tuple[tuple[str, str], ...]:
    """[backends] name = "command with {port}": external servers usable as --backend name."""
    entries = []
    for name, command in table.data.items():
        if not _BACKEND_NAME.fullmatch(name):
            table.fail(name, "a backend name is letters, digits, '.', '_' and '-', starting with a letter")
        if not isinstance(command, str) or "{port}" not in command:
            table.fail(name, f"must be a command string containing {{port}}; got {_show(command)}")
        entries.append((name, command))
    return tuple(entries)


def _idle_sweep(background: _Table) -> tuple[int, ...]:
    """idle_connections: one count, or an array of counts (0 allowed), each run in turn."""
    value = background.data.get("idle_connections", 0)
    if isinstance(value, list):
        if not value:
            background.fail("idle_connections", "empty sweep: give a count or an array of counts, e.g. [0, 1000]")
        values = tuple(value)
        for i, count in enumerate(values):
            if isinstance(count, bool) or not isinstance(count, int) or count < 0:
                background.fail(f"idle_connections[{i}]", f"must be an integer >= 0; got {_show(count)}")
            if count in values[:i]:
                background.fail("idle_connections", f"lists {count} twice; each value is one step")
        return values
    return (background.count("idle_connections", default=0, minimum=0),)


def _backend_args(table: _Table) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """[server.backend.NAME] args = [...]: extra flags for one of our backends."""
    entries = []
    for name in table.data:
        if name not in BACKENDS:
            table.fail(name, f"not one of our backends{did_you_mean(name, BACKENDS)}; they are {', '.join(BACKENDS)}")
        entry = table.table(name, required=False)
        entry.allow("args")
        entries.append((name, _server_args(entry)))
    return tuple(entries)


def _server_args(server: _Table) -> tuple[str, ...]:
    args = server.value("args", list, "an array of strings", default=[])
    for i, arg in enumerate(args):
        if not isinstance(arg, str):
            server.fail(f"args[{i}]", f"must be a string; got {_show(arg)}")
        flag = arg.split("=", 1)[0]
        if flag in _LAUNCHER_FLAGS:
            server.fail(f"args[{i}]", f"{flag} is set by the launcher for every backend")
        if flag in _REFUSED_FLAGS:
            server.fail(f"args[{i}]", f"{flag} is not taken from a scenario file: it {_REFUSED_FLAGS[flag]}")
    return tuple(args)


def _request_mix(top: _Table) -> tuple[RequestSpec, ...]:
    entries = top.value("request", list, "an array of tables ([[request]])", default=[])
    if not entries:
        top.fail("request", "at least one [[request]] table is required")
    specs: list[RequestSpec] = []
    seen: list[tuple[Any, ...]] = []  # what makes two entries the same request
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            top.fail(f"request[{i}]", f"must be a table ([[request]]); got {_show(entry)}")
        spec = _request(_Table(file=top.file, prefix=f"request[{i}]", data=entry))
        same = (spec.method, spec.path, spec.body, sorted(spec.headers.items()))
        if same in seen:
            top.fail(f"request[{i}]",
                     f"repeats request[{seen.index(same)}]; raise its weight instead")
        specs.append(spec)
        seen.append(same)
    return tuple(specs)


def _request(table: _Table) -> RequestSpec:
    table.allow("method", "path", "weight", "body", "headers")
    method = table.value("method", str, "a string", default="GET")
    if not is_token(method):
        table.fail("method", f"{method!r} is not an HTTP method (a token such as GET or POST)")
    if method != method.upper():
        table.fail("method", f"methods are case-sensitive: write {method.upper()!r}")
    path = table.value("path", str, "a string", default=None)
    if path is None:
        table.fail("path", "required, e.g. path = \"/\"")
    if not path.startswith("/"):
        table.fail("path", f"must start with '/'; got {path!r}")
    if not _PATH.fullmatch(path):
        table.fail("path", f"must be visible ASCII without spaces or '#' "
                           f"(percent-encode the rest); got {path!r}")
    headers = table.table("headers", required=False)
    seen: dict[str, str] = {}
    for header, value in headers.data.items():
        lower = header.lower()
        if not is_token(header):
            headers.fail(header, "is not a valid header name (a token)")
        if lower in _DRIVER_HEADERS:
            headers.fail(header, f"cannot be set here: {_DRIVER_HEADERS[lower]}")
        if lower in seen:
            headers.fail(header, f"repeats {seen[lower]!r} (header names ignore case)")
        if not isinstance(value, str) or not _HEADER_VALUE.fullmatch(value):
            headers.fail(header, f"must be a string of printable ASCII; got {_show(value)}")
        seen[lower] = header
    try:  # the rules above are stricter than the wire's: this does not fail
        return RequestSpec(method=method, path=path, body=table.value("body", str, "a string", default=""),
                           headers=dict(headers.data), weight=table.count("weight", default=1, minimum=1))
    except SpecError as exc:
        table.fail("", str(exc))
