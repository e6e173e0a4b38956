"""Distributed load: Locust's master/worker runners carry the users, our messages the latencies.

Imported only by the driver process (harness.drivers.locust_driver). The master keeps the
timeline and writes the results; users run only in the workers. Besides Locust's own
spawn/stop messages (runner.start on the master), the two sides exchange:

    worker -> master  concurbench_hello   {"hostname"}: handlers registered, send me levels
    master -> worker  concurbench_welcome null: counted in (a master that is quitting stays
                      silent, and a worker that can rejoin waits for the next master)
    master -> worker  concurbench_level   {"index", "spec", "slot", "workers"}: one load level;
                      "spec" carries this worker's share of the background sockets
    worker -> master  concurbench_ready   {"index", "error"}: configured, idle sockets open
    master -> worker  concurbench_window  {"index", "open"}: close the open window now, then
                      open window `open` (a repetition), or none (null: the level is over)
    worker -> master  concurbench_batch   once a second of the open window, and when it closes:
                      {"index", "rep" (-1: the warm-up), "second", "final", "batches",
                      "count", "sum_us", "max_us", "histogram", "sent_histogram" (open loop),
                      "sent_max_us", "errors" (by kind), "errors_all", "warm", "span_ns"};
                      the final batch of a measured window adds "unfinished",
                      "unfinished_max_us", "starved_users", "background", "cpu_percent",
                      "duration_s", "requests" and "window_errors" (the window's totals)

A window's boundaries are the master's, but each worker gates its requests on its own clock
when the message arrives: clocks of different machines never need to agree. Batches carry
encoded HdrHistograms (harness.metrics' text form), which the master merges losslessly.
"""

from __future__ import annotations

import signal
import socket
import sys

import gevent
import gevent.event
from locust.env import Environment
from locust.exception import RPCError

from harness.drivers.dist_protocol import DistributedError, DistributedUser, WELCOME_TIMEOUT_S
from harness.drivers.dist_master import Board
from harness.drivers.dist_worker import WorkerSide



def start_master(bind: str, port: int) -> Board:
    """Listen for workers on bind:port (0: any free port, see board.runner.server.port)."""
    env = Environment(user_classes=[DistributedUser])
    try:
        runner = env.create_master_runner(bind, port)
    except (SystemExit, RPCError) as exc:  # Locust logs a busy port, then calls sys.exit
        raise DistributedError(f"cannot listen for workers on {bind}:{port}: "
                               f"{'address in use' if isinstance(exc, SystemExit) else exc}", exit_status=2) from None
    return Board(runner)


def serve_worker(master_host: str, master_port: int, stop: gevent.event.Event, *, rejoin: bool = False) -> int:
    """Join the master and run the levels it sends until it quits or this process is stopped.
    With `rejoin`, then wait for the next master on the same address (`concurbench run` starts
    one per backend)."""
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
        side = WorkerSide(runner)
        if not side.welcomed.wait(timeout=WELCOME_TIMEOUT_S):  # the last master, quitting
            runner.quit()
            runner.client.close(linger=0)
            if rejoin:
                continue
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

