"""iterative: one connection at a time, on the main thread.

Keep-alive is honoured, so while one client holds its connection every other client
waits in the listen backlog: that is the lesson. An idle connection (a browser's
preconnect) stalls everyone until --request-timeout closes it.
"""

from __future__ import annotations

import socket

from servers.backends.server import BlockingServer


class IterativeServer(BlockingServer):
    def on_stop(self) -> None:
        self.stop_unless_busy()

    def process_request(self, conn: socket.socket) -> None:
        """The concurrency model in one place: serve it here, everyone else waits."""
        self.serve_here(conn)
