"""Request -> the bytes to send: the app's Reply, built into one buffer, with the 500 for a
route that raises and the 503 for a connection over --max-connections."""

from __future__ import annotations

import socket

from servers.app import App, Reply
from servers.backends.log import log
from servers.config import ServerConfig
from servers.http import Request, Response, Streamed, build_response, build_whole

# Sent, then the connection closed, when --max-connections is reached.
OVERLOADED = build_whole(Response(503, b"Service Unavailable: too many connections\n"), keep_alive=False)
# The answer when the app raises: the request's framing is intact, so the connection lives.
INTERNAL_ERROR = Reply(500, b"Internal Server Error\n")


class Responder:
    """Request -> (bytes to send, delay before sending, keep the connection open)."""

    def __init__(self, config: ServerConfig) -> None:
        self.app = App(docroot=config.docroot)
        self.access_log = config.access_log

    def respond(self, request: Request, closing: bool = False) -> tuple[bytes | Streamed, float, bool]:
        try:
            reply: Reply = self.app.handle(request)
        except Exception as error:  # noqa: BLE001 - one request's bug must not take the server down
            log(f'500 for "{request.method} {request.target[:200]}": {type(error).__name__}: {error}')
            reply = INTERNAL_ERROR
        keep_alive = request.keep_alive and not closing
        data = build_response(reply, keep_alive=keep_alive, head=request.method == "HEAD",
                              http10=request.version == "1.0")
        if self.access_log:
            log(f'"{request.method} {request.target} HTTP/{request.version}" {reply.status} {len(reply.body)}')
        return data, reply.delay, keep_alive


def refuse(conn: socket.socket) -> None:
    """Over --max-connections: a 503 the client can read, then close."""
    try:
        conn.sendall(OVERLOADED)
    except OSError:
        pass
    finally:
        conn.close()
