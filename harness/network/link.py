"""One run's emulated link: two network namespaces (the server's and the client's), a TUN
device in each with a point-to-point address, and the relay process between them. Made when
a Link is made, shaped by `set_shape` without being rebuilt, removed by `close` (or the end of
a `with` block, whatever ended it).

Names carry the run's id and the owner's pid (`cb-RUN-PID-srv`), so two runs never collide
and `sweep_leftovers` can tell a dead run's leftovers (owner gone: SIGKILLed) from a live
run's, which it never touches. The relay dies with its owner by itself (PR_SET_PDEATHSIG and
the end of its stdin), and its TUN devices go with it; the namespaces are what a killed run
leaves behind.

Inside its namespace, a server bound to 127.0.0.1 is on that namespace's own loopback: only
`server_addr` is reachable from the client's side.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import psutil

from harness.network import netns
from harness.network.netns import setns_preexec
from harness.network.relay import Counters
from harness.network.shape import Shape

__all__ = ["Link", "LinkError", "RelayCounters", "missing", "setns_preexec", "sweep_leftovers"]

SERVER_ADDR = "10.77.0.1"  # private (RFC 1918) and alone in each run's namespaces: no clash
CLIENT_ADDR = "10.77.0.2"
DEVICE = "cbtun"  # the same name in both namespaces: each has its own
MTU = 1500  # Ethernet's: what real clients' paths carry
PREFIX = "cb-"
_NAME = re.compile(rf"^{PREFIX}(?P<run>.+)-(?P<pid>\d+)-(?P<side>srv|cli)$")
_RUN_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
RELAY_MODULE = "harness.network.relay"
PROJECT_ROOT = Path(__file__).resolve().parents[2]  # where `-m harness.network.relay` is found
START_TIMEOUT_S = 10.0  # a relay that is not ready by then is not coming
REPLY_TIMEOUT_S = 5.0
IP_TIMEOUT_S = 10.0  # an `ip` command takes milliseconds; one that hangs must not hang the run
CAP_NET_ADMIN, CAP_SYS_ADMIN = 12, 21  # linux/capability.h: devices and addresses; setns and mounts


class LinkError(Exception):
    """The link could not be made, shaped or removed; the message says what and why."""


@dataclasses.dataclass(frozen=True)
class RelayCounters:
    """What the link did since it was made, per direction (packets read, lost to the loss
    share, dropped at a full bottleneck queue, delivered), the packets on their way now, and
    the packets the TUN devices dropped because the relay did not read them in time (a relay
    that cannot keep up: loss nobody asked for)."""

    to_server: Counters
    to_client: Counters
    queued: int
    device_drops: int

    def since(self, earlier: RelayCounters) -> RelayCounters:
        """What happened between `earlier` and these: a step's share."""
        def minus(now: Counters, then: Counters) -> Counters:
            return Counters(**{name: value - getattr(then, name) for name, value in dataclasses.asdict(now).items()})
        return RelayCounters(to_server=minus(self.to_server, earlier.to_server),
                             to_client=minus(self.to_client, earlier.to_client),
                             queued=self.queued, device_drops=self.device_drops - earlier.device_drops)


def missing() -> str | None:
    """Why a shaped run cannot start on this machine, in one line; None when it can."""
    if not sys.platform.startswith("linux"):
        return "an emulated network needs Linux (network namespaces and TUN devices)"
    if os.geteuid() != 0:
        return "an emulated network needs root (it makes network namespaces and TUN devices)"
    if not _has_capabilities(CAP_NET_ADMIN, CAP_SYS_ADMIN):
        return ("an emulated network needs CAP_NET_ADMIN and CAP_SYS_ADMIN, which this root lacks "
                "(a container without them?)")
    if not os.path.exists("/proc/self/ns/net"):
        return "an emulated network needs network namespaces, which this kernel lacks"
    if not os.path.exists("/dev/net/tun"):
        return "an emulated network needs /dev/net/tun, which this machine lacks"
    if shutil.which("ip") is None:  # tc is not needed: the relay limits the bandwidth
        return "an emulated network needs the `ip` command (iproute2), which is not on PATH"
    return None


def _has_capabilities(*capabilities: int) -> bool:
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return True  # cannot tell: let `ip` say
    match = re.search(r"^CapEff:\s*([0-9a-f]+)$", status, re.MULTILINE)
    effective = int(match[1], 16) if match else ~0
    return all(effective >> capability & 1 for capability in capabilities)


