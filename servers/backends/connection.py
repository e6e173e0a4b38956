"""What a connection does the same way in every model: the request deadline, and answering
the requests of a read in order.

socketserver's way: the routine is written once, and a model passes in what differs by
overriding a hook. The blocking models (a thread, a process, a greenlet, a pool thread)
send at once and wait where they are; the event loops buffer, set a timer and stop, to go on
when the loop calls them back.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from time import monotonic

from servers.backends.responder import Responder
from servers.backends.signals import StopSignals
from servers.config import MAX_PENDING_OUTPUT, ServerConfig
from servers.http import CONTINUE, ProtocolError, Request, RequestParser, Streamed, error_response

Item = Request | ProtocolError  # what a read completes: a request to answer, or an error to say


class Connection:
    """One client's requests and answers. `deadline` is when the request being received must
    be complete: the request timeout from its first byte (from accept for a new connection),
    or the keep-alive timeout from the last answer while `idle`."""

    __slots__ = ("responder", "config", "signals", "parser", "idle", "fresh", "deadline", "closing", "emit",
                 "send_answer")

    def __init__(self, *, responder: Responder, config: ServerConfig, signals: StopSignals, now: float) -> None:
        self.responder = responder
        self.config = config
        self.signals = signals
        self.parser = RequestParser(config.limits)
        self.idle = True  # no part of a request received since the last answer
        self.fresh = True  # nothing received at all yet: the deadline counts from accept
        self.deadline = now + config.request_timeout
        self.closing = False  # close once the answers given so far are sent

    # -- the request deadline --------------------------------------------------------------
    def take(self, data: bytes, now: float) -> Sequence[Item]:
        """The requests (and an error, last) these bytes complete. The first bytes since the
        last answer start the request timeout (a new connection's started at accept)."""
        if self.idle:
            self.idle = False
            if not self.fresh:
                self.deadline = now + self.config.request_timeout
            self.fresh = False
        parser = self.parser
        try:
            return parser.feed(data)  # parser.parse(data), less a call
        except ProtocolError as error:
            return parser.after_error(error)

    # -- answering in order ------------------------------------------------------------------
    def answer_in_order(self, items: Sequence[Item], later: bool = False) -> bool:
        """Answer `items` in order, then a CONTINUE that is due. True: all answered and the
        connection stays open, idle until the next request's first byte (the model sets the
        keep-alive deadline), or, if part of one came with the last, that request's timeout
        from now. False: stopped, either closing (an answer closes it, or a pipelined request came
        past the request timeout: it is not started) or waiting (a hook stopped for a delay, a
        body in pieces or unread output, and kept what is left of `items`). `later`: the first
        item too is pipelined behind an answer already given."""
        if later or len(items) != 1 or type(items[0]) is not Request:
            return self._answer_each(iter(items), later)
        # A read holding one request, the common case: answered without the loop's list and
        # pipelining checks (they cost a blocking model 6 to 10% of its requests a second).
        data, delay, keep_alive = self.responder.respond(items[0], self.signals.stopping)
        if delay or type(data) is not bytes:
            if not self.hold(data, delay, keep_alive, iter(())):
                return False
        else:
            self.emit(data)
        if not keep_alive:
            self.finish()
            return False
        parser = self.parser  # what _settled does, less a call
        if parser.client_awaits_continue:
            parser.client_awaits_continue = False
            self.emit(CONTINUE)
        self.idle = idle = parser.buffered == 0
        if not idle:
            self.deadline = monotonic() + self.config.request_timeout
        return True

    def _answer_each(self, pending: Iterator[Item], later: bool) -> bool:
        """answer_in_order's general case: any number of items, errors among them."""
        out: list[bytes] = []
        respond = self.responder.respond
        stopping = self.signals.stopping  # a stop that lands mid-loop is seen by the next call
        for item in pending:
            if later:  # a pipelined request: the checks the first answer of a read does not need
                if monotonic() > self.deadline:
                    self.flush(out)
                    self.finish()
                    return False
                if not self.room(out, item, pending):
                    return False
            later = True
            if type(item) is not Request:  # a ProtocolError (isinstance costs 400 instructions more)
                out.append(error_response(item))
                if item.close:
                    self.flush(out)
                    self.finish()
                    return False
                continue
            data, delay, keep_alive = respond(item, stopping)
            if delay or type(data) is not bytes:
                self.flush(out)  # the answers before it do not wait for it, nor follow its pieces
                if not self.hold(data, delay, keep_alive, pending):
                    return False
            else:
                out.append(data)
            if not keep_alive:
                self.flush(out)
                self.finish()
                return False
        return self._settled(out)

    def _settled(self, out: list[bytes]) -> bool:
        """Every answer is made: send `out` and a CONTINUE that is due, and wait for the next
        request (True): idle, or, if part of one came with the last, its request timeout runs
        from now. An idle connection's keep-alive deadline is the model's to set, from its own
        clock (a blocking model waits in recv with the keep-alive timeout instead)."""
        parser = self.parser
        if parser.client_awaits_continue:  # its turn: every answer before it is out
            parser.client_awaits_continue = False
            out.append(CONTINUE)
        if out:  # flush(out), less a call
            self.emit(out[0] if len(out) == 1 else b"".join(out))
        self.idle = idle = parser.buffered == 0
        if not idle:
            self.deadline = monotonic() + self.config.request_timeout
        return True

    def flush(self, out: list[bytes]) -> None:
        if out:
            self.emit(out[0] if len(out) == 1 else b"".join(out))
            out.clear()

    # -- what a model passes in ----------------------------------------------------------------
    # Set by the model, as attributes rather than methods, so that a send costs no extra call:
    emit: Callable[[bytes], None]  # send these bytes, or buffer them to send
    send_answer: Callable[[bytes | Streamed], None]  # a blocking model's send of a whole answer, pieces and all

    def finish(self) -> None:
        """An answer closes the connection: nothing more is answered."""
        self.closing = True

    def room(self, out: list[bytes], item: Item, pending: Iterator[Item]) -> bool:
        """Before a pipelined answer is made: make room for it; False keeps `item` and the rest
        of `pending` for later. Blocking models send what is made once over the output cap."""
        if sum(map(len, out)) > MAX_PENDING_OUTPUT:
            self.flush(out)
        return True

    def hold(self, data: bytes | Streamed, delay: float, keep_alive: bool, pending: Iterator[Item]) -> bool:
        """An answer that waits (`delay`) or is sent in pieces (Streamed). False: stopped, with
        what is left of `pending` kept for later. Blocking models wait here and send it."""
        if delay:
            time.sleep(delay)  # looked up when called: gevent's, in its server
        self.send_answer(data)
        return True

