"""interpreters: N sub-interpreters in one process (PEP 684, PEP 734), each with its own GIL,
all accepting on the one listening socket; each serves a thread per connection.

The main interpreter opens the listener, prints the startup line and takes the stop signals;
one of its threads per sub-interpreter runs that interpreter until it returns. Each
sub-interpreter runs threaded's model on its own copy of the listener: the shared blocking
connection loop, a thread per connection. Threads of one interpreter take turns on its GIL,
as in threaded; the interpreters run in parallel, as forking's processes do, in one process.

Why threads in each interpreter rather than a selectors loop in each: with a loop, a /cpu
request stalls every other connection of its interpreter, and the kernel hands a new
connection to whichever interpreter accepts first, blind to what it is busy with: pre-fork
with event loops, and head-of-line blocking behind CPU work. With threads, an idle keep-alive
connection parks a thread and a CPU-bound request shares its interpreter's GIL, so no
connection waits for another to finish. A loop costs less per idle connection (no thread);
threads keep this backend threaded plus one change, a GIL per interpreter, which is the
comparison it is here for.

Python 3.14 has `concurrent.interpreters`; 3.13 has the same calls in `_interpreters`.
"""

from __future__ import annotations

import errno
import importlib
import fcntl
import os
import pickle
import platform
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

try:
    _pep734: Any = importlib.import_module("concurrent.interpreters")  # 3.14
except ImportError:
    _pep734 = None
    try:
        import _interpreters  # 3.13: the module underneath it
    except ImportError:
        raise ImportError("the interpreters backend needs Python 3.13+ (concurrent.interpreters or "
                          f"_interpreters); this is {platform.python_version()}") from None

from servers.app import CPU_PIN, calibrate_cpu
from servers.backends.blocking import BlockingConnection
from servers.backends.listener import BACKLOG, announce, make_listener
from servers.backends.log import log
from servers.backends.server import BaseServer
from servers.backends.signals import Stop, StopSignals
from servers.backends.threaded import ThreadedServer
from servers.config import ServerConfig

# What each sub-interpreter runs. A new interpreter shares no objects with this one: its
# __main__ gets copies of ints, str, bytes, tuples and None (the config comes pickled, as
# 3.14's Interpreter.call passes what is not shareable), and its sys.path is the one the
# process started with, without what was added to ours since (checked): the checkout goes on.
_BOOTSTRAP = """\
import sys
if root not in sys.path:
    sys.path.insert(0, root)
from servers.backends.interpreters import serve_in_interpreter
serve_in_interpreter(config, listener=listener, stop=stop, ready=ready, slots=slots)
"""
_ROOT = str(Path(__file__).resolve().parents[2])  # the checkout: the directory holding servers/
_STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}

# Extension modules: an isolated interpreter refuses one that is not ready for a GIL of its
# own (single-phase init) with ImportError, as 3.13 does readline, _curses and _tkinter.
# Every one the servers import loads on 3.13.0 and 3.13.5, with and without the GIL
# (_socket, select, _struct, _pickle, _queue, fcntl, math, _datetime through email.utils,
# ...; checked), so none has to be kept off the server's path.


class SubInterpreter:
    """One interpreter with its own GIL (the "isolated" configuration): 3.14's
    concurrent.interpreters, or the same three calls on 3.13's _interpreters."""

    def __init__(self) -> None:
        if _pep734 is not None:
            self._interpreter = _pep734.create()
        else:
            self._id = _interpreters.create("isolated")

    def run(self, code: str, **shared: object) -> str | None:
        """Bind `shared` in its __main__ and run `code` there. This thread waits until the code
        returns; the other threads of this interpreter carry on meanwhile. Returns the error
        that ended the code, in a line, or None."""
        if _pep734 is not None:
            self._interpreter.prepare_main(shared)
            try:
                self._interpreter.exec(code)
            except _pep734.ExecutionFailed as failed:
                return str(failed.excinfo.formatted)
            return None
        _interpreters.set___main___attrs(self._id, shared)
        error = _interpreters.exec(self._id, code)
        return None if error is None else str(error.formatted)

    def close(self) -> None:
        """Destroy it. This waits for every thread it still runs."""
        if _pep734 is not None:
            self._interpreter.close()
        else:
            _interpreters.destroy(self._id)


