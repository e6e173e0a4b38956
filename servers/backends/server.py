"""The shape every backend shares, after socketserver: a base that owns the settings, the stop
signals, the responder and the serve template, and one method where the models differ.

The blocking models (iterative, threaded, forking) differ only in `process_request`: what
happens to a connection the main thread has accepted. The event models differ in their loop
(`serve_forever`).
"""

from __future__ import annotations

import selectors
import socket
from collections.abc import Callable

from servers.backends.blocking import BlockingConnection
from servers.backends.listener import (ACCEPT_BACKOFF, AcceptsPaused, accept_or_backoff, accept_ready, announce,
                                       make_listener, tune)
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

    def accept_loop(self, listener: socket.socket, handle: Callable[[socket.socket], None]) -> None:
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


class SelectorServer(BaseServer):
    """A server whose one thread waits in a selector (selectors, selectors-pool): accepting is
    one more event there. At most `accepts_per_wakeup` a wakeup, so a burst of connects does
    not starve established clients; out of descriptors, the listener comes off the selector
    for ACCEPT_BACKOFF; on stop, it closes. A model says how it counts its connections and
    what it does with a new one (`adopt`), and may say how it waits out the back-off."""

    accepts_per_wakeup = 64

    def __init__(self, config: ServerConfig) -> None:
        super().__init__(config)
        self.selector = selectors.DefaultSelector()
        self.listener: socket.socket | None = None
        self.resume_accepting_at: float | None = None  # out of descriptors: accept again from then
        self.now = 0.0  # the loop's clock, read once per pass

    def start_accepting(self, listener: socket.socket) -> None:
        self.listener = listener
        self.selector.register(listener, selectors.EVENT_READ, self.accept_some)

    def accept_some(self, *_mask: object) -> None:
        """The listener is readable (the selector key's data, called with the event mask or not)."""
        listener = self.listener
        assert listener is not None
        for _ in range(self.accepts_per_wakeup):
            try:
                sock = accept_ready(listener, self.selector)
            except AcceptsPaused:
                self.pause_accepts()
                return
            if sock is None:
                return
            if self.over_capacity(self.active_connections()):
                refuse(sock)
                continue
            tune(sock)
            self.adopt(sock)

    def pause_accepts(self) -> None:
        """Off the selector for the back-off: the loop calls resume_accepting when it is over."""
        self.resume_accepting_at = self.now + ACCEPT_BACKOFF

    def resume_accepting(self) -> None:
        self.resume_accepting_at = None
        if self.listener is not None and not self.signals.stopping:
            self.selector.register(self.listener, selectors.EVENT_READ, self.accept_some)

    def stop_accepting(self) -> None:
        if self.listener is not None:
            try:
                self.selector.unregister(self.listener)
            except (KeyError, ValueError):
                pass  # off the selector for a back-off
            self.listener.close()
            self.listener = None

    def active_connections(self) -> int:
        raise NotImplementedError

    def adopt(self, sock: socket.socket) -> None:
        """A new connection, within capacity and tuned: the model's own from now on."""
        raise NotImplementedError
