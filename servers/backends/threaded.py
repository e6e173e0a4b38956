"""threaded: a thread per connection, or (--threads N) a bounded pool where connections queue.

The main thread only accepts. Threads block in recv() and sleep() independently, so an
idle connection costs one parked thread instead of stalling everyone; CPU work still
takes turns on the GIL.
"""

from __future__ import annotations

import queue
import socket
from collections.abc import Callable
import threading
import time

from servers.backends.blocking import BlockingConnection
from servers.backends.server import BlockingServer
from servers.config import ServerConfig


class ThreadedServer(BlockingServer):
    daemon_threads = True  # a thread stuck past the shutdown grace must not keep the process alive

    def __init__(self, config: ServerConfig) -> None:
        super().__init__(config)
        self._lock = threading.Lock()
        self._connections: set[BlockingConnection] = set()  # admitted: queued for a thread, or served by one
        self._queue: queue.Queue[BlockingConnection | None] = queue.Queue()  # pool mode only
        self._threads: set[threading.Thread] = set()  # running; each removes itself when done

    def server_activate(self) -> None:
        for _ in range(self.config.threads or 0):
            self._start(self._pool_worker)

    def active_connections(self) -> int:
        return len(self._connections)

    def process_request(self, conn: socket.socket) -> None:
        """The concurrency model in one place: hand the connection to a thread."""
        connection = self._admit(conn)
        if self.config.threads:
            self._queue.put(connection)
        else:
            self._start(self.serve_one, connection)

    def _admit(self, conn: socket.socket) -> BlockingConnection:
        """Count `conn` from now on, in the thread that checks --max-connections. Counted by
        the thread that serves it, it would be missed until that thread got going (or took it
        from the queue), and a burst of connections would pass the limit: without the GIL the
        accepting thread outruns the new ones (--max-connections 2 let 3 or 4 in, on 3.13t)."""
        connection = self.connection_class(conn, responder=self.responder, config=self.config, signals=self.signals)
        with self._lock:
            self._connections.add(connection)
        return connection

    def _start(self, target: Callable[..., object], *args: object) -> None:
        thread = threading.Thread(target=self._run_then_forget, args=(target, *args), daemon=self.daemon_threads)
        with self._lock:
            self._threads.add(thread)
        thread.start()

    def _run_then_forget(self, target: Callable[..., object], *args: object) -> None:
        """A thread leaves the set itself, so accept() never walks the threads to prune them."""
        try:
            target(*args)
        finally:
            with self._lock:
                self._threads.discard(threading.current_thread())

    def serve_one(self, connection: BlockingConnection) -> None:
        """Serve an admitted connection on this thread until it closes (at once after a stop)."""
        try:
            connection.serve()
        finally:
            with self._lock:
                self._connections.discard(connection)

    def _pool_worker(self) -> None:
        while (connection := self._queue.get()) is not None:
            self.serve_one(connection)

    def server_close(self) -> None:
        """Stop idle connections, let busy ones finish within the grace, join threads."""
        for _ in range(self.config.threads or 0):
            self._queue.put(None)
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            if not connection.busy:
                try:
                    connection.sock.shutdown(socket.SHUT_RD)  # its recv() returns EOF now
                except OSError:
                    pass
        deadline = self.signals.since + self.config.shutdown_grace
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
