"""What both sides of a distributed run share: the messages, limits, the user class, batches.

Locust's master/worker runners carry the users, our messages the latencies. Imported only
by the driver process (harness.drivers.locust.driver). The master keeps the timeline and
writes the results; users run only in the workers. Besides Locust's own spawn/stop
messages (runner.start on the master), the two sides exchange:

    worker -> master  concurbench_hello   {"hostname", "nonce"}: handlers registered
    master -> worker  concurbench_welcome {"nonce", "proof"}: the master knows the run's token
                      (a master that is quitting stays silent, and a worker that can rejoin
                      waits for the next master); a worker whose check fails leaves
    worker -> master  concurbench_proof   {"proof"}: so does the worker; only then is it
                      counted in. One without it is told to quit and never given users
    master -> worker  concurbench_level   {"index", "spec", "slot", "workers"}: one load level;
                      "spec" carries this worker's share of the background sockets
    worker -> master  concurbench_ready   {"index", "error"}: configured, idle sockets open
    master -> worker  concurbench_epoch   {"index", "wall_ns"}: the open-loop schedule of the
                      level starts at this wall-clock instant (time.time_ns()) on every worker
    master -> worker  concurbench_window  {"index", "open"}: close the open window now, then
                      open window `open` (a repetition), or none (null: the level is over)
    worker -> master  concurbench_batch   once a second of the open window, and when it closes:
                      {"index", "rep" (-1: the warm-up), "second", "final", "batches",
                      "count" (answers), "errors", "tally" (window.tally_message: what the
                      users recorded since the last batch; null in the warm-up),
                      "errors_all", "warm", "span_ns"}; the final batch of a measured window
                      adds "unfinished", "unfinished_max_us", "waiting" (starved users and
                      dropped slots at the close: window.Waiting), "background",
                      "cpu_percent", and the window's totals on this worker's own clock:
                      "duration_s", "requests", "good", "window_errors"

The token is a secret both sides are given (harness.drivers.TOKEN_ENV; `concurbench run --remote-workers`
makes one per run and prints it with the worker command), never sent: each side proves it
knows it with an HMAC over both sides' fresh nonces, so a proof cannot be replayed, and
nobody on the network can join a run or pose as its master.

A window's boundaries are the master's, but each worker cuts its recorder on its own clock
when the message arrives, and its rates are its counts over its own span: clocks of
different machines never need to agree, except for the open-loop epoch (wall clocks, which
agree exactly on one machine and to NTP's precision across machines). Batches carry
encoded HdrHistograms (harness.results.metrics' text form), which the master merges losslessly.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import socket
import time
from collections.abc import Iterator

import gevent
import gevent.event

from harness.drivers.locust.client import _NS, RequestMix
from harness.drivers.locust.user import RawHttpUser, Recorder
from harness.drivers.spec import DriverSpec

HELLO, WELCOME, PROOF, LEVEL, READY, EPOCH, WINDOW, BATCH = (
    f"concurbench_{name}" for name in ("hello", "welcome", "proof", "level", "ready", "epoch", "window", "batch"))
WELCOME_TIMEOUT_S = 2.0  # after Locust's ack: a master that is up answers in milliseconds
READY_TIMEOUT_S = 30.0  # a level's idle sockets open, and the previous level's users stop, within this
# The last batch of a window crosses the network after the window closes; a worker whose CPU
# is saturated answers late (Locust itself waits 3 heartbeats of 1 s before calling it missing).
FINAL_BATCH_TIMEOUT_S = 10.0
POLL_S = 0.005
# A worker sends a second's batch when that second ends on its own clock; the master prints
# its progress line for the second this much later, so the batches are in by then.
PROGRESS_LAG_NS = 100_000_000


def new_nonce() -> str:
    return secrets.token_hex(16)


def proof(token: str, role: str, first: str, second: str) -> str:
    """What `role` ("master" or "worker") sends to show it knows `token`: bound to both
    nonces, in the order that side uses, so neither side's proof serves as the other's."""
    return hmac.new(token.encode(), f"{role}|{first}|{second}".encode(), hashlib.sha256).hexdigest()


def proves(token: str, role: str, first: str, second: str, claimed: object) -> bool:
    return isinstance(claimed, str) and hmac.compare_digest(proof(token, role, first, second), claimed)


class DistributedError(Exception):
    """The workers cannot carry the run: too few joined, one left or went silent."""

    def __init__(self, message: str, *, exit_status: int = 1) -> None:
        super().__init__(message)
        self.exit_status = exit_status


class DistributedUser(RawHttpUser):
    """The one user class of a distributed run. Locust spawns users by class name, so the
    class exists on both sides; each worker configures it from the level the master sends."""

    abstract = False
    configured = False
    slot = 0  # open loop: this worker's first slot of the level's timeline
    slot_step = 1  # open loop: the number of workers sharing the timeline

    @classmethod
    def configure(cls, spec: DriverSpec, recorder: Recorder, family: socket.AddressFamily, address: tuple, *,
                  slot: int, workers: int) -> None:
        cls.mix, cls.recorder, cls.keep_alive = RequestMix(spec), recorder, spec.keep_alive
        cls.family, cls.address = family, address
        cls.slot, cls.slot_step = slot, workers
        cls.configured = True
        cls.period_ns, cls.stride = (max(1, int(_NS / spec.rate)), max(spec.users, 1)) if spec.rate else (None, 1)

    def on_start(self) -> None:
        while not self.configured:  # not given a level (the master refuses one that joins mid-run)
            gevent.sleep(1)

    def _schedule(self, rec: Recorder) -> Iterator[int]:
        """Open loop: user j of worker w (of n) takes slot w + j*n, so the workers' users
        interleave on one timeline as one process's would; it starts with the first user."""
        slot = self.slot + rec.joined * self.slot_step
        rec.joined += 1
        if not rec.epoch_ns:
            rec.epoch_ns = time.perf_counter_ns()
        period, stride, epoch = self.period_ns, self.stride, rec.epoch_ns
        assert period is not None
        while True:
            yield epoch + slot * period
            slot += stride


def share(total: int, *, slot: int, workers: int) -> int:
    """Worker `slot`'s part of `total` things split as evenly as possible."""
    return total // workers + (slot < total % workers)


