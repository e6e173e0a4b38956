"""Sans-IO HTTP/1.1 (RFC 9112): an incremental request parser and a response builder.

Bytes go in, `Request` objects come out; nothing here touches a socket, so the blocking,
selectors and asyncio backends all share one parser. A request that breaks the protocol
raises `ProtocolError`, which carries the status to answer and whether the connection
must close. One `recv` is never assumed to be one request: `feed()` keeps partial data and
returns every complete request, pipelined ones included.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from servers._body import BODY_READERS, BodyReader, is_digits
from servers._errors import ProtocolError
from servers._grammar import HOSTS_SEEN, TOKEN, expects_continue, has_token, other_form, valid_host
from servers._messages import Headers, Pieces, Request, Response
from servers._response import CONTINUE, Streamed, build_response, build_whole, error_response

__all__ = [
    "CONTINUE",
    "Headers",
    "Limits",
    "Pieces",
    "ProtocolError",
    "Request",
    "RequestParser",
    "Response",
    "Streamed",
    "build_response",
    "build_whole",
    "error_response",
]

# Limits. Each is a default; `Limits(...)` overrides them per server.
# 8 KiB request line: RFC 9112 3 recommends supporting at least 8000 octets; nginx's
# default large_client_header_buffers is also 8 KiB.
MAX_REQUEST_LINE = 8 * 1024
# 64 KiB header section: above Apache's 8 KiB per field x 100 fields in practice, and the
# largest default among nginx (32 KiB), node (16 KiB) and tomcat (8 KiB) times two, so real
# browsers with fat cookies pass while a header flood is cut off early.
MAX_HEADER_BYTES = 64 * 1024
# 100 fields: Apache's LimitRequestFields default; browsers send 8-20.
MAX_HEADER_FIELDS = 100
# 1 MiB body: nginx's client_max_body_size default. The app's largest input is /echo.
MAX_BODY = 1024 * 1024
# 100 requests completed by one read: a browser or h2load pipelines a few to a few dozen; one
# 64 KiB read could otherwise queue about 1,600 answers for a client that may never read them.
MAX_PIPELINED = 100


@dataclass(frozen=True, slots=True)
class Limits:
    """Size limits applied while parsing; each breach has its own status."""

    max_request_line: int = MAX_REQUEST_LINE  # -> 414
    max_header_bytes: int = MAX_HEADER_BYTES  # -> 431
    max_header_fields: int = MAX_HEADER_FIELDS  # -> 431
    max_body: int = MAX_BODY  # -> 413
    max_pipelined: int = MAX_PIPELINED  # -> 503 after that many answers, and close


# method SP request-target SP HTTP-version; the target is visible ASCII only.
REQUEST_LINE = re.compile(rb"(" + TOKEN + rb") ([!-~]+) HTTP/([0-9])\.([0-9])")
# One field line, anchored on the CRLF before it: a token, a colon, then a value of VCHAR,
# obs-text, SP and HTAB (no CTLs). A line this does not match (obs-fold, space before the
# colon, a control byte, a bare CR or LF) makes the match count come up short.
# The fast pattern refuses trailing OWS with a one-byte lookbehind; the rare line that has
# some is re-read by the slower pattern, which strips it (OWS is not part of the value).
FIELD = re.compile(rb"\r\n(" + TOKEN + rb"):[ \t]*([\t -~\x80-\xff]*)(?<![ \t])(?=\r\n)")
FIELD_OWS = re.compile(rb"\r\n(" + TOKEN + rb"):[ \t]*([\t -~\x80-\xff]*?)[ \t]*(?=\r\n)")
# The usual methods, decoded once.
METHODS = {m.encode(): m for m in ("GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH")}
_CRLF = b"\r\n"
_END_OF_HEAD = b"\r\n\r\n"
# The common request, alone in one read: GET or HEAD of an origin-form target over HTTP/1.1.
# feed() takes it without the full parser's bookkeeping; the field lines, the Host and the
# framing are still checked there, and anything it cannot decide goes to the full parser.
_SIMPLE = re.compile(rb"(GET|HEAD) (/[!-~]*) HTTP/1\.1\r\n")


def too_many_pipelined() -> ProtocolError:
    """The refusal of a request past Limits.max_pipelined: 503, and the connection closes."""
    return ProtocolError(503, "Too many pipelined requests", close=True)


class RequestParser:
    """Incremental HTTP/1.1 request parser: `feed(bytes) -> list[Request]`."""

    __slots__ = ("limits", "client_awaits_continue", "_pending", "_scan_from", "_reader", "_head", "_head_size",
                 "_failed", "_resume", "_simple_max")

    def __init__(self, limits: Limits = Limits()) -> None:
        self.limits = limits
        # True once a request's head asked "Expect: 100-continue" and none of its body has
        # come: its sender waits for CONTINUE. The caller sends it after the answers it
        # owes, then sets this False; it turns False by itself once the body is complete.
        self.client_awaits_continue = False
        self._pending = bytearray()  # bytes of an incomplete head or chunk-size line
        self._scan_from = 0  # where to resume looking for the end of the head
        self._reader: BodyReader | None = None  # set while a body is arriving
        self._head: Request | None = None  # the request whose body is arriving
        self._head_size = 0  # bytes of that request's head, already parsed
        self._failed: ProtocolError | None = None
        self._resume = 0  # where the next request starts after a recoverable error
        # A read this short is within the request-line and header-section limits whole.
        self._simple_max = min(limits.max_request_line, limits.max_header_bytes)

    @property
    def buffered(self) -> int:
        """Bytes received for a request that is not complete yet (0 only between requests)."""
        if self._reader is None:
            return len(self._pending)
        return len(self._pending) + self._head_size + self._reader.received

    def feed(self, data: bytes) -> list[Request]:
        """Every request completed by `data`, in order; raises ProtocolError for a bad one.

        First the common case, a whole bodiless GET or HEAD alone in `data` (_SIMPLE): the
        request line and the end of the head are checked by one match and one find, the
        field lines by FIELD as below. Anything it cannot decide goes to the full parser,
        with the same bytes and the parser untouched, so every strict check still applies."""
        if len(data) > self._simple_max or self._pending or self._reader is not None or self._failed is not None:
            return self._feed(data)
        simple = _SIMPLE.match(data)
        if simple is None or data.find(_END_OF_HEAD) != len(data) - 4:
            return self._feed(data)
        method, target = simple.groups()
        fields = FIELD.findall(data, simple.end() - 2)
        n_fields = len(fields)
        if n_fields != data.count(b"\n") - 2 or n_fields > self.limits.max_header_fields:
            return self._feed(data)  # a line FIELD does not take (OWS, a bare LF, ...), or too many
        index: dict[bytes, bytes] = {}
        for name, value in fields:
            index[name.lower()] = value
        if len(index) != n_fields or b"content-length" in index or b"transfer-encoding" in index:
            return self._feed(data)  # a repeated name, or a body's framing
        host = index.get(b"host")
        if host is None or (host not in HOSTS_SEEN and not valid_host(host)):
            return self._feed(data)  # which answers 400
        conn = index.get(b"connection")
        keep_alive = conn is None or b"close" not in conn.lower() or not has_token(conn, b"close")
        target_str = target.decode("ascii")
        path, _, query = target_str.partition("?")
        return [Request(METHODS[method], target_str, path, query, "1.1", Headers(fields, index), b"",
                        keep_alive)]

    def _feed(self, data: bytes) -> list[Request]:
        """The full parser: any request, split across reads or pipelined, with a body."""
        if self._failed is not None:  # a fresh error: no requests were completed by this call
            raise ProtocolError(self._failed.status, self._failed.reason)
        if self._pending:
            self._pending += data
            if self._reader is None and self._pending.find(_END_OF_HEAD, self._scan_from) < 0:
                self._check_partial_head(self._pending)
                return []
            data = bytes(self._pending)
            self._pending.clear()
        out: list[Request] = []
        pos = 0
        end = len(data)
        limits = self.limits
        try:
            while pos < end:
                if len(out) == limits.max_pipelined:
                    raise too_many_pipelined()
                if self._reader is not None:
                    pos = self._reader.read(data, pos)
                    if not self._reader.done:
                        break
                    request = self._head
                    assert request is not None
                    request.body = self._reader.body()
                    self._reader = self._head = None
                    self.client_awaits_continue = False
                    out.append(request)
                    continue
                head_end = data.find(_END_OF_HEAD, pos)
                if head_end < 0:
                    break
                pos = self._parse_head(data, pos, head_end, out)
        except ProtocolError as error:
            error.requests = out
            if self._head is not None and self._head.method == "HEAD":
                error.head = True  # a bad body of a HEAD request: still answered without content
            if error.close:
                self._failed = error
            else:  # keep what follows the bad request, unscanned: it may hold whole requests
                self._pending += data[pos if self._reader else self._resume :]
                self._scan_from = 0
            raise
        if pos < end:
            try:
                self._keep(data, pos)
            except ProtocolError as error:  # the incomplete head already breaks a limit
                error.requests = out
                raise
        else:
            self._scan_from = 0
        return out

    def parse(self, data: bytes) -> Sequence[Request | ProtocolError]:
        """What a server answers, in order: requests, with a ProtocolError where one
        occurred (last, if it closes the connection)."""
        try:
            return self.feed(data)
        except ProtocolError as error:
            return self.after_error(error)

    def after_error(self, error: ProtocolError) -> list[Request | ProtocolError]:
        """The rest of parse() once feed() raised `error`: the requests completed before it,
        the error, and, when the error does not close the connection (a missing Host on a
        request with no body), whatever else was pipelined behind it.

        A backend on the hot path calls feed() in its own try and this in its except, which
        saves parse()'s extra call on every request."""
        items: list[Request | ProtocolError] = [*error.requests, error]
        while not error.close:
            try:
                items.extend(self.feed(b""))
                break
            except ProtocolError as next_error:
                items.extend(next_error.requests)
                items.append(next_error)
                error = next_error
        return items

    def _keep(self, data: bytes, pos: int) -> None:
        if pos < len(data):
            rest = data[pos:]
            self._pending += rest
            self._scan_from = max(0, len(self._pending) - 3)
            if self._reader is None:
                self._check_partial_head(self._pending)
        else:
            self._scan_from = 0

    def _check_partial_head(self, pending: bytearray) -> None:
        """Refuse an incomplete head as soon as it is certain to break a limit."""
        limits = self.limits
        start = 2 if pending.startswith(_CRLF) else 0
        line_end = pending.find(_CRLF, start)
        if line_end < 0:
            # The line is at least this long; a final CR may be half of its CRLF.
            if len(pending) - start - pending.endswith(b"\r") > limits.max_request_line:
                self._fail(ProtocolError(414, "Request line too long"))
        elif line_end - start > limits.max_request_line:
            self._fail(ProtocolError(414, "Request line too long"))
        elif len(pending) - line_end > limits.max_header_bytes + 4:
            self._fail(ProtocolError(431, "Request header section too large"))
        self._scan_from = max(0, len(pending) - 3)

    def _fail(self, error: ProtocolError) -> None:
        self._failed = error
        self._pending.clear()
        raise error

    def _parse_head(self, data: bytes, pos: int, head_end: int, out: list[Request]) -> int:
        """Parse the head at data[pos:head_end]; return where the next thing starts.

        This is the hot path of every backend: it works on offsets into `data` without
        copying the head, and leaves the rare cases (repeats, OWS, bodies) to slow paths.
        """
        limits = self.limits
        first = pos
        if data[pos] == 13 and data.startswith(_CRLF, pos):
            pos += 2  # one empty line before the request line is allowed (RFC 9112 2.2)
        line_end = data.find(_CRLF, pos)
        if line_end - pos > limits.max_request_line:
            raise ProtocolError(414, "Request line too long")
        self._resume = start = head_end + 4
        # Checked before the request line, as _check_partial_head does for a head still
        # arriving: the status must not depend on where recv() cut the bytes.
        if head_end - line_end > limits.max_header_bytes:
            raise ProtocolError(431, "Request header section too large")
        line = REQUEST_LINE.fullmatch(data, pos, line_end)
        if line is None:
            raise ProtocolError(400, "Malformed request line")
        method, target, major, minor = line.groups()
        try:
            if major != b"1":
                raise ProtocolError(505, "HTTP version not supported")
            # Every field line starts after a LF, and the head ends with one more: counting LF
            # (a one-byte count, the fastest) also catches a bare LF, which no match covers.
            n_fields = data.count(b"\n", line_end, head_end + 2) - 1
            if n_fields > limits.max_header_fields:
                raise ProtocolError(431, "Too many header fields")
            fields = FIELD.findall(data, line_end, start)
            if len(fields) != n_fields:
                fields = FIELD_OWS.findall(data, line_end, start)
                if len(fields) != n_fields:
                    raise ProtocolError(400, "Malformed header field")
            index: dict[bytes, bytes] = {}  # a loop: 3.11 makes a comprehension a function call, 80 ns
            for name, value in fields:
                index[name.lower()] = value
            if len(index) != n_fields:  # a repeated name: join the values, as RFC 9110 5.3 allows
                index = Headers.from_fields(fields)._index
            http11 = minor != b"0"  # 1.x with x > 1 is answered as 1.1 (RFC 9110 2.5)
            if b"content-length" in index or b"transfer-encoding" in index:
                kind, length = self._framing(index, http11)
            else:
                kind, length = None, 0
            host = index.get(b"host")
            # Host is checked after framing: with no body an HTTP/1.1 connection survives it.
            if host is None:
                if http11:
                    raise ProtocolError(400, "Missing Host header", close=kind is not None)
            elif host not in HOSTS_SEEN and not valid_host(host):  # RFC 9112 3.2: any request, 1.0 too
                raise ProtocolError(400, "Invalid or repeated Host header", close=kind is not None or not http11)
            target_str = target.decode("ascii")
            if target[0] == 47:  # "/": origin-form, all but every request
                path, _, query = target_str.partition("?")
            else:
                path, query = other_form(target_str, method, close=kind is not None or not http11)
        except ProtocolError as error:
            error.head = method == b"HEAD"  # the answer to a HEAD has no content, even an error
            raise
        conn = index.get(b"connection")
        if conn is None:
            keep_alive = http11
        elif http11:
            keep_alive = b"close" not in conn.lower() or not has_token(conn, b"close")
        else:  # HTTP/1.0: only an explicit keep-alive keeps it open, and close still wins
            keep_alive = has_token(conn, b"keep-alive") and not has_token(conn, b"close")
        request = Request(
            METHODS.get(method) or method.decode("ascii"),
            target_str,
            path,
            query,
            "1.1" if http11 else "1.0",
            Headers(fields, index),
            b"",
            keep_alive,
        )
        if kind is None:
            out.append(request)
            return start
        if kind == "content-length" and start + length <= len(data):
            request.body = data[start : start + length]  # the common case: body in hand
            out.append(request)
            return start + length
        self._reader = BODY_READERS[kind](length, limits.max_body)
        self._head = request
        self._head_size = start - first
        if start == len(data) and http11 and expects_continue(index):  # RFC 9110 10.1.1: 1.0 must be ignored
            self.client_awaits_continue = True
        return start

    def _framing(self, index: dict[bytes, bytes], http11: bool) -> tuple[str | None, int]:
        """How the body is delimited: (None, 0), ("content-length", n) or ("chunked", 0)."""
        te = index.get(b"transfer-encoding")
        cl = index.get(b"content-length")
        if te is not None:
            if cl is not None:
                raise ProtocolError(400, "Both Content-Length and Transfer-Encoding")
            if not http11:
                raise ProtocolError(400, "Transfer-Encoding in an HTTP/1.0 request")
            te = te.lower()
            if te != b"chunked":
                codings = [coding.strip() for coding in te.split(b",")]
                if codings[-1] != b"chunked" or b"chunked" in codings[:-1]:
                    # No reliable length: refuse and close (RFC 9112 6.3, rule 4).
                    raise ProtocolError(400, "Transfer-Encoding must end with chunked, once")
                raise ProtocolError(501, "Only chunked transfer coding is supported")
            return ("chunked", 0)
        if cl is None:
            return (None, 0)
        if not is_digits(cl):  # a repeat shows up here too, joined as "5, 5"
            raise ProtocolError(400, "Invalid Content-Length")
        # int() of a huge digit string is slow (and refused past 4300 digits): anything
        # longer than 18 digits is over any body limit anyway.
        length = int(cl) if len(cl) <= 18 else self.limits.max_body + 1
        if length > self.limits.max_body:
            raise ProtocolError(413, "Request body too large")
        return (None, 0) if length == 0 else ("content-length", length)