class Link:
    """Two namespaces joined by a shaped link; `server_addr` in `server_ns`, `client_addr` in
    `client_ns`. Use as a context manager, or call `close`.

    The relay dies when the *thread* that made the Link ends (PR_SET_PDEATHSIG follows the
    forking thread): make it on a thread that lives as long as the run.
    """

    server_addr = SERVER_ADDR
    client_addr = CLIENT_ADDR
    device = DEVICE
    mtu = MTU

    def __init__(self, run_id: str, *, relay_cpus: tuple[int, ...] = ()) -> None:
        if not _RUN_ID.match(run_id):
            raise LinkError(f"run id {run_id!r}: use 1 to 64 letters, digits, '.', '_' or '-'")
        reason = missing()
        if reason:
            raise LinkError(reason)
        owner = os.getpid()
        self.run_id = run_id
        self.server_ns = f"{PREFIX}{run_id}-{owner}-srv"
        self.client_ns = f"{PREFIX}{run_id}-{owner}-cli"
        self.shape = Shape()
        self._namespaces: list[str] = []
        self._relay: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._closed = False
        try:
            for name in (self.server_ns, self.client_ns):
                _ip("netns", "add", name)
                self._namespaces.append(name)
            self._relay = self._start_relay(owner, relay_cpus)
            self._address(self.server_ns, self.server_addr, self.client_addr)
            self._address(self.client_ns, self.client_addr, self.server_addr)
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> Link:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Link {self.server_ns} <-> {self.client_ns}: {self.shape.describe()}>"

    @property
    def relay_pid(self) -> int | None:
        return self._relay.pid if self._relay is not None else None

    def set_shape(self, shape: Shape) -> None:
        """Shape the link from now on; packets already on their way keep their times."""
        self._ask({"shape": dataclasses.asdict(shape)})  # the relay's set_shape takes Shape's fields
        self.shape = shape

    def relay_counters(self) -> RelayCounters:
        stats = self._ask({"stats": True})["stats"]
        drops = sum(netns.run_in(name, lambda: _tx_drops(self.device)) for name in (self.server_ns, self.client_ns))
        return RelayCounters(to_server=Counters(**stats["to_server"]), to_client=Counters(**stats["to_client"]),
                             queued=stats["queued"], device_drops=drops)

    def relay_cpu_seconds(self) -> float:
        """The relay's user + system CPU time so far, from /proc (0.0 once it is gone). System
        time includes the receiving side's TCP work: a TUN write runs it on the writer's CPU."""
        if self._relay is None:
            return 0.0
        return process_cpu_seconds(self._relay.pid)

    def close(self) -> None:
        """Stop the relay (its TUN devices go with it) and delete both namespaces. Safe to
        call again; raises LinkError if something stays. Stop the processes started inside
        first: one still running keeps its namespace alive, nameless, until it exits."""
        if self._closed:
            return
        self._closed = True
        problems = []
        if self._relay is not None:
            _stop(self._relay)
        for name in self._namespaces:
            try:
                _ip("netns", "delete", name)
            except LinkError as error:
                if os.path.exists(netns.path(name)):
                    problems.append(str(error))
        self._namespaces.clear()
        if problems:
            raise LinkError("; ".join(problems))

    # -- making it ----------------------------------------------------------------------------
    def _start_relay(self, owner: int, cpus: tuple[int, ...]) -> subprocess.Popen[bytes]:
        argv = [sys.executable, "-m", RELAY_MODULE, "--server-ns", self.server_ns, "--client-ns", self.client_ns,
                "--device", self.device, "--mtu", str(self.mtu), "--owner", str(owner),
                "--cpus", ",".join(map(str, cpus))]
        path = os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")]))
        relay = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 env={**os.environ, "PYTHONPATH": path}, start_new_session=True)
        self._relay = relay  # close() stops it whatever happens next
        ready = self._read_reply(relay, START_TIMEOUT_S)
        if not ready.get("ready"):
            raise LinkError(f"the relay did not start: {ready}")
        return relay

    def _address(self, namespace: str, local: str, peer: str) -> None:
        # addrgenmode none: no IPv6 link-local address, so no router solicitations or MLD
        # reports cross the link and the relay's counters are the run's packets alone.
        _ip("-n", namespace, "-batch", "-", stdin="\n".join([
            "link set lo up",
            f"link set {self.device} addrgenmode none",
            f"addr add {local} peer {peer} dev {self.device}",
            f"link set {self.device} mtu {self.mtu} up",
        ]) + "\n")

    # -- talking to the relay -----------------------------------------------------------------
    def _ask(self, command: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            relay = self._relay
            if relay is None or self._closed or relay.stdin is None:
                raise LinkError(f"{self!r} is closed")
            try:
                relay.stdin.write(json.dumps(command).encode() + b"\n")
                relay.stdin.flush()
            except OSError:
                raise LinkError(f"the relay of {self.server_ns} has stopped: {_tail(relay)}") from None
            reply = self._read_reply(relay, REPLY_TIMEOUT_S)
        if "error" in reply:
            raise LinkError(f"the relay refused {command}: {reply['error']}")
        return reply

    def _read_reply(self, relay: subprocess.Popen[bytes], timeout: float) -> dict[str, Any]:
        assert relay.stdout is not None
        ready, _, _ = select.select([relay.stdout], [], [], timeout)
        if not ready:
            relay.kill()
            raise LinkError(f"the relay did not answer within {timeout:g} s")
        line = relay.stdout.readline()
        if not line:  # its end of output: it has stopped, or is about to
            raise LinkError(f"the relay has stopped: {_tail(relay)}")
        reply: dict[str, Any] = json.loads(line)
        return reply


def _tx_drops(device: str) -> int:
    """Packets the calling thread's namespace dropped on their way out of `device` (the TX
    drop column of /proc/net/dev): for a TUN device, those its reader did not take in time."""
    for line in Path("/proc/thread-self/net/dev").read_text().splitlines()[2:]:
        name, _, numbers = line.partition(":")
        if name.strip() == device:
            return int(numbers.split()[11])
    return 0


def _ip(*args: str, stdin: str | None = None) -> None:
    try:
        result = subprocess.run(["ip", *args], input=stdin, capture_output=True, text=True, timeout=IP_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise LinkError(f"`ip {' '.join(args)}` failed: {error}") from None
    if result.returncode != 0:
        message = (result.stderr or result.stdout).strip().splitlines()
        raise LinkError(f"`ip {' '.join(args)}` failed: {message[-1] if message else f'exit {result.returncode}'}")


def _stop(relay: subprocess.Popen[bytes]) -> None:
    """End of stdin asks the relay to exit; SIGKILL to its group if it does not at once."""
    try:
        if relay.stdin is not None:
            relay.stdin.close()
    except OSError:
        pass
    try:
        relay.wait(1.0)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(relay.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        relay.wait()
    for stream in (relay.stdout, relay.stderr):
        if stream is not None:
            stream.close()


def _tail(relay: subprocess.Popen[bytes]) -> str:
    """The relay's last words: its exit and the end of its stderr."""
    try:
        code = relay.wait(1.0)
    except subprocess.TimeoutExpired:
        return "still running"
    err = relay.stderr.read().decode(errors="replace").strip() if relay.stderr is not None else ""
    return f"exit {code}" + (f": {err.splitlines()[-1]}" if err else "")


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (psutil reads /proc/PID/stat); 0.0 once
    it is gone."""
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return 0.0
    return float(times.user + times.system)


# -- what killed runs leave ---------------------------------------------------------------------
def sweep_leftovers() -> list[str]:
    """Remove what runs whose owner is dead left behind: relay processes, processes inside
    their namespaces, and the namespaces. Returns one line per thing removed. A live run's
    (its owner's pid is running) is never touched."""
    removed = []
    for pid, owner, what in _relay_processes():
        if not _alive(owner):
            if _kill(pid):
                removed.append(f"relay process {pid} ({what})")
    for name in _namespaces():
        match = _NAME.match(name)
        if match is None or _alive(int(match["pid"])):
            continue
        for pid in _processes_in(name):
            if _kill(pid):
                removed.append(f"process {pid} in namespace {name}")
        try:
            _ip("netns", "delete", name)
            removed.append(f"namespace {name}")
        except LinkError:
            if not os.path.exists(netns.path(name)):  # another sweep got there first
                continue
            raise
    return removed


def _namespaces() -> list[str]:
    try:
        return sorted(name for name in os.listdir(netns.NETNS_DIR) if name.startswith(PREFIX))
    except OSError:
        return []


def _alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie, killed and not yet reaped, does not)."""
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def _kill(pid: int) -> bool:
    try:
        os.kill(pid, signal.SIGKILL)
        return True
    except ProcessLookupError:
        return False


def _relay_processes() -> list[tuple[int, int, str]]:
    """(pid, owner pid, run) of every relay process running on this machine."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        words = process.info["cmdline"] or []
        if RELAY_MODULE not in words or "--owner" not in words or "--server-ns" not in words:
            continue
        try:
            owner = int(words[words.index("--owner") + 1])
        except (ValueError, IndexError):
            continue
        server_ns = words[words.index("--server-ns") + 1] if words.index("--server-ns") + 1 < len(words) else "?"
        found.append((process.pid, owner, server_ns.removesuffix("-srv")))
    return found


def _processes_in(name: str) -> list[int]:
    """Pids of the processes whose network namespace is the named one (as `ip netns pids`)."""
    try:
        target = os.stat(netns.path(name))
    except OSError:
        return []
    pids = []
    for pid in psutil.pids():
        try:
            mine = os.stat(f"/proc/{pid}/ns/net")
        except OSError:
            continue
        if (mine.st_dev, mine.st_ino) == (target.st_dev, target.st_ino):
            pids.append(pid)
    return pids
