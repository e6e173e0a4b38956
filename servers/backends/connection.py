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
from typing import TYPE_CHECKING
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

    # -- a read: the request deadline, then answering in order -------------------------------
    # One routine, one frame: a blocking model calls it once per read, and every frame and
    # attribute on this path costs its requests a second.
    def received(self, data: bytes, now: float) -> bool:
        """Take a read's bytes (`now`: when it came) and answer the requests they complete,
        in order, then a CONTINUE that is due. The first bytes since the last answer start
        the request timeout (a new connection's started at accept). Behind an answer still
        `held`, they wait their turn (`behind`). True: all answered and the connection stays
        open, idle until the next request's first byte (the model sets the keep-alive
        deadline), or, if part of one came with the last, that request's timeout from now.
        False: stopped, as answer_in_order says."""
        if self.idle:
            self.idle = False
            if not self.fresh:
                self.deadline = now + self.config.request_timeout
            self.fresh = False
        parser = self.parser
        try:
            items: Sequence[Item] = parser.feed(data)  # parser.parse(data), less a call
        except ProtocolError as error:
            items = parser.after_error(error)
        if self.held:
            return self.behind(items)
        if len(items) != 1 or type(items[0]) is not Request:
            if items or parser.client_awaits_continue:
                return self.answer_in_order(iter(items), False)
            return True  # part of a request: its timeout runs
        # A read holding one request, the common case: answered without the loop's list and
        # pipelining checks (they cost a blocking model 6 to 10% of its requests a second).
        answer, delay, keep_alive = self.responder.respond(items[0], self.signals.stopping)
        if delay or type(answer) is not bytes:
            if not self.hold(answer, delay, keep_alive, iter(())):
                return False
        else:
            emit = self.emit  # an attribute, not a method: called as one, 3.11 would not cache its lookup
            emit(answer)
        if not keep_alive:
            self.finish()
            return False
        if parser.client_awaits_continue:  # what _settled does, less a call
            parser.client_awaits_continue = False
            self.emit(CONTINUE)
        self.idle = idle = parser.buffered == 0
        if not idle:
            self.deadline = monotonic() + self.config.request_timeout
        return True

    def answer_in_order(self, pending: Iterator[Item], later: bool) -> bool:
        """Answer `pending` in order, then a CONTINUE that is due: received's True or False.
        False is either closing (an answer closes it, or a pipelined request came past the
        request timeout: it is not started) or waiting (a hook stopped for a delay, a body in
        pieces or unread output, and kept what is left of `pending`). `later`: the first item
        too is pipelined behind an answer already given."""
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

    # An answer is held (on a timer, its pieces going out, or answers queued behind unread
    # output), or, where one thread reads and another answers (the pool), answers are always
    # made elsewhere: what a read completes waits (`behind`). A blocking model answers before
    # it reads again, so it never holds one: a constant here (an attribute read on its hot
    # path), a property where a model works it out from its state.
    if TYPE_CHECKING:
        @property
        def held(self) -> bool: ...
    else:
        held = False

    def behind(self, items: Sequence[Item]) -> bool:
        """Requests a read completed behind a `held` answer: kept to be answered in turn."""
        raise NotImplementedError

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

