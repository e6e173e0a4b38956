"""The two roles of a distributed run: the master that keeps the timeline (start_master),
and a worker that runs the levels it is sent (serve_worker). The messages between them are
in protocol.py. Imported only by the driver process (harness.drivers.locust.driver).
"""

from __future__ import annotations

import signal
import socket
import sys

import gevent
import gevent.event
from locust.env import Environment
from locust.exception import RPCError

from harness.drivers.distributed.protocol import DistributedError, DistributedUser, WELCOME_TIMEOUT_S
from harness.drivers.distributed.master import Board
from harness.drivers.distributed.worker import WorkerLimits, WorkerSide



def start_master(bind: str, port: int, token: str) -> Board:
    """Listen for workers on bind:port (0: any free port, see board.runner.server.port); only
    those that prove they know `token` are counted in."""
    env = Environment(user_classes=[DistributedUser])
    try:
        runner = env.create_master_runner(bind, port)
    except (SystemExit, RPCError) as exc:  # Locust logs a busy port, then calls sys.exit
        raise DistributedError(f"cannot listen for workers on {bind}:{port}: "
                               f"{'address in use' if isinstance(exc, SystemExit) else exc}", exit_status=2) from None
    return Board(runner, token)


def serve_worker(master_host: str, master_port: int, stop: gevent.event.Event, *, token: str,
                 limits: WorkerLimits = WorkerLimits(), rejoin: bool = False) -> int:
    """Join the master and run the levels it sends, within `limits`, until it quits or this
    process is stopped; a master that cannot prove it knows `token` is left at once. With
    `rejoin`, then wait for the next master on the same address (`concurbench run` starts one
    per backend)."""
    try:
        socket.getaddrinfo(master_host, master_port, type=socket.SOCK_STREAM)
    except OSError as exc:
        print(f"locust_driver: cannot resolve the master {master_host!r}: {exc}", file=sys.stderr)
        return 2
    while True:
        env = Environment(user_classes=[DistributedUser])
        try:
            # Locust retries for 5 minutes. Until it is in, SIGTERM and SIGINT keep their
            # default effect: nothing runs yet, so nothing needs a clean stop.
            runner = env.create_worker_runner(master_host, master_port)
        except ConnectionError:
            if rejoin:
                continue
            print(f"locust_driver: no master answered at {master_host}:{master_port}", file=sys.stderr)
            return 1
        side = WorkerSide(runner, token, limits)
        side.answered.wait(timeout=WELCOME_TIMEOUT_S)
        if not side.welcomed.is_set():  # the last master, quitting; or one without the token
            side.leave()
            runner.quit()
            runner.client.close(linger=0)
            if side.answered.is_set():
                print(f"locust_driver: the master at {master_host}:{master_port} does not know this worker's "
                      "token: left it", file=sys.stderr, flush=True)
                gevent.sleep(1.0)  # before asking it (or the next master there) again
            if rejoin:
                continue
            if not side.answered.is_set():
                print(f"locust_driver: the master at {master_host}:{master_port} is quitting", file=sys.stderr)
            return 1
        handlers = [gevent.signal_handler(signum, stop.set) for signum in (signal.SIGTERM, signal.SIGINT)]
        while len(runner.greenlet) and not stop.wait(timeout=0.2):  # the master's "quit" empties it
            pass
        if stop.is_set():
            env.events.quitting.fire(environment=env, reverse=True)  # tells the master this worker left
            runner.quit()
        side.close()
        runner.client.close(linger=0)
        for handler in handlers:
            handler.cancel()
        if stop.is_set() or not rejoin:
            return 0

