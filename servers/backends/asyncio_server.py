"""asyncio: an asyncio.Protocol server on one event loop (optionally uvloop).

Protocol rather than streams: the parser is already incremental, so StreamReader's
buffering and a coroutine per connection would add a task switch and a copy to every
request for nothing; the callback model also mirrors the selectors backend exactly, so
the two differ only in whose loop runs the callbacks. A Reply's delay is call_later on
the loop; asyncio's transport does the write buffering and sets TCP_NODELAY.
"""

from __future__ import annotations

import asyncio
import errno
import signal
import socket
import time
from collections.abc import Callable
from typing import Any, cast

from servers.backends.events import SWEEP_INTERVAL, EventConnection
from servers.backends.listener import (ACCEPT_RESOURCE_ERRNOS, BACKLOG, announce, log_accept_failure, make_listener,
                                      reset_on_close, tune)
from servers.backends.responder import OVERLOADED
from servers.backends.server import BaseServer
from servers.config import ServerConfig
from servers.http import Streamed


class HttpProtocol(EventConnection, asyncio.Protocol):
    def __init__(self, server: AsyncioServer) -> None:
        super().__init__(responder=server.responder, config=server.config, signals=server.signals, clock=server)
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.shut = False  # close() or abort() called: write nothing more

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.server.now = time.monotonic()  # the request timeout counts from here
        self.deadline = self.server.now + self.config.request_timeout
        self.transport = cast(asyncio.Transport, transport)  # a stream server's transport
        if self.server.over_capacity(len(self.server.connections)):
            self.transport.write(OVERLOADED)
            self.closing = True
            self.close()
            return
        if self.server.tune_sockets:
            sock = transport.get_extra_info("socket")
            if sock is not None:
                tune(sock)
        self.server.connections.add(self)

    def data_received(self, data: bytes) -> None:
        self.server.now = time.monotonic()  # the one clock read of this callback
        self.arrived(data)

    def _delayed(self, data: bytes | Streamed, keep_alive: bool) -> None:
        self.server.now = time.monotonic()
        super()._delayed(data, keep_alive)

    def eof_received(self) -> bool:
        self.peer_closed()  # a half-close: answer what it sent (a delayed one too), then close
        return True  # keep the transport open until then; close() is ours to call

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.server.connections.discard(self)

    def pause_writing(self) -> None:
        # The transport's buffer is over its high-water mark: stop reading requests
        # from a client that is not reading its answers.
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()
            self.server.now = time.monotonic()
            self.resume()

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.shut:
            self.written += len(data)
            self.transport.write(data)

    def call_later(self, delay: float, callback: Callable[..., object], *args: object) -> None:
        self.server.loop.call_later(delay, callback, *args)

    def pending_output(self) -> int:
        return self.transport.get_write_buffer_size() if self.transport and not self.closed else 0

    def close(self) -> None:
        """Flush what is buffered, then close. The connection stays in the server's set until
        connection_lost, so the sweep holds the flush to the minimum send rate: a client that
        never reads its last answer is aborted, not kept with its buffer for ever."""
        if self.transport is not None and not self.shut:
            self.shut = True
            self.transport.close()

    def abort(self, reset: bool = False) -> None:
        if self.transport is not None and not self.closed:
            sock = self.transport.get_extra_info("socket") if reset else None
            if sock is not None:
                reset_on_close(sock)
            self.shut = True
            self.transport.abort()
            self.closed = True
            self.server.connections.discard(self)


class _Listener(socket.socket):
    """Works around CPython gh-151615 (fixed after 3.11-3.13): when accept() fails with
    EMFILE, asyncio pauses accepting for a second but goes on calling accept() up to
    `backlog` more times in the same pass, each time logging and scheduling another resume.
    The accept() right after a resource error says "nothing to accept", which ends the pass;
    on a Python with the fix, that costs one extra wakeup after the pause."""

    _failed_at = 0.0

    def accept(self) -> tuple[socket.socket, Any]:
        if self._failed_at and time.monotonic() - self._failed_at < 0.05:
            self._failed_at = 0.0
            raise BlockingIOError(errno.EAGAIN, "paused after a resource error")
        try:
            return super().accept()
        except OSError as error:
            if error.errno in ACCEPT_RESOURCE_ERRNOS:
                self._failed_at = time.monotonic()
            raise


class AsyncioServer(BaseServer):
    """serve() is the loop's own: asyncio installs the signal handlers and owns the listener."""

    listener_class = _Listener

    def __init__(self, config: ServerConfig) -> None:
        super().__init__(config)
        # asyncio's own transport sets TCP_NODELAY on every connection; uvloop's is tuned here.
        self.tune_sockets = config.loop == "uvloop"
        self.connections: set[HttpProtocol] = set()
        self.now = time.monotonic()  # the clock for deadlines: read once per callback
        self.loop: asyncio.AbstractEventLoop
        if config.loop == "uvloop":
            try:
                import uvloop  # noqa: F401 - optional extra: pip install 'concurbench[uvloop]'
            except ImportError as error:
                raise ImportError("--loop uvloop needs uvloop: pip install 'concurbench[uvloop]'") from error

    def serve(self) -> None:
        if self.config.loop == "uvloop":
            import uvloop

            loop = uvloop.new_event_loop()
        else:
            loop = asyncio.new_event_loop()
        self.loop = loop
        try:
            loop.run_until_complete(self._main())
        finally:
            loop.close()

    async def _main(self) -> None:
        loop = self.loop
        stopped = asyncio.Event()

        def on_signal() -> None:
            self.signals._handle(signal.SIGTERM, None)
            stopped.set()

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal)
        loop.set_exception_handler(_one_line_for_accept_errors)
        listener = make_listener(self.config, self.listener_class)
        server = await loop.create_server(lambda: HttpProtocol(self), sock=listener, backlog=self.config.backlog)
        announce(listener)
        sweeper = loop.create_task(self._sweep())
        await stopped.wait()
        server.close()  # stop accepting; established connections are ours to finish
        deadline = time.monotonic() + self.config.shutdown_grace
        while self.connections and time.monotonic() < deadline:
            for conn in list(self.connections):
                conn.stop()
            await asyncio.sleep(0.02)
        for conn in list(self.connections):
            conn.abort()
        sweeper.cancel()
        await server.wait_closed()

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_INTERVAL)
            self.now = now = time.monotonic()
            for conn in list(self.connections):
                conn.check_deadline(now)
            BACKLOG.check()


def _one_line_for_accept_errors(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """asyncio already pauses accepting for a second when accept() fails with EMFILE (as the
    other backends do); its default handler would print a traceback each time. One line."""
    error = context.get("exception")
    if isinstance(error, OSError) and error.errno in ACCEPT_RESOURCE_ERRNOS:
        log_accept_failure(error, "asyncio pauses accepts for 1s each time")
        return
    loop.default_exception_handler(context)
