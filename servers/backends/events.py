"""One client on an event loop: what the selectors and asyncio backends share.

An event loop must never block, so a connection is a state machine driven by callbacks:
bytes arrive, requests queue, and each is answered in order. A Reply's delay becomes a
timer on the loop, and pipelined requests behind it wait their turn. The two event
backends differ only in the primitives below (write, call_later, close) and in the loop
that drives them.
"""

from __future__ import annotations

from collections import deque
from time import monotonic
from typing import Protocol

from servers.backends.responder import Responder
from servers.backends.signals import StopSignals
from servers.config import MAX_PENDING_OUTPUT, ServerConfig
from servers.http import CONTINUE, ProtocolError, Request, RequestParser, error_response

# How often idle and slow connections are checked against their deadlines. Timeouts are
# seconds long, so a quarter-second sweep is precise enough and costs O(connections)
# four times a second instead of a timer per request.
SWEEP_INTERVAL = 0.25


class Clock(Protocol):
    """The loop's time, read once per pass of the loop (or per callback), not per request:
    deadlines are seconds long and checked by a quarter-second sweep."""

    now: float


class EventConnection:
    """Requests in, answers out, in order; subclasses supply the I/O primitives."""

    def __init__(self, *, responder: Responder, config: ServerConfig, signals: StopSignals, clock: Clock) -> None:
        self.clock = clock
        self.responder = responder
        self.config = config
        self.signals = signals
        self.parser = RequestParser(config.limits)
        self.queue: deque[Request | ProtocolError] = deque()
        self.waiting = False  # a delayed answer is on a timer
        self.closing = False  # close once the answers queued so far are written
        self.closed = False
        self.eof = False  # the client half-closed: answer what it sent, then close
        self.idle = True  # no part of a request received since the last answer
        self.fresh = True  # nothing received at all yet: the deadline counts from accept
        self.deadline = clock.now + config.request_timeout

    # -- primitives each event backend implements --------------------------------------
    def write(self, data: bytes) -> None:
        raise NotImplementedError

    def call_later(self, delay: float, callback, *args) -> None:  # type: ignore[no-untyped-def]
        raise NotImplementedError

    def close(self) -> None:
        """Close once pending output is written (or at once if the peer is gone)."""
        raise NotImplementedError

    def pending_output(self) -> int:
        raise NotImplementedError

    # -- the shared state machine -------------------------------------------------------
    @property
    def busy(self) -> bool:
        """Answers owed: a stopping server lets these finish."""
        return self.waiting or bool(self.queue) or self.pending_output() > 0

    def received(self, data: bytes) -> None:
        if self.closing:
            return  # answered and closing: whatever else arrives is not read
        if self.idle:
            self.idle = False
            if not self.fresh:
                self.deadline = self.clock.now + self.config.request_timeout
            self.fresh = False
        parser = self.parser
        try:
            items = parser.feed(data)  # parser.parse(data), less a call per request
        except ProtocolError as error:
            items = parser.after_error(error)  # type: ignore[assignment]
        if self.waiting:
            self.queue.extend(items)  # behind a delayed answer: their turn comes after it
        elif self.queue:
            self.queue.extend(items)
            self.answer()
        elif items or parser.client_awaits_continue:
            self.answer(items)  # an empty list sends the CONTINUE that is due

    def answer(self, items: list[Request | ProtocolError] | None = None) -> None:
        """Answer `items` (else the queue) in order until one must wait; the rest queue."""
        later = items is None  # the queue: what waited behind an answer already given
        if items is None:
            items = list(self.queue)
            self.queue.clear()
        out = []
        respond = self.responder.respond
        stopping = self.signals.stopping  # a stop that lands mid-loop is seen by the next answer
        pending = iter(items)
        for item in pending:
            if later:  # a pipelined request: the checks the first answer of a read does not need
                if monotonic() > self.deadline:
                    self._finish()  # work past the request timeout is not started: close
                    break
                if self.pending_output() + sum(map(len, out)) > MAX_PENDING_OUTPUT:
                    self.queue.append(item)  # made when the client has read what it was sent
                    self.queue.extend(pending)
                    break
            later = True
            if type(item) is ProtocolError:
                out.append(error_response(item))
                if item.close:
                    self._finish()
                    break
                continue
            data, delay, keep_alive = respond(item, stopping)  # type: ignore[arg-type]
            if delay:
                self.waiting = True
                self.queue.extend(pending)  # what follows waits for this one's timer
                self.call_later(delay, self._delayed, data, keep_alive)
                break
            out.append(data)
            if not keep_alive:
                self._finish()
                break
        parser = self.parser
        queue = self.queue
        if parser.client_awaits_continue and not queue and not self.waiting and not self.closing:
            parser.client_awaits_continue = False  # its turn: every answer before it is out
            out.append(CONTINUE)
        if out:
            self.write(out[0] if len(out) == 1 else b"".join(out))
            if queue and not self.waiting and not self.closing and self.pending_output() <= MAX_PENDING_OUTPUT:
                self.call_later(0, self.resume)  # held back, but the socket took it all: no wakeup will come
        if self.eof and not self.waiting and not queue:
            self.closing = True  # all it asked is answered (a partial request never will be)
        if self.closing:
            if not self.waiting:
                self.close()
        elif not self.waiting and not queue and parser.buffered == 0:
            self.idle = True
            self.deadline = self.clock.now + self.config.keepalive_timeout

    def resume(self) -> None:
        """Make the pipelined answers held back while the output was over its cap."""
        if self.queue and not self.closed and not self.waiting and not self.closing:
            self.answer()

    def peer_closed(self) -> None:
        """EOF from the client: it will send nothing more, but may still read. Requests it
        sent are answered (a delayed one included), then the connection closes."""
        self.eof = True
        if not self.waiting:
            self.answer()

    def _delayed(self, data: bytes, keep_alive: bool) -> None:
        if self.closed:
            return
        self.waiting = False
        self.write(data)
        if not keep_alive:
            self._finish()
        self.answer()

    def _finish(self) -> None:
        self.closing = True
        self.queue.clear()

    def check_deadline(self, now: float) -> None:
        """Called by the sweep: close a connection idle or slow past its deadline."""
        if now < self.deadline or self.waiting or self.closing:
            return
        if self.pending_output():
            # A client that does not read its answers (the rest of its requests wait for it
            # to): drop it after the same time.
            self.abort()
            return
        if self.queue:
            return  # answers owed, being made
        if not self.idle or self.parser.buffered:
            self.write(error_response(ProtocolError(408, "Request Timeout")))
        self.closing = True
        self.close()

    def stop(self) -> None:
        """The server is stopping: close now if idle, else after the answers owed."""
        if not self.busy:
            self.closing = True
            self.close()
        # A busy connection answers with Connection: close (respond sees stopping) and
        # closes after its last answer is written.

    def abort(self) -> None:
        """Close without waiting for output."""
        raise NotImplementedError
