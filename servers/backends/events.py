"""One client on an event loop: what the selectors and asyncio backends share.

An event loop must never block, so a connection is a state machine driven by callbacks:
bytes arrive, requests queue, and each is answered in order. A Reply's delay becomes a
timer on the loop, and pipelined requests behind it wait their turn. The two event
backends differ only in the primitives below (write, call_later, close) and in the loop
that drives them.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import Protocol

from servers.backends.responder import Responder
from servers.backends.signals import StopSignals
from servers.config import MAX_PENDING_OUTPUT, ServerConfig
from servers.backends.connection import Connection, Item
from servers.http import ProtocolError, Streamed, error_response, too_many_pipelined

# How often idle and slow connections are checked against their deadlines. Timeouts are
# seconds long, so a quarter-second sweep is precise enough and costs O(connections)
# four times a second instead of a timer per request.
SWEEP_INTERVAL = 0.25
# A body made in pieces is made only while less than this is unsent, and at most this many
# pieces a turn, so one fast reader of 64 MiB does not hold the loop while others wait.
STREAM_BUFFER = 256 * 1024
PIECES_PER_TURN = 16


class Clock(Protocol):
    """The loop's time, read once per pass of the loop (or per callback), not per request:
    deadlines are seconds long and checked by a quarter-second sweep."""

    now: float


class EventConnection(Connection):
    """Requests in, answers out, in order; subclasses supply the I/O primitives."""

    def __init__(self, *, responder: Responder, config: ServerConfig, signals: StopSignals, clock: Clock) -> None:
        super().__init__(responder=responder, config=config, signals=signals, now=clock.now)
        self.clock = clock
        self.emit = self.write
        self.queue: deque[Item] = deque()
        self.waiting = False  # a delayed answer is on a timer
        self.closed = False
        self.eof = False  # the client half-closed: answer what it sent, then close
        self.stream: Iterator[bytes] | None = None  # the pieces of the body being sent, made as it goes
        self.written = 0  # bytes given to write(), ever: less pending_output(), what the client took
        self.sending_since: float | None = None  # when the sweep first saw output unsent, until none is
        self.taken_before = 0  # what the client had taken by then
        self.taken_last, self.progress_at = 0, 0.0  # what it had taken at the last sweep it took some

    # -- primitives each event backend implements --------------------------------------
    def write(self, data: bytes) -> None:
        """Send, or buffer what the socket does not take; add len(data) to `written`."""
        raise NotImplementedError

    def call_later(self, delay: float, callback: Callable[..., object], *args: object) -> None:
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
        return self.waiting or bool(self.queue) or self.stream is not None or self.pending_output() > 0

    def arrived(self, data: bytes) -> None:
        """A read's bytes, from the loop."""
        if self.closing:
            return  # answered and closing: whatever else arrives is not read
        self.received(data, self.clock.now)
        self._settle()

    def answer(self, items: Sequence[Item] | None = None) -> None:
        """Answer `items` (else the queue) in order until one must wait; the rest queue."""
        if items is None:
            self.answer_in_order(self._dequeued(), True)  # what waited behind an answer already given
        else:
            self.answer_in_order(iter(items), False)
        self._settle()

    def _dequeued(self) -> Iterator[Item]:
        items = list(self.queue)
        self.queue.clear()
        return iter(items)

    def _settle(self) -> None:
        """After answering: close if that is what comes next, else, if idle, the keep-alive
        deadline runs from now. A delayed or streaming answer comes back here when it is out."""
        if self.waiting or self.stream is not None:
            return  # the timer, or the client taking the pieces, calls back
        if self.eof and not self.queue:
            self.closing = True  # all it asked is answered (a partial request never will be)
        if self.closing:
            self.close()
        elif self.idle:
            self.deadline = self.clock.now + self.config.keepalive_timeout

    # -- the hooks of received and answer_in_order -------------------------------------------
    @property
    def held(self) -> bool:
        return self.waiting or self.stream is not None or bool(self.queue)

    def behind(self, items: Sequence[Item]) -> bool:
        """They queue; unless a delay or a body in pieces holds the queue (the timer or the
        client taking the pieces calls back), they were queued behind unread output: answer
        from the queue, which makes room or queues again."""
        self.queue.extend(items)
        self._bound_queue()
        if not self.waiting and self.stream is None:
            self.answer_in_order(self._dequeued(), True)
        return True

    def finish(self) -> None:
        self.closing = True
        self.queue.clear()

    def room(self, out: list[bytes], item: Item, pending: Iterator[Item]) -> bool:
        """No more answers are made while the output is over its cap: the rest queue, to be
        made when the client has read what it was sent."""
        if self.pending_output() + sum(map(len, out)) <= MAX_PENDING_OUTPUT:
            return True
        self.queue.append(item)
        self.queue.extend(pending)
        self.flush(out)
        if self.pending_output() <= MAX_PENDING_OUTPUT:
            self.call_later(0, self.resume)  # the socket took it all: no wakeup for writing will come
        return False

    def hold(self, data: bytes | Streamed, delay: float, keep_alive: bool, pending: Iterator[Item]) -> bool:
        """A delay is a timer, and what follows waits for it; a body in pieces is pumped as the
        client takes them, and what follows waits for its last (True: it is all written)."""
        if delay:
            self.waiting = True
            self.queue.extend(pending)
            self.call_later(delay, self._delayed, data, keep_alive)
            return False
        assert type(data) is Streamed
        self.write(data.head)
        self.stream = data.pieces
        if self.pump():
            return True
        if keep_alive:
            self.queue.extend(pending)
        else:
            self.finish()
        return False

    def pump(self) -> bool:
        """Make and write the streaming body's next pieces while little is unsent; True once
        its last piece is written."""
        stream = self.stream
        assert stream is not None
        for _ in range(PIECES_PER_TURN):
            if self.closed or self.pending_output() >= STREAM_BUFFER:
                return False  # the next wakeup for writing (or the sweep) comes back
            piece = next(stream, None)
            if piece is None:
                self.stream = None
                return True
            self.write(piece)
        self.call_later(0, self.resume)  # a fast reader: the other connections' turn, then more
        return False

    def resume(self) -> None:
        """The client took some output: go on with the streaming body, then make the
        pipelined answers held back while it or the output was over its cap."""
        if self.closed or self.waiting:
            return
        if self.stream is not None:
            if self.pump():
                self.answer(None if self.queue and not self.closing else [])  # [] sends a CONTINUE owed, or closes
        elif self.queue and not self.closing:
            self.answer()

    def peer_closed(self) -> None:
        """EOF from the client: it will send nothing more, but may still read. Requests it
        sent are answered (a delayed one included), then the connection closes."""
        self.eof = True
        if not self.waiting and self.stream is None:  # else when the delayed or streaming answer is out
            self.answer()

    def _delayed(self, data: bytes | Streamed, keep_alive: bool) -> None:
        if self.closed:
            return
        self.waiting = False
        if not keep_alive:
            self.finish()
        if type(data) is bytes:
            self.write(data)
            self.answer()
        else:
            assert type(data) is Streamed
            self.write(data.head)
            self.stream = data.pieces
            self.resume()

    def _bound_queue(self) -> None:
        """Requests queued behind an answer still being made are capped as one read's are:
        beyond the limit, a 503 and close (a client pipelining read after read while a slow
        answer holds the queue would otherwise grow it without end)."""
        limit = self.parser.limits.max_pipelined
        if len(self.queue) > limit:
            while len(self.queue) > limit:
                self.queue.pop()
            self.queue.append(too_many_pipelined())

    def check_deadline(self, now: float) -> None:
        """Called by the sweep: drop a client that takes none of its answers for a request
        timeout, or takes them slower than the minimum send rate (from when output was first
        seen unsent, the request timeout plus a second per min_send_rate bytes taken), and
        close a connection idle or slow past its deadline."""
        pending = self.pending_output()
        if pending or self.stream is not None:
            taken = self.written - pending  # by the client or the kernel's buffers for it
            if self.sending_since is None:
                self.sending_since = self.progress_at = now
                self.taken_before = self.taken_last = taken
                return
            if taken != self.taken_last:
                self.taken_last, self.progress_at = taken, now
            timeout = self.config.request_timeout
            if (now > self.progress_at + timeout
                    or now > self.sending_since + timeout + (taken - self.taken_before) / self.config.min_send_rate):
                self.abort(reset=True)  # also a closing connection: its last answer is bounded the same
            return
        self.sending_since = None
        if now < self.deadline or self.waiting or self.closing:
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

    def abort(self, reset: bool = False) -> None:
        """Close without waiting for output; `reset`: the kernel discards what it holds too (RST)."""
        raise NotImplementedError
