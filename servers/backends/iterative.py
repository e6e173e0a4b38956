"""iterative: one connection at a time, on the main thread.

Keep-alive is honoured, so while one client holds its connection every other client
waits in the listen backlog: that is the lesson. An idle connection (a browser's
preconnect) stalls everyone until --request-timeout closes it.
"""

from __future__ import annotations

from servers.backends.base import Responder, Stop, StopSignals, accept_or_backoff, announce, make_listener
from servers.backends.blocking import BlockingConnection
from servers.config import ServerConfig


class IterativeServer:
    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.signals = StopSignals()
        self.responder = Responder(config)
        self._current: BlockingConnection | None = None

    def _on_stop(self) -> None:
        # Unwind accept() or an idle recv() at once; a request being answered finishes.
        if self._current is None or not self._current.busy:
            raise Stop

    def serve(self) -> None:
        listener = make_listener(self.config)
        self.signals.on_stop = self._on_stop
        self.signals.install()
        announce(listener)
        try:
            serve_one_at_a_time(listener, self)
        except Stop:
            pass
        finally:
            listener.close()


def serve_one_at_a_time(listener, server: IterativeServer) -> None:  # type: ignore[no-untyped-def]
    """The accept loop: also what each pre-forked worker runs."""
    while not server.signals.stopping:
        conn = accept_or_backoff(listener, server.signals)
        if conn is None:
            continue
        server._current = BlockingConnection(conn, responder=server.responder, config=server.config,
                                             signals=server.signals)
        try:
            server._current.serve()
        finally:
            server._current = None