class SharedSlots:
    """--max-connections across interpreters, which share no objects (nor a lock): a pipe
    holding one byte per free slot, as make's jobserver hands out jobs to processes. Reading
    a byte takes a slot and writing it back frees it; the kernel makes each atomic."""

    def __init__(self, take_fd: int, give_fd: int) -> None:
        self.take_fd = take_fd  # non-blocking: no byte left means over capacity
        self.give_fd = give_fd

    @classmethod
    def create(cls, slots: int) -> SharedSlots:
        take_fd, give_fd = os.pipe()
        os.set_blocking(take_fd, False)
        os.set_blocking(give_fd, False)  # while filling: a full pipe must not block the start
        try:
            if slots > 65536:  # Linux's default pipe size; a bigger one is capped by fs.pipe-max-size
                fcntl.fcntl(give_fd, fcntl.F_SETPIPE_SZ, slots)
        except OSError:
            pass  # the write below says what fits
        filled = os.write(give_fd, b"s" * slots)
        os.set_blocking(give_fd, True)  # a slot given back always finds room
        if filled < slots:
            os.close(take_fd)
            os.close(give_fd)
            raise OSError(errno.EINVAL, f"--max-connections {slots} is more than a pipe holds here ({filled}): "
                                        "raise fs.pipe-max-size")
        return cls(take_fd, give_fd)

    def take(self) -> bool:
        try:
            return os.read(self.take_fd, 1) != b""
        except BlockingIOError:
            return False

    def give_back(self) -> None:
        os.write(self.give_fd, b"s")

    def copies(self) -> tuple[int, int]:
        """Descriptors of its own for a sub-interpreter, to close when it is done."""
        return os.dup(self.take_fd), os.dup(self.give_fd)

    def close(self) -> None:
        os.close(self.take_fd)
        os.close(self.give_fd)


# -- the main interpreter ------------------------------------------------------------------------
@dataclass
class Worker:
    """A sub-interpreter and the thread of the main interpreter that runs it."""

    interpreter: SubInterpreter
    thread: threading.Thread = field(init=False)
    error: str | None = None  # why its code ended, if it ended with an error


class InterpretersServer(BaseServer):
    """The main interpreter: the listener, the startup line, the signals, and a thread per
    sub-interpreter; it serves no connection itself."""

    worker_check = 0.5  # how often the main interpreter looks for a sub-interpreter that ended
    # Beyond --shutdown-grace: each sub-interpreter counts its grace from the moment it saw
    # the stop, a little after the signal came.
    exit_margin = 1.0

    def __init__(self, config: ServerConfig) -> None:
        super().__init__(config)
        self.count = config.interpreters or len(os.sched_getaffinity(0))
        self.workers: list[Worker] = []
        self.stop_writer: socket.socket | None = None  # closed to tell every sub-interpreter to stop
        self.ready: socket.socket | None = None  # a byte from each sub-interpreter as it starts accepting
        self.slots: SharedSlots | None = None

    def on_stop(self) -> None:
        raise Stop  # the main thread only waits, in signals.sleep

    def serve(self) -> None:
        self.serve_on(make_listener(self.config), ready=self.start_workers)

    def start_workers(self, listener: socket.socket) -> None:
        """Start the sub-interpreters, and print the startup line once each one accepts: a
        load that starts at the line would otherwise go to those that were up first, and
        stay there on its keep-alive connections."""
        # Open until server_close: signals.wait_readable keeps a poller per descriptor number,
        # which must not outlive the socket and meet another one given its number.
        self.ready, ready_writer = socket.socketpair()
        try:
            self._start(listener, ready_writer)
        finally:
            ready_writer.close()
        self.ready.setblocking(False)
        waiting = self.count
        while waiting:
            self.signals.wait_readable(self.ready, self.worker_check)
            try:
                waiting -= len(self.ready.recv(self.count))  # a byte from each interpreter, when it accepts
            except BlockingIOError:
                pass
            self._check_workers()
        announce(listener)

    def serve_forever(self, listener: socket.socket) -> None:
        while True:
            self.signals.sleep(self.worker_check)
            self._check_workers()

    def _check_workers(self) -> None:
        for number, worker in enumerate(self.workers, 1):
            if not worker.thread.is_alive():  # only a stop ends one: this is a failure
                log(f"interpreter {number} of {self.count} ended: {worker.error or 'no error'}; stopping")
                raise SystemExit(1)

    def _start(self, listener: socket.socket, ready: socket.socket) -> None:
        """Create the sub-interpreters, each with copies of the listener, the stop and ready
        sockets and the slots, to close when it is done: one descriptor closed twice could
        close a connection that was given its number in between."""
        # /cpu's work per ms is calibrated once, here, and every interpreter starts from this
        # process's environment: the same work in each, as forked children inherit theirs.
        if not os.environ.get(CPU_PIN):  # unset or empty: calibrate_cpu measured it
            os.environ[CPU_PIN] = repr(calibrate_cpu())
        stop_reader, self.stop_writer = socket.socketpair()
        if self.config.max_connections is not None:
            self.slots = SharedSlots.create(self.config.max_connections)
        config = pickle.dumps(self.config)
        # Blocked while the workers start, so a stop cannot land between starting a thread and
        # recording it. The threads inherit the mask, and so do the threads of each
        # sub-interpreter: the signals always reach the main thread, the one place Python runs
        # their handlers.
        signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
        try:
            for number in range(1, self.count + 1):
                worker = Worker(SubInterpreter())
                shared = {"root": _ROOT, "config": config, "listener": os.dup(listener.fileno()),
                          "stop": os.dup(stop_reader.fileno()), "ready": os.dup(ready.fileno()),
                          "slots": self.slots.copies() if self.slots is not None else None}
                worker.thread = threading.Thread(target=self._run, args=(worker, shared), daemon=True,
                                                 name=f"interpreter-{number}")
                self.workers.append(worker)
                worker.thread.start()
        finally:
            stop_reader.close()
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)

    @staticmethod
    def _run(worker: Worker, shared: dict[str, object]) -> None:
        try:
            worker.error = worker.interpreter.run(_BOOTSTRAP, **shared)
        finally:
            worker.interpreter.close()  # after its connections' threads end

    def server_close(self) -> None:
        """Tell every sub-interpreter to stop, and wait for them within the grace: each lets
        its busy connections finish and closes its idle ones, as threaded does."""
        if self.stop_writer is not None:
            self.stop_writer.close()  # every sub-interpreter's end reads EOF: one close tells all
        # Closing our listener (done by now) stops nothing: the kernel's socket listens until
        # the last copy closes, each sub-interpreter's own, when it has seen the stop.
        deadline = (self.signals.since or time.monotonic()) + self.config.shutdown_grace + self.exit_margin
        for worker in self.workers:
            worker.thread.join(max(0.0, deadline - time.monotonic()))
        busy = sum(worker.thread.is_alive() for worker in self.workers)
        if busy:
            # Trap: a process never exits while a sub-interpreter still runs a thread (3.13:
            # finalization waits for it, for ever; checked), and an isolated interpreter
            # refuses daemon threads. threaded leaves such a thread behind as a daemon; here
            # the process leaves, as a daemon thread's would.
            log(f"{busy} of {self.count} interpreters still busy past the shutdown grace; leaving them")
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)
        if self.slots is not None:
            self.slots.close()
        if self.ready is not None:
            self.ready.close()


