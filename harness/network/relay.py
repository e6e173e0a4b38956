"""The relay: the userspace middle of an emulated link, in the style of mahimahi. This kernel
has no `netem`, so delay, jitter, loss and the bandwidth limit are done here, on real IP
packets between two real kernel TCP stacks:

    server ns: tun <-> relay <-> tun: client ns

Each packet read from one TUN device is written to the other after its one-way delay. Per
direction, in the order a packet meets them:
- loss: a share `loss` is dropped at random (Bernoulli, each direction on its own);
- bottleneck: with a rate set, packets leave one at a time at that rate from a drop-tail
  queue holding BOTTLENECK_QUEUE_S of it. The bandwidth is here rather than in the kernel's
  `tbf` on the sending TUN because there `tbf` is the sender's own qdisc: TCP Small Queues
  hold the sender back before that queue grows, so TCP never meets a bottleneck the way it
  does across a real path, a queue that fills and then drops. Measured at 20 Mbit/s and
  40 ms, 8 flows of 2 MB: here, 19.6 Mbit/s in all, a round trip of 138 ms under load and
  440 retransmissions; with `tbf`, 19.2 Mbit/s, 59 ms and none. One flow measures the same
  either way (19.2 and 19.3 Mbit/s: the rate counts IP bytes, so TCP's payload is 96.5% of
  it). Here it costs a few operations per packet, needs no `tc`, and `set_shape` changes it
  with the rest, leaving no qdisc to remove.
- delay: rtt/2, plus jitter: a uniform extra in ±jitter/2 per packet. Packets are never
  reordered: one that would overtake the packet before it leaves with it instead. Real paths
  rarely reorder, and reordering would make TCP see losses that jitter alone does not make
  (netem with jitter reorders; its users usually do not want that). So each direction is a
  FIFO line whose due times never decrease: a deque, no heap needed.

The loop waits in select(), whose timeout has microsecond resolution (epoll's and poll's are
whole milliseconds, which would make every packet up to 1 ms late), until the next due time
or a readable device. Each wake-up reads up to BATCH packets per device, then sends all that
is due. The relay reads at most one MTU per packet: the link sets the MTU (1500, Ethernet's)
and does not enable TUN offloads, so no packet is larger. At that MTU it carries about 2.4
to 3 Gbit/s of one bulk flow at 0 ms (about 2.2 µs of its CPU per packet, the receiving
side's TCP work included: a TUN write runs it on the writer's CPU), so larger packets are
not needed for speed, and the MTU stays the one real paths have.

Its control channel is stdin/stdout, one JSON object a line: {"shape": {...}} changes the
shape, {"stats": true} answers the counters. End of stdin means the owner is gone: the relay
exits and the kernel removes both TUN devices with it. It also dies with its parent
(PR_SET_PDEATHSIG), even one killed by SIGKILL.

Run as `python -m harness.network.relay --server-ns NS --client-ns NS --owner PID`; importing
this module does nothing.
"""

from __future__ import annotations

import argparse
import collections
import ctypes
import ctypes.util
import fcntl
import json
import os
import random
import select
import signal
import struct
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from harness.network import netns

TUNSETIFF = 0x400454CA  # linux/if_tun.h: _IOW('T', 202, int)
IFF_TUN = 0x0001  # IP packets, no Ethernet header
IFF_NO_PI = 0x1000  # no 4-byte packet-information prefix on each read and write
PR_SET_PDEATHSIG = 1  # linux/prctl.h
PR_SET_TIMERSLACK = 29  # linux/prctl.h
TIMER_SLACK_NS = 10_000  # the default 50 µs would add up to 50 µs to every wake-up
BATCH = 64  # packets read from one device per wake-up: a busy side cannot starve the other
EARLY_S = 20e-6  # a packet due within this is sent now: another select() round costs as much
# Wake-ups come late (about 50 µs here, on a virtual machine), so the relay learns by how much
# (a running mean, this weight per wake-up) and asks to wake that much before a due time. A
# relay descheduled for a while is not a late clock: what it learns is capped.
LATENESS_WEIGHT = 1 / 16
MAX_LATENESS_S = 1e-3
# select() lets the kernel wake it up to 0.1% of its timeout late (select_estimate_accuracy):
# 50 µs on a 50 ms delay. Sleeping at most 5 ms at a time keeps that under the timer slack.
MAX_SLEEP_S = 5e-3
BOTTLENECK_QUEUE_S = 0.1  # the drop-tail queue at a rate limit: 100 ms of it (one BDP at 100 ms)
BOTTLENECK_QUEUE_MIN_PACKETS = 32  # and never so few that one burst of a TCP window overflows it
LINE_LIMIT_BYTES = 64 * 2**20  # packets in flight per direction: beyond, the relay drops


