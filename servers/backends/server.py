"""The shape every backend shares, after socketserver: a base that owns the settings, the stop
signals, the responder and the serve template, and one method where the models differ.

The blocking models (iterative, threaded, forking) differ only in `process_request`: what
happens to a connection the main thread has accepted. The event models differ in their loop
(`serve_forever`).
"""

from __future__ import annotations

import socket
from collections.abc import Callable

from servers.backends.blocking import BlockingConnection
from servers.backends.listener import accept_or_backoff, announce, make_listener
from servers.backends.responder import Responder, refuse
from servers.backends.signals import Stop, StopSignals
from servers.config import ServerConfig


class BaseServer:
    """serve(): open the listener, announce it, serve until a stop signal, close."""

    listener_class: type[socket.socket] = socket.socket  # asyncio's listener needs its own accept()

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.signals = StopSignals()
        self.responder = Responder(config)

    def serve(self) -> None:
        self.serve_on(make_listener(self.config, self.listener_class), ready=announce)

    def serve_on(self, listener: socket.socket, *, ready: Callable[[socket.socket], None] | None = None) -> None:
        """Serve on an open `listener` until a stop, then close it. `ready` runs once the
        signals and the model are set up: the startup line, or nothing in a sub-interpreter
        that shares a listener its main interpreter announced."""
        self.signals.on_stop = self.on_stop
        try:  # from the handlers on: a stop that lands before the loop unwinds here too
            self.signals.install()
            self.server_activate()
            if ready is not None:
                ready(listener)
            self.serve_forever(listener)
        except Stop:
            pass
        finally:
            self.signals.on_stop = None
            listener.close()
            self.server_close()
            self.signals.close()

    def on_stop(self) -> None:
        """Runs in the stop signal's handler, in the main thread. Raising Stop unwinds a
        main thread that is only waiting."""

    def server_activate(self) -> None:
        """After the listener and the signals, before the startup line."""

    def serve_forever(self, listener: socket.socket) -> None:
        raise NotImplementedError

    def server_close(self) -> None:
        """After the listener closes: let in-flight answers finish, reap, join."""

    def over_capacity(self, active: int) -> bool:
        """--max-connections, one rule for every model: refuse a new connection when this
        many are already being served."""
        limit = self.config.max_connections
        return limit is not None and active >= limit


class BlockingServer(BaseServer):
    """The main thread accepts; `process_request` decides who serves the connection."""

    connection_class: type[BlockingConnection] = BlockingConnection  # socketserver's RequestHandlerClass

    def __init__(self, config: ServerConfig) -> None:
        super().__init__(config)
        self.current: BlockingConnection | None = None  # served on this thread, if any

    def on_stop(self) -> None:
        raise Stop  # the main thread only waits: in poll() for the listener, or sleeping

    def serve_forever(self, listener: socket.socket) -> None:
        self.accept_loop(listener, self.process_request)

    def accept_loop(self, listener: socket.socket, handle) -> None:  # type: ignore[no-untyped-def]
        signals = self.signals
        while not signals.stopping:
            self.service_actions()
            conn = accept_or_backoff(listener, signals)
            if conn is None:
                continue
            if self.over_capacity(self.active_connections()):
                refuse(conn)
            else:
                handle(conn)

    def service_actions(self) -> None:
        """Called before each accept (socketserver's hook): forking waits for a free slot."""

    def active_connections(self) -> int:
        return 0

    def process_request(self, conn: socket.socket) -> None:
        """The concurrency model in one place."""
        raise NotImplementedError

    def serve_here(self, conn: socket.socket) -> None:
        """Serve `conn` on this thread until it closes: iterative's whole model, and what a
        forked child or a pre-forked worker does."""
        self.current = self.connection_class(conn, responder=self.responder, config=self.config, signals=self.signals)
        try:
            self.current.serve()
        finally:
            self.current = None

    def stop_unless_busy(self) -> None:
        """The stop rule for a thread that serves: unwind accept() or an idle recv() at
        once; a request being answered finishes first."""
        if self.current is None or not self.current.busy:
            raise Stop