# -- a sub-interpreter ---------------------------------------------------------------------------
class InterpreterStop(StopSignals):
    """A sub-interpreter's StopSignals. Python runs signal handlers only in the main thread of
    the main interpreter, so that one says "stop" by closing its end of a socket pair: this
    end then reads EOF, in every sub-interpreter at once, and stays readable."""

    def __init__(self, stop: socket.socket) -> None:
        super().__init__()
        stop.setblocking(False)
        self.stop = stop

    def install(self) -> None:
        self.wakeup = self.stop  # wait_readable watches it beside the listener; close() closes it

    def wait_readable(self, sock: socket.socket, timeout: float | None = None) -> None:
        super().wait_readable(sock, timeout)
        self.check()

    def check(self) -> None:
        """Once the main interpreter has said stop, do what its signal would: set `stopping`
        and run `on_stop` (which may raise Stop)."""
        try:
            told = self.stop.recv(1, socket.MSG_PEEK) == b""
        except (BlockingIOError, InterruptedError):
            return
        if told:
            self._handle(signal.SIGTERM, None)


class InterpreterWorker(ThreadedServer):
    """A sub-interpreter's server: threaded's model, on its copy of the shared listener."""

    # An isolated interpreter refuses daemon threads. A thread stuck past the grace is left
    # behind by the main interpreter instead (InterpretersServer.server_close).
    daemon_threads = False

    signals: InterpreterStop

    def __init__(self, config: ServerConfig, *, stop: socket.socket, slots: SharedSlots | None) -> None:
        super().__init__(config)
        self.signals = InterpreterStop(stop)
        self.slots = slots

    def service_actions(self) -> None:
        # Under load accept() never waits (in wait_readable, which sees the stop): look before each.
        self.signals.check()

    def over_capacity(self, active: int) -> bool:
        """--max-connections counts every interpreter's connections: each takes a slot from
        the shared pipe, given back when it ends (serve_one)."""
        return self.slots is not None and not self.slots.take()

    def serve_one(self, connection: BlockingConnection) -> None:
        try:
            super().serve_one(connection)
        finally:
            if self.slots is not None:
                self.slots.give_back()


def serve_in_interpreter(config: bytes, *, listener: int, stop: int, ready: int,
                         slots: tuple[int, int] | None) -> None:
    """A sub-interpreter's life (from _BOOTSTRAP): serve on its copies of the main
    interpreter's descriptors until told to stop, then close them. A byte on `ready` says
    it accepts."""
    sock = socket.socket(fileno=listener)
    sock.setblocking(False)  # make_listener's setting, already on the shared file: tell Python
    BACKLOG.watch(sock, None)  # the main interpreter said any cap on the backlog
    worker = InterpreterWorker(pickle.loads(config), stop=socket.socket(fileno=stop),
                               slots=SharedSlots(*slots) if slots is not None else None)

    def accepting(_: socket.socket) -> None:
        with socket.socket(fileno=ready) as ready_writer:
            ready_writer.sendall(b"r")

    try:
        worker.serve_on(sock, ready=accepting)
    finally:
        if worker.slots is not None:
            worker.slots.close()