@dataclass
class Counters:
    """What one direction of the link did since the relay started."""

    packets: int = 0  # read from the sending side
    bytes: int = 0
    delivered: int = 0  # written to the receiving side
    lost: int = 0  # dropped by the loss share
    overflow: int = 0  # dropped at a full bottleneck queue or delay line
    failed: int = 0  # refused by the receiving device (down, or its queue full)


@dataclass
class Direction:
    """One way across the link: a source device, the delay line, a sink device."""

    name: str
    source: int
    sink: int
    counters: Counters = field(default_factory=Counters)
    line: collections.deque[tuple[float, bytes]] = field(default_factory=collections.deque)
    line_bytes: int = 0
    last_due: float = 0.0  # due times never decrease: FIFO
    free_at: float = 0.0  # when the bottleneck has sent all it holds

    def take(self, relay: Relay, now: float, read_size: int) -> None:
        """Read what the source holds (up to BATCH packets) onto the delay line."""
        counters = self.counters
        for _ in range(BATCH):
            try:
                packet = os.read(self.source, read_size)
            except (BlockingIOError, InterruptedError):
                return
            size = len(packet)
            counters.packets += 1
            counters.bytes += size
            if relay.loss and relay.random() < relay.loss:
                counters.lost += 1
                continue
            if self.line_bytes + size > LINE_LIMIT_BYTES:
                counters.overflow += 1
                continue
            due = now
            if relay.rate_bps:
                backlog = self.free_at - now
                if backlog > 0 and backlog * relay.rate_bps / 8 + size > relay.queue_bytes:
                    counters.overflow += 1
                    continue
                self.free_at = max(self.free_at, now) + size * 8 / relay.rate_bps
                due = self.free_at
            delay = relay.delay_s
            if relay.jitter_s:
                delay = max(0.0, delay + relay.jitter_s * (relay.random() - 0.5))
            due += delay
            if due < self.last_due:  # never overtake: leave with the packet before instead
                due = self.last_due
            self.last_due = due
            self.line.append((due, packet))
            self.line_bytes += size

    def send_due(self, until: float) -> None:
        """Write every packet due by `until` to the sink, in order."""
        line, counters = self.line, self.counters
        while line and line[0][0] <= until:
            _, packet = line.popleft()
            self.line_bytes -= len(packet)
            try:
                os.write(self.sink, packet)
                counters.delivered += 1
            except OSError:  # EAGAIN (the receiving queue is full), EIO (the device is down)
                counters.failed += 1


class Relay:
    """The loop: two directions, a control channel, and the shape they all read."""

    def __init__(self, server_tun: int, client_tun: int, *, mtu: int, control: int = 0,
                 replies: Any = None, seed: int | None = None) -> None:
        self.to_client = Direction("to_client", source=server_tun, sink=client_tun)
        self.to_server = Direction("to_server", source=client_tun, sink=server_tun)
        self.read_size = mtu
        self.control = control
        self.replies = replies if replies is not None else sys.stdout
        self.random = random.Random(seed).random
        self.delay_s = self.jitter_s = self.loss = 0.0
        self.rate_bps = 0.0
        self.queue_bytes = 0.0
        self._pending = b""
        self.lateness = 0.0  # how late select() wakes after its timeout, a running mean

    def set_shape(self, *, rtt_ms: float = 0.0, jitter_ms: float = 0.0, loss: float = 0.0,
                  bandwidth_bps: float | None = None) -> None:
        self.delay_s = rtt_ms / 2000
        self.jitter_s = jitter_ms / 1000  # the full spread of a one-way delay: ±jitter/2
        self.loss = loss
        self.rate_bps = float(bandwidth_bps or 0)
        self.queue_bytes = max(self.rate_bps * BOTTLENECK_QUEUE_S / 8, BOTTLENECK_QUEUE_MIN_PACKETS * self.read_size)

    def run(self) -> None:
        """Relay until the control channel closes."""
        directions = (self.to_client, self.to_server)
        by_source = {direction.source: direction for direction in directions}
        watched = [self.control, *by_source]
        timeout: float | None = None
        while True:
            asleep = time.monotonic()
            try:
                readable, _, _ = select.select(watched, [], [], timeout)
            except InterruptedError:
                readable = []
            now = time.monotonic()
            if not readable and timeout:  # woke by the clock: learn how late it does
                self.lateness += (now - asleep - timeout - self.lateness) * LATENESS_WEIGHT
                self.lateness = min(max(self.lateness, 0.0), MAX_LATENESS_S)
            for fd in readable:
                if fd == self.control:
                    if not self._serve_control():
                        return
                else:
                    by_source[fd].take(self, now, self.read_size)
            now = time.monotonic()
            next_due: float | None = None
            for direction in directions:
                direction.send_due(now + EARLY_S)
                if direction.line and (next_due is None or direction.line[0][0] < next_due):
                    next_due = direction.line[0][0]
            # A wake-up that comes early polls again (timeout 0) until a packet is due.
            timeout = None if next_due is None else min(MAX_SLEEP_S, max(
                0.0, next_due - time.monotonic() - self.lateness))

    def stats(self) -> dict[str, Any]:
        directions = (self.to_client, self.to_server)
        return {**{direction.name: asdict(direction.counters) for direction in directions},
                "queued": sum(len(direction.line) for direction in directions)}

    def _serve_control(self) -> bool:
        """Answer each complete command line; False at end of input."""
        data = os.read(self.control, 65536)
        if not data:
            return False
        *lines, self._pending = (self._pending + data).split(b"\n")
        for line in lines:
            if line.strip():
                self.reply(self._command(line))
        return True

    def _command(self, line: bytes) -> dict[str, Any]:
        try:
            command = json.loads(line)
            if "shape" in command:
                self.set_shape(**command["shape"])
                return {"ok": True}
            if "stats" in command:
                return {"stats": self.stats()}
            return {"error": f"unknown command {line!r}"}
        except (ValueError, TypeError) as error:
            return {"error": f"bad command {line!r}: {error}"}

    def reply(self, message: dict[str, Any]) -> None:
        self.replies.write(json.dumps(message) + "\n")
        self.replies.flush()


def open_tun(namespace: str, device: str) -> int:
    """A TUN device named `device`, made inside `namespace` (the namespace the opening thread
    is in when /dev/net/tun is opened owns it): its non-blocking descriptor. The device lives
    as long as the descriptor, so the relay's exit removes it."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        netns.enter(namespace)
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH22x", device.encode(), IFF_TUN | IFF_NO_PI))
        except OSError as error:
            os.close(fd)
            raise OSError(error.errno, f"cannot make TUN device {device} in {namespace}: {error.strerror}") from None
        return fd
    finally:
        netns.enter_fd(home)
        os.close(home)


def _bind_to_owner(owner: int, cpus: tuple[int, ...]) -> None:
    """Die with the owner, even killed by SIGKILL; wake up on time; run on `cpus`."""
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != owner:  # the owner died before prctl took effect
        raise SystemExit(f"relay: owner {owner} is gone")
    libc.prctl(PR_SET_TIMERSLACK, TIMER_SLACK_NS, 0, 0, 0)
    if cpus:
        try:
            os.sched_setaffinity(0, cpus)
        except OSError as error:
            raise SystemExit(f"relay: cannot run on CPUs {','.join(map(str, cpus))}: {error.strerror}") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.network.relay",
                                     description="Relay IP packets between two TUN devices, shaped.")
    parser.add_argument("--server-ns", required=True, help="namespace of the server's side")
    parser.add_argument("--client-ns", required=True, help="namespace of the client's side")
    parser.add_argument("--device", default="cbtun", help="TUN device name in each namespace")
    parser.add_argument("--mtu", type=int, default=1500, help="largest packet, in bytes")
    parser.add_argument("--owner", type=int, required=True, help="pid of the run that owns this link")
    parser.add_argument("--cpus", default="", help="CPUs to run on, e.g. 1 or 0,1 (default: any)")
    parser.add_argument("--seed", type=int, default=None, help="seed of the loss and jitter draws")
    args = parser.parse_args(argv)
    try:
        cpus = tuple(int(cpu) for cpu in args.cpus.split(",") if cpu)
    except ValueError:
        parser.error(f"--cpus {args.cpus!r}: give CPU numbers separated by commas")
    try:
        _bind_to_owner(args.owner, cpus)
        server_tun = open_tun(args.server_ns, args.device)
        client_tun = open_tun(args.client_ns, args.device)
    except OSError as error:
        print(f"relay: {error.strerror or error}", file=sys.stderr)
        return 1
    os.set_blocking(0, False)
    relay = Relay(server_tun, client_tun, mtu=args.mtu, seed=args.seed)
    relay.set_shape()
    relay.reply({"ready": True, "pid": os.getpid()})
    relay.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
