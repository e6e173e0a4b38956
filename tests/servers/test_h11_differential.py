"""h11 as an independent oracle for how servers/http.py frames requests.

The same bytes go to RequestParser (whole, in random pieces and byte by byte, as recv()
may cut them) and to an h11 server connection (whole; after each EndOfMessage it answers
with a dummy 404 and starts the next cycle). For each message, in order, both must agree
on the method, the target, the HTTP version, the body and whether the connection stays
open. The test fails where

- h11 refuses (RemoteProtocolError) a message that we return as a Request, or
- both accept but frame differently: another count of messages, another body, target,
  version or persistence;

unless the case matches an entry of EXCUSES below: a reviewed difference where the RFC
says we are right (never "our parser says so"). Where we refuse and h11 accepts, we are
only stricter: allowed, and recorded (a summary is printed at the end of the module), not
failed. Our outcome must also not depend on where the input is cut.

Inputs: every entry of tests/fuzz_corpus.py; hypothesis payloads cut at random points:
the fuzz corpus's own (entries, their mutations, pipelined pairs, raw binary), requests
crafted from the values that move framing, and valid requests; and the hand-written
TRICKY table, cut at every point. CONCURBENCH_FUZZ_EXAMPLES sets the examples of each
generated test (default 300); runs are derandomized unless CONCURBENCH_FUZZ_RANDOM=1.

How h11 is driven, and why it is still an oracle for framing:
- Its receive buffer limit is raised far above ours, so it never refuses for a size only
  our limits decide (we may refuse those: stricter).
- h11 never keeps an HTTP/1.0 connection, nor one after "Connection: close": there, the
  rest of the bytes go to a fresh h11 connection, so the framing of what follows is still
  compared (our parser keeps parsing too; the backend is what closes).
- Where we refuse a message without closing (a bad Host, no body) and h11 refuses it too,
  h11 resumes on a fresh connection after that head: only once it is checked that h11
  would have read no body there.
- An excuse for an h11 refusal may drop the bytes that the cited rule says mean nothing
  (the ignored empty line, the bad whitespace, the discarded trailer fields), so that h11
  reads on and the messages after it are compared too.

Besides the fields, each message both accept must end at the same byte of the input: a
message we end early or late shows there even when what follows is refused by us (a
refusal on its own only makes us "stricter"). And requests built only from valid syntax
must be accepted by both sides: there, a refusal of ours is a bug, not strictness.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import h11
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fuzz_corpus import CORPUS, HOST, SMUGGLED, chunked, cuts, get, post, sends
from servers.http import ProtocolError, Request, RequestParser

EXAMPLES = int(os.environ.get("CONCURBENCH_FUZZ_EXAMPLES", "300"))
DERANDOMIZE = not os.environ.get("CONCURBENCH_FUZZ_RANDOM")
H11_BUFFER = 16 * 1024 * 1024  # above any limit of ours: h11 must not refuse for size
BYTEWISE_MAX = 512  # inputs up to this long are also fed to our parser one byte at a time


# -- the reviewed exceptions (EXCUSES) -------------------------------------------------------
#
# Each: a predicate on one Disagreement (see below: kind, field, ours, theirs, the bytes),
# the RFC rule that makes our side right, and for a refusal by h11, optionally, the bytes
# that rule says mean nothing, dropped so that h11 reads on. Nothing here may say "because
# our parser does it": a new entry needs an RFC rule, a predicate as narrow as the case,
# and a line in test_excuses_cover_only_what_they_name.

_BARE_LF = re.compile(rb"(?<!\r)\n")
_CHUNK_LINE_BWS = re.compile(rb"[0-9A-Fa-f]+([ \t]+);[^\r\n]*\r\n")
_TRAILER_CHECKS = {  # what h11 checks in a trailer section as if it were a header section
    "bad Content-Length", "conflicting Content-Length headers",
    "multiple Transfer-Encoding headers", "Only Transfer-Encoding: chunked is supported",
}


def _refusal(d: Disagreement) -> Refusal | None:
    return d.theirs if d.kind == "h11-refuses" and isinstance(d.theirs, Refusal) else None


def _is_leading_empty_line(d: Disagreement) -> bool:
    refusal = _refusal(d)
    return (refusal is not None and refusal.detail == "no request line received"
            and d.data.startswith(b"\r\n", refusal.at))


def _chunk_line(data: bytes, refusal: Refusal) -> tuple[int, bytes]:
    """The chunk-size line h11 refused: it ends where h11 stopped."""
    start = data.rfind(b"\r\n", 0, refusal.stop - 2) + 2
    return start, data[start : refusal.stop]


def _is_bws_before_chunk_ext(d: Disagreement) -> bool:
    refusal = _refusal(d)
    return (refusal is not None and refusal.phase == "body" and refusal.detail.startswith("illegal chunk header")
            and _CHUNK_LINE_BWS.fullmatch(_chunk_line(d.data, refusal)[1]) is not None)


def _bws_before_chunk_ext(data: bytes, refusal: Refusal) -> tuple[int, int]:
    start, line = _chunk_line(data, refusal)
    match = _CHUNK_LINE_BWS.fullmatch(line)
    assert match is not None
    return start + match.start(1), start + match.end(1)


def _is_checked_trailer(d: Disagreement) -> bool:
    refusal = _refusal(d)
    return refusal is not None and refusal.phase == "body" and refusal.detail in _TRAILER_CHECKS


def _trailer_fields(data: bytes, refusal: Refusal) -> tuple[int, int]:
    """data[tail:stop] is [CRLF ending the last chunk] last-chunk-line trailer-fields empty-line."""
    tail = data[refusal.tail : refusal.stop]
    last_chunk_end = tail.find(b"\r\n", 2 if tail.startswith(b"\r\n") else 0) + 2
    empty_line = 2 if data[refusal.stop - 2 : refusal.stop] == b"\r\n" else 1
    return refusal.tail + last_chunk_end, refusal.stop - empty_line


def _is_bare_lf_head_or_trailer(d: Disagreement) -> bool:
    return (d.kind == "count" and d.ours == "still reading" and isinstance(d.theirs, Message)
            and _BARE_LF.search(d.theirs.lines) is not None)


def _is_higher_minor_version(d: Disagreement) -> bool:
    return (d.kind == "field" and d.field == "version" and d.ours == b"1.1"
            and isinstance(d.theirs, bytes) and re.fullmatch(rb"1\.[2-9]", d.theirs) is not None)


def _is_http10_keep_alive(d: Disagreement) -> bool:
    if d.kind != "field" or d.field != "keep_alive" or (d.ours, d.theirs) != (True, False) or d.context is None:
        return False
    tokens = {token.strip().lower() for name, value in d.context.headers if name.lower() == b"connection"
              for token in value.split(b",")}
    return d.context.version == b"1.0" and b"keep-alive" in tokens and b"close" not in tokens


@dataclass(frozen=True)
class Excuse:
    name: str
    applies: Callable[[Disagreement], bool]
    reason: str
    # For a refusal by h11: the span of bytes that mean nothing under the rule; h11 reads
    # on without them, so the messages after this one are compared too.
    drop: Callable[[bytes, Refusal], tuple[int, int]] | None = None


EXCUSES: list[Excuse] = [
    Excuse("leading-empty-line", _is_leading_empty_line,
           "RFC 9112 2.2: a server SHOULD ignore at least one empty line (CRLF) received before "
           "the request-line; h11 refuses it",
           lambda data, refusal: (refusal.at, refusal.at + 2)),
    Excuse("bws-before-chunk-ext", _is_bws_before_chunk_ext,
           'RFC 9112 7.1.1: chunk-ext = *( BWS ";" ... ), and RFC 9110 5.6.3: a recipient MUST '
           "accept and remove BWS; h11 refuses whitespace between chunk-size and ';'",
           _bws_before_chunk_ext),
    Excuse("trailer-fields-discarded", _is_checked_trailer,
           "RFC 9112 7.1.2: a recipient MAY discard trailer fields, and RFC 9110 6.5.1: framing "
           "fields are not processed from trailers; h11 validates Content-Length/Transfer-Encoding there",
           _trailer_fields),
    Excuse("bare-lf-is-no-line-end", _is_bare_lf_head_or_trailer,
           "RFC 9112 2.2: the line terminator is CRLF, recognizing a bare LF is only a MAY: for us "
           "the head (or trailer section) h11 ended with a bare LF has not ended, nothing is framed",
           None),
    Excuse("higher-minor-version", _is_higher_minor_version,
           "RFC 9110 2.5: a message in HTTP/1.x, x above ours, is processed as the highest minor "
           "version we implement, 1.1; h11 reports the version as sent"),
    Excuse("http10-keep-alive", _is_http10_keep_alive,
           'RFC 9112 9.3 and C.2.2: an HTTP/1.0 request with the "keep-alive" connection option '
           "may persist; h11 never keeps an HTTP/1.0 connection open"),
]


def excuse_for(d: Disagreement) -> Excuse | None:
    return next((e for e in EXCUSES if e.applies(d)), None)


# -- what each side made of the bytes ------------------------------------------------------


@dataclass(frozen=True)
class Message:
    """One accepted request. The fields after keep_alive are h11's, for the excuses."""

    method: bytes
    target: bytes
    version: bytes
    body: bytes
    keep_alive: bool
    headers: tuple[tuple[bytes, bytes], ...] = field(default=(), compare=False)
    lines: bytes = field(default=b"", compare=False)  # the message without its body content


COMPARED = ("method", "target", "version", "body", "keep_alive")


@dataclass(frozen=True)
class Refusal:
    """One refused request: ours has a status and close, h11's its error and offsets."""

    detail: str
    status: int | None = None
    close: bool = True
    phase: str = "head"  # h11: "head" (before its Request event) or "body"
    at: int = -1  # h11: where the refused message starts
    tail: int = -1  # h11: where its head, or the last body data h11 read, ends
    stop: int = -1  # h11: how far it had read when it refused


@dataclass(frozen=True)
class Disagreement:
    """kind: "h11-refuses" (a message we accept), "field" (both accept), "count" (one
    side completed a message the other is still reading), "resync" (we went on after
    refusing a message that h11 reads with a body)."""

    kind: str
    index: int
    field: str
    ours: object
    theirs: object
    data: bytes  # what h11 read
    at: int  # where that message starts in data
    context: Message | None = None  # for a "field": h11's message

    def __str__(self) -> str:
        what = f"{self.field}: ours {self.ours!r}, h11 {self.theirs!r}" if self.field else (
            f"ours {self.ours!r}, h11 {self.theirs!r}")
        return f"message {self.index}: {self.kind} ({what}); its bytes: {self.data[self.at : self.at + 200]!r}"


# -- the two parsers -----------------------------------------------------------------------


def _ours(request: Request) -> Message:
    return Message(request.method.encode("ascii"), request.target.encode("ascii"),
                   request.version.encode("ascii"), request.body, request.keep_alive)


def our_run(pieces: list[bytes]) -> list[Message | Refusal]:
    """What our parser makes of the pieces, fed as a backend feeds them (as RequestParser.parse
    does): after a refusal that does not close, it goes on."""
    parser = RequestParser()
    out: list[Message | Refusal] = []
    for piece in pieces:
        data = piece
        while True:
            try:
                out += [_ours(r) for r in parser.feed(data)]
                break
            except ProtocolError as error:
                out += [_ours(r) for r in error.requests]
                out.append(Refusal(f"{error.status} {error.reason}", error.status, error.close))
                if error.close:
                    return out
                data = b""
    return out


def _outcome(items: list[Message | Refusal]) -> list[object]:
    """What must not depend on the cut: each message, each refusal's status and close."""
    return [x if isinstance(x, Message) else ("refused", x.status, x.close) for x in items]


def _h11_server(data: bytes) -> h11.Connection:
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=H11_BUFFER)
    if data:  # receive_data(b"") would mean EOF
        conn.receive_data(data)
    return conn


@dataclass
class H11Run:
    messages: list[Message]
    starts: list[int]  # where each message starts in the data
    ends: list[int]  # and where it ends
    refusal: Refusal | None  # None: h11 ran out of bytes
    pending: bool = False  # and it had started on one more message


def h11_run(data: bytes, start: int = 0) -> H11Run:
    """The messages h11 reads from data[start:], until it refuses one or needs more bytes."""
    run = H11Run([], [], [], None)
    conn = _h11_server(data[start:])
    request: h11.Request | None = None
    body = bytearray()
    at = head_end = tail = start

    def offset() -> int:
        return len(data) - len(conn.trailing_data[0])

    while True:
        if request is None:
            at = offset()
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError as error:
            phase = "head" if request is None else "body"
            run.refusal = Refusal(str(error), phase=phase, at=at, tail=tail, stop=offset())
            return run
        if event is h11.NEED_DATA:
            run.pending = at < len(data)
            return run
        if isinstance(event, h11.Request):
            request, body = event, bytearray()
            head_end = tail = offset()
        elif isinstance(event, h11.Data):
            body += event.data
            tail = offset()
        elif isinstance(event, h11.EndOfMessage):
            assert request is not None
            # 404, not 2xx: a 2xx would accept a CONNECT's tunnel.
            conn.send(h11.Response(status_code=404, headers=[("Content-Length", "0")]))
            conn.send(h11.EndOfMessage())
            keep_alive = conn.our_state is h11.DONE and conn.their_state is h11.DONE
            run.messages.append(Message(request.method, request.target, request.http_version, bytes(body), keep_alive,
                                        tuple(request.headers.raw_items()), data[at:head_end] + data[tail : offset()]))
            run.starts.append(at)
            run.ends.append(offset())
            request = None
            if keep_alive:
                conn.start_next_cycle()
            else:  # h11 is done with this connection; the framing of the rest still counts
                conn = _h11_server(conn.trailing_data[0])
        else:  # pragma: no cover - h11 only pauses if it is not answered
            raise AssertionError(f"unexpected h11 event {event!r}")


def our_end(data: bytes, index: int) -> int:
    """Where our message `index` ends: the shortest prefix of data that yields it (our
    outcome for a prefix is a prefix of our outcome for the whole: the cut tests say so)."""
    low, high = 0, len(data)
    while low < high:
        mid = (low + high) // 2
        if len(our_run([data[:mid]])) > index:
            high = mid
        else:
            low = mid + 1
    return low


# -- the comparison ------------------------------------------------------------------------


@dataclass
class Verdict:
    failures: list[Disagreement] = field(default_factory=list)
    excused: list[tuple[str, Disagreement]] = field(default_factory=list)
    stricter: list[tuple[int, str]] = field(default_factory=list)  # (index, our refusal) h11 accepted
    h11_refused: bool = False  # did h11 refuse anything in the bytes as sent
    both_accepted: int = 0  # messages


def _judge(verdict: Verdict, d: Disagreement) -> Excuse | None:
    excuse = excuse_for(d)
    if excuse is None:
        verdict.failures.append(d)
    else:
        verdict.excused.append((excuse.name, d))
    return excuse


def _declares_body(head: bytes) -> bool:
    """Would h11 read a body after this head (its lines ending in LF or CRLF)? Any
    Transfer-Encoding, or a Content-Length other than 0."""
    fields = re.findall(rb"\n(content-length|transfer-encoding)[ \t]*:([^\r\n]*)", head, re.IGNORECASE)
    return any(name.lower() == b"transfer-encoding" or any(v.strip().lstrip(b"0") for v in value.split(b","))
               for name, value in fields)


def compare(data: bytes, ours: list[Message | Refusal], end_of: Callable[[int], int] | None = None) -> Verdict:
    """Our outcomes for data against h11's, message by message. end_of(i): where our
    message i ends in data (our_end), to check against where h11's ends; None: unchecked."""
    verdict = Verdict()
    original = data
    dropped: list[tuple[int, int]] = []  # (where, how many) bytes an excuse dropped for h11

    def in_original(offset: int) -> int:
        for where, count in reversed(dropped):
            if offset > where:
                offset += count
        return offset

    run = h11_run(data)
    verdict.h11_refused = run.refusal is not None
    k = 0  # the next of run's outcomes
    for i, mine in enumerate(ours):
        while True:
            if k < len(run.messages):
                theirs: Message | Refusal | None = run.messages[k]
                at = run.starts[k]
            else:
                theirs = run.refusal
                at = run.refusal.at if run.refusal else len(data)
            if not (isinstance(theirs, Refusal) and isinstance(mine, Message)):
                break
            excuse = _judge(verdict, Disagreement("h11-refuses", i, "", mine, theirs, data, at))
            if excuse is None or excuse.drop is None:
                return verdict  # h11 cannot go on
            start, stop = excuse.drop(data, theirs)
            assert at <= start < stop, (excuse.name, start, stop)  # h11 reads less each time: this ends
            data = data[:start] + data[stop:]
            dropped.append((start, stop - start))
            run, k = h11_run(data, at), 0
        if theirs is None:  # h11 has no more messages: it may be reading one
            if isinstance(mine, Message) or not run.pending:  # ours is made of bytes h11 framed otherwise
                verdict.failures.append(Disagreement("count", i, "", mine, "still reading" if run.pending
                                                     else "no more bytes", data, at))
                return verdict
            verdict.stricter.append((i, mine.detail))  # refused before h11 saw the end of it
            if mine.close:
                return verdict
            continue
        if isinstance(mine, Message):
            assert isinstance(theirs, Message)
            verdict.both_accepted += 1
            for name in COMPARED:
                if getattr(mine, name) != getattr(theirs, name):
                    _judge(verdict, Disagreement("field", i, name, getattr(mine, name), getattr(theirs, name),
                                                 data, at, theirs))
            if end_of is not None and end_of(i) != in_original(run.ends[k]):
                _judge(verdict, Disagreement("field", i, "end", end_of(i), in_original(run.ends[k]), original,
                                             in_original(at), theirs))
            k += 1
            continue
        if isinstance(theirs, Message):  # we refuse what h11 reads: stricter
            verdict.stricter.append((i, mine.detail))
            if mine.close:
                return verdict
            if theirs.body:
                verdict.failures.append(Disagreement("resync", i, "", mine, theirs, data, at))
                return verdict
            k += 1
            continue
        if mine.close:  # both refuse
            return verdict
        head_end = data.find(b"\r\n\r\n", at)
        if head_end < 0 or _declares_body(data[at : head_end + 2]):
            verdict.failures.append(Disagreement("resync", i, "", mine, theirs, data, at))
            return verdict
        run, k = h11_run(data, head_end + 4), 0
    if k < len(run.messages) and not (ours and isinstance(ours[-1], Refusal) and ours[-1].close):
        _judge(verdict, Disagreement("count", len(ours), "", "still reading", run.messages[k], data, run.starts[k]))
    return verdict


# -- what the tests run --------------------------------------------------------------------

STRICTER: Counter[str] = Counter()  # our refusal of a message h11 accepts -> how often
EXCUSED: Counter[str] = Counter()  # excuse name -> how often used


def check(name: str, data: bytes, splits: Iterable[list[bytes]] = ()) -> Verdict:
    """Our parser on data (whole, in each list of pieces, byte by byte) against h11."""
    whole = our_run([data])
    expected = _outcome(whole)
    ways = list(splits)
    if len(data) <= BYTEWISE_MAX:
        ways.append([data[i : i + 1] for i in range(len(data))])
    for pieces in ways:
        got = _outcome(our_run(pieces))
        assert got == expected, (
            f"{name}: our outcome depends on the cut {[len(p) for p in pieces]}: {got} != {expected}")
    verdict = compare(data, whole, lambda i: our_end(data, i))
    STRICTER.update(detail for _, detail in verdict.stricter)
    EXCUSED.update(excuse for excuse, _ in verdict.excused)
    assert not verdict.failures, f"{name}: {data[:300]!r}\n" + "\n".join(map(str, verdict.failures))
    return verdict


class _Summary:
    """A plugin, registered by the module: at the end of the session it prints where we
    were stricter than h11 and which excuses were used (recorded, not failed)."""

    def pytest_terminal_summary(self, terminalreporter) -> None:  # type: ignore[no-untyped-def]
        if not STRICTER and not EXCUSED:
            return
        terminalreporter.section("h11 differential")
        terminalreporter.write_line(f"we refused {sum(STRICTER.values())} messages that h11 accepted:")
        for detail, n in STRICTER.most_common():
            terminalreporter.write_line(f"  {n:5d}  {detail}")
        terminalreporter.write_line("excuses used: " + (", ".join(f"{name} x{n}" for name, n in EXCUSED.most_common())
                                                        or "none"))


@pytest.fixture(scope="module", autouse=True)
def _summary(request: pytest.FixtureRequest) -> None:
    plugins = request.config.pluginmanager
    if not plugins.has_plugin("h11-differential-summary"):
        plugins.register(_Summary(), "h11-differential-summary")


@pytest.mark.parametrize("name", list(CORPUS))
def test_corpus_entry_is_framed_as_h11_frames_it(name: str) -> None:
    raw = CORPUS[name]
    check(name, raw, [[raw[: len(raw) // 2], raw[len(raw) // 2 :]]])


@settings(max_examples=EXAMPLES, deadline=None, derandomize=DERANDOMIZE, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])
@given(sends())
def test_generated_payload_is_framed_as_h11_frames_it(case: tuple[bytes, list[bytes]]) -> None:
    payload, pieces = case
    check("generated", payload, [pieces])


# -- generated from the grammar's tricky corners -------------------------------------------
#
# Mutations of the corpus rarely hit two framing fields at once; these requests are built
# from the values that move framing: versions, targets, Host, Content-Length and
# Transfer-Encoding variants, Connection, Expect, chunk lines with extensions and
# whitespace, trailers, line ends, then pipelined.

EOLS = st.sampled_from([b"\r\n"] * 40 + [b"\n", b"\r", b"\r\r\n"])
FIELDS = {
    b"Host": [b"x", b"fuzz:8080", b"bad host", b"", b"a,b", b"[::1]:80", b"h:99999", b"a@b", b"x\x80"],
    b"Content-Length": [b"0", b"3", b"5", b"03", b"3, 3", b"3,5", b"+3", b"-1", b"3 ", b"0x3", b"", b"1 2",
                        b"99999999999999999999"],
    b"Transfer-Encoding": [b"chunked", b"CHUNKED", b"chunked, gzip", b"gzip, chunked", b"identity", b"chunked,",
                           b", chunked", b'"chunked"', b"chunked;q=1", b"x"],
    b"Connection": [b"close", b"keep-alive", b"Keep-Alive, close", b"upgrade", b"te, close", b""],
    b"Expect": [b"100-continue", b"100-Continue", b"nothing"],
    b"Upgrade": [b"h2c"],
    b"X": [b"y", b"a\tb", b"", b"\x01", b"\x7f", b"caf\xe9"],
}
NAMES = st.sampled_from([*FIELDS] * 4 + [b"content-length", b"transfer-encoding", b"Content-Length ",
                                         b"Transfer_Encoding", b" Host", b"HOST"])


@st.composite
def field_lines(draw) -> bytes:
    out = b"Host: x" + draw(EOLS) if draw(st.integers(0, 4)) else b""
    for _ in range(draw(st.integers(0, 5))):
        name = draw(NAMES)
        values = FIELDS[{k.lower(): k for k in FIELDS}.get(name.strip().lower().replace(b"_", b"-"), b"X")]
        ows = draw(st.sampled_from([b" ", b"", b"\t", b"  "]))
        out += name + b":" + ows + draw(st.sampled_from(values)) + draw(st.sampled_from([b"", b"", b" "]))
        out += draw(EOLS)
        if draw(st.integers(0, 15)) == 0:
            out += b" folded" + draw(EOLS)  # obs-fold
    return out


@st.composite
def chunked_body(draw) -> bytes:
    out = b""
    for _ in range(draw(st.integers(0, 3))):
        data = draw(st.binary(min_size=1, max_size=40))  # sizes past 0xf: two hex digits
        size = b"%x" % len(data)
        size = draw(st.sampled_from([size, size, size.upper(), b"0" + size, size + b" ", size + b"\t"]))
        ext = draw(st.sampled_from([b"", b"", b";x", b";x=1", b" ;x", b"\t; x = y", b';x="a b"', b";\r"]))
        out += size + ext + draw(EOLS) + data + draw(st.sampled_from([b"\r\n"] * 6 + [b"\n", b"", b"\r\nX"]))
    out += draw(st.sampled_from([b"0", b"0", b"000", b"0;e"])) + draw(EOLS)
    for _ in range(draw(st.integers(0, 2))):
        out += draw(st.sampled_from([b"X: t", b"Content-Length: 5", b"Content-Length: x", b"Transfer-Encoding: gzip",
                                     b"Host: a", b"bad line", b" fold"])) + draw(EOLS)
    return out + draw(EOLS)


@st.composite
def crafted_request(draw) -> bytes:
    method = draw(st.sampled_from([b"GET", b"POST", b"HEAD", b"PUT", b"OPTIONS", b"CONNECT", b"get", b"G(T"]))
    target = draw(st.sampled_from([b"/", b"/echo", b"/a?b=1", b"*", b"http://h/x?y", b"http://h", b"HTTP://h/",
                                   b"http:///x", b"h:443", b"/a%20b", b"/\x80"]))
    version = draw(st.sampled_from([b"HTTP/1.1"] * 6 + [b"HTTP/1.0"] * 3 + [b"HTTP/1.9", b"HTTP/2.0", b"http/1.1"]))
    head = draw(st.sampled_from([b"", b"", b"", b"\r\n", b"\n"])) + method + b" " + target + b" " + version
    head += draw(EOLS)
    if draw(st.booleans()):
        head += b"Transfer-Encoding: chunked" + draw(EOLS)
    elif draw(st.booleans()):
        head += b"Content-Length: %d" % draw(st.integers(0, 6)) + draw(EOLS)
    head += draw(field_lines()) + draw(EOLS)
    body = draw(st.one_of(chunked_body(), st.sampled_from([b"", b"", b"abc", b"hello", b"0\r\n\r\n", SMUGGLED])))
    return head + body


def crafted() -> st.SearchStrategy[bytes]:
    return st.lists(crafted_request(), min_size=1, max_size=3).map(b"".join)


@settings(max_examples=EXAMPLES, deadline=None, derandomize=DERANDOMIZE, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])
@given(st.data())
def test_crafted_request_is_framed_as_h11_frames_it(data: st.DataObject) -> None:
    payload = data.draw(crafted(), "payload")
    check("crafted", payload, [data.draw(cuts(payload), "pieces")])


# -- valid requests: both must accept them -------------------------------------------------
#
# Built only from RFC 9112 syntax that h11 also reads: a refusal of ours here is a bug
# (say, a chunk size read in decimal), not strictness, so it fails.

TCHAR = st.sampled_from(list(b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"))
TOKEN = st.lists(TCHAR, min_size=1, max_size=8).map(bytes)
FIELD_VALUE = st.lists(st.sampled_from([*range(0x21, 0x7F), 0x80, 0xE9, 0xFF]), max_size=10).map(bytes).map(
    lambda v: v[:4] + b" \t " + v[4:] if len(v) > 4 else v)


@st.composite
def valid_fields(draw, framing: set[bytes] = frozenset()) -> bytes:  # type: ignore[assignment]
    out = b""
    for _ in range(draw(st.integers(0, 3))):
        name = draw(TOKEN)
        if name.lower() in {b"host", b"content-length", b"transfer-encoding", b"connection", *framing}:
            continue
        out += name + b":" + draw(st.sampled_from([b"", b" ", b"\t", b"  "])) + draw(FIELD_VALUE)
        out += draw(st.sampled_from([b"", b" ", b"\t"])) + b"\r\n"
    return out


@st.composite
def valid_chunked(draw) -> tuple[bytes, bytes]:
    wire, body = b"", b""
    for _ in range(draw(st.integers(0, 3))):
        data = draw(st.binary(min_size=1, max_size=300))  # sizes of one to three hex digits
        size = draw(st.sampled_from([b"%x", b"%X", b"%04x"])) % len(data)
        ext = draw(st.sampled_from([b"", b"", b";a", b";a=b", b';a="b c"', b";a;b=1"]))
        wire, body = wire + size + ext + b"\r\n" + data + b"\r\n", body + data
    return wire + draw(st.sampled_from([b"0", b"000"])) + b"\r\n" + draw(valid_fields()) + b"\r\n", body


@st.composite
def valid_request(draw) -> bytes:
    method = draw(st.sampled_from([b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"PATCH", b"X-Y"]))
    target = draw(st.sampled_from([b"/", b"/echo", b"/a/b?c=d&e", b"/%7Efoo", b"/sleep?ms=1"]))
    http11 = draw(st.booleans()) or draw(st.booleans())
    head = method + b" " + target + (b" HTTP/1.1\r\n" if http11 else b" HTTP/1.0\r\n")
    if http11 or draw(st.booleans()):
        head += b"Host: " + draw(st.sampled_from([b"x", b"fuzz:8080", b"127.0.0.1", b"[::1]:80", b"a-b.c"])) + b"\r\n"
    if not http11 and draw(st.booleans()):
        head += b"Connection: keep-alive\r\n"
    head += draw(valid_fields())
    kind = draw(st.sampled_from(["none", "length", "chunked"] if http11 else ["none", "length"]))
    if kind == "length":
        body = draw(st.binary(max_size=300))
        return head + b"Content-Length: %d\r\n" % len(body) + draw(valid_fields()) + b"\r\n" + body
    if kind == "chunked":
        wire, _ = draw(valid_chunked())
        coding = draw(st.sampled_from([b"chunked", b"Chunked"]))
        return head + b"Transfer-Encoding: " + coding + b"\r\n" + draw(valid_fields()) + b"\r\n" + wire
    return head + b"\r\n"


@settings(max_examples=EXAMPLES, deadline=None, derandomize=DERANDOMIZE, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.data())
def test_valid_requests_are_accepted_by_both_and_framed_alike(data: st.DataObject) -> None:
    requests = data.draw(st.lists(valid_request(), min_size=1, max_size=3), "requests")
    payload = b"".join(requests)
    verdict = check("valid", payload, [data.draw(cuts(payload), "pieces")])
    assert not verdict.h11_refused, "the generator made a request h11 refuses"
    assert verdict.both_accepted == len(requests), f"we refused a valid request: {verdict.stricter}"


# -- the known-tricky inputs, by hand ------------------------------------------------------


def case(name: str, raw: bytes, h11_refuses: bool) -> object:
    """A hand-written input; h11_refuses pins what the oracle (h11 0.16) does with it."""
    return pytest.param(raw, h11_refuses, id=name)


HOST10 = b"GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n"

TRICKY = [
    # Content-Length with Transfer-Encoding: h11 reads chunked (TE wins), we refuse
    case("cl-te", post(b"Content-Length: 6\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\nG" + SMUGGLED), False),
    case("te-cl", post(b"Transfer-Encoding: chunked\r\nContent-Length: 3\r\n", b"8\r\nSMUGGLED\r\n0\r\n\r\n"), False),
    # Transfer-Encoding obfuscations
    case("te-xchunked", post(b"Transfer-Encoding: xchunked\r\n", b"0\r\n\r\n" + SMUGGLED), True),
    case("te-chunked-twice", post(b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n"), True),
    case("te-chunked-then-x", post(b"Transfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n", b"0\r\n\r\n"), True),
    case("te-quoted", post(b'Transfer-Encoding: "chunked"\r\n', b"0\r\n\r\n"), True),
    case("te-uppercase", post(b"Transfer-Encoding: CHUNKED\r\n", b"5\r\nhello\r\n0\r\n\r\n"), False),
    case("te-trailing-space", post(b"Transfer-Encoding: chunked \r\n", b"5\r\nhello\r\n0\r\n\r\n"), False),
    case("te-vertical-tab", post(b"Transfer-Encoding: \x0bchunked\r\n", b"0\r\n\r\n"), True),
    case("te-space-before-colon", post(b"Transfer-Encoding : chunked\r\n", b"0\r\n\r\n" + SMUGGLED), True),
    # not a Transfer-Encoding at all: both read no body, then refuse "0" as a request line
    case("te-underscore", post(b"Transfer_Encoding: chunked\r\n", b"0\r\n\r\n" + SMUGGLED), True),
    case("te-obs-fold-value", post(b"Transfer-Encoding:\r\n chunked\r\n", b"0\r\n\r\n"), False),
    case("te-chunked-gzip", post(b"Transfer-Encoding: chunked, gzip\r\n", b"0\r\n\r\n" + SMUGGLED), True),
    case("te-gzip-chunked", post(b"Transfer-Encoding: gzip, chunked\r\n", b"0\r\n\r\n" + SMUGGLED), True),
    case("te-chunked-identity", post(b"Transfer-Encoding: chunked, identity\r\n", b"0\r\n\r\n"), True),
    case("te-on-http10", b"POST /echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + SMUGGLED, False),
    # duplicate Content-Length
    case("cl-twice-same", post(b"Content-Length: 3\r\nContent-Length: 3\r\n", b"abc"), False),
    case("cl-twice-differing", post(b"Content-Length: 3\r\nContent-Length: 8\r\n", b"abcdefgh"), True),
    case("cl-list-same", post(b"Content-Length: 3, 3\r\n", b"abc"), False),
    case("cl-list-differing", post(b"Content-Length: 3, 8\r\n", b"abcdefgh"), True),
    case("cl-plus", post(b"Content-Length: +3\r\n", b"abc" + SMUGGLED), True),
    # bare LF
    case("bare-lf-everywhere", b"GET / HTTP/1.1\nHost: fuzz\n\n" + SMUGGLED, False),
    case("bare-lf-request-line", b"GET / HTTP/1.1\nHost: fuzz\r\n\r\n", False),
    case("bare-lf-before-te", post(b"X: y\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n"), False),
    case("bare-lf-chunk-size", chunked(b"5\nhello\r\n0\r\n\r\n"), True),
    case("bare-lf-chunk-data-end", chunked(b"5\r\nhello\n0\r\n\r\n"), True),
    case("bare-lf-trailer", chunked(b"0\r\nX: a\nY: b\r\n\r\n") + SMUGGLED, False),
    case("bare-lf-trailer-end", chunked(b"0\r\n\n"), False),
    # bare CR
    case("bare-cr-request-line-end", b"GET / HTTP/1.1\rHost: fuzz\r\n\r\n", True),
    case("bare-cr-in-target", b"GET /a\rb HTTP/1.1\r\n" + HOST + b"\r\n", True),
    case("bare-cr-in-value", get(head=HOST + b"X: a\rb\r\n"), True),
    case("bare-cr-chunk-size", chunked(b"5\r\r\nhello\r\n0\r\n\r\n"), True),
    case("bare-cr-chunk-ext", chunked(b"5;a\rb\r\nhello\r\n0\r\n\r\n"), False),
    case("bare-cr-after-chunk-size", chunked(b"5\rX\r\nhello\r\n0\r\n\r\n"), True),
    # obs-fold
    case("obs-fold", get(head=HOST + b"X: a\r\n b\r\n"), False),
    case("obs-fold-first-line", get(head=b" X: a\r\n" + HOST), True),
    case("obs-fold-cl", post(b"Content-Length:\r\n 3\r\n", b"abc"), False),
    # request targets
    case("absolute-form", b"GET http://localhost/ HTTP/1.1\r\nHost: localhost\r\n\r\n", False),
    case("absolute-form-query", b"GET http://localhost/sleep?ms=1 HTTP/1.1\r\nHost: localhost\r\n\r\n", False),
    case("absolute-form-no-path", b"GET http://localhost HTTP/1.1\r\nHost: localhost\r\n\r\n", False),
    # h11 accepts an empty host; we refuse it, as RFC 9110 4.2.1 says a recipient MUST
    case("absolute-form-empty-host", b"GET http:///x HTTP/1.1\r\nHost: localhost\r\n\r\n", False),
    case("absolute-form-pipelined", b"GET http://localhost/a HTTP/1.1\r\nHost: localhost\r\n\r\n" + get(), False),
    case("asterisk-form", get(b"*", method=b"OPTIONS"), False),
    case("authority-form-connect", get(b"fuzz:443", method=b"CONNECT"), False),
    # h11 checks only that a target is visible ASCII; we refuse the forms RFC 9112 3.2 does not
    # allow there (stricter), and go on with what follows, as the head had no body
    case("target-in-no-form-then-get", get(b"foo/bar") + get(), False),
    case("target-in-no-form-http10", get(b"foo/bar", version=b"1.0"), False),
    case("target-in-no-form-with-body", post(b"Content-Length: 3\r\n", b"abc", target=b"foo") + get(), False),
    case("asterisk-form-on-get-then-get", get(b"*") + get(), False),
    case("authority-form-on-get-then-get", get(b"fuzz:443") + get(), False),
    case("connect-without-port", get(b"fuzz", method=b"CONNECT"), False),
    # Host
    case("host-bad-host", get(head=b"Host: bad host\r\n"), False),
    case("host-empty", get(head=b"Host:\r\n"), False),
    case("host-twice-http11", get(head=HOST + HOST), True),
    case("host-twice-http10", HOST10, True),
    case("host-twice-http10-then-get", HOST10 + get(), True),
    case("host-missing-http11-then-get", get(head=b"") + get(), True),
    case("host-missing-http10", get(head=b"", version=b"1.0"), False),
    # Expect: 100-continue
    case("expect-continue-length", post(b"Expect: 100-continue\r\nContent-Length: 5\r\n", b"hello") + get(), False),
    case("expect-continue-chunked", chunked(b"5\r\nhello\r\n0\r\n\r\n", b"Expect: 100-continue\r\n"
                                            b"Transfer-Encoding: chunked\r\n") + get(), False),
    case("expect-continue-no-body", get(head=HOST + b"Expect: 100-continue\r\n") + get(), False),
    # what the excuses are for
    case("leading-empty-line", b"\r\n" + get(), True),
    case("empty-line-between-pipelined", post(b"Content-Length: 3\r\n", b"abc") + b"\r\n" + get(), True),
    case("two-leading-empty-lines", b"\r\n\r\n" + get(), True),
    case("http11-minor-9", get(version=b"1.9"), False),
    case("http10-keep-alive-pair", get(head=HOST + b"Connection: keep-alive\r\n", version=b"1.0") + get(), False),
    case("http10-then-more", get(version=b"1.0") + get(b"/2"), False),
    case("http10-connection-other-token", get(head=HOST + b"Connection: te\r\n", version=b"1.0") + get(), False),
    case("http10-keep-alive-and-close", get(head=HOST + b"Connection: keep-alive, close\r\n", version=b"1.0")
         + get(), False),
    case("connection-close-then-more", get(head=HOST + b"Connection: close\r\n") + get(b"/2"), False),
    case("chunk-ext-bws", chunked(b"5 ;x=1\r\nhello\r\n5\t; y\r\nworld\r\n0\r\n\r\n") + get(), True),
    case("chunk-size-trailing-space", chunked(b"5 \r\nhello\r\n0\r\n\r\n"), False),
    case("chunk-size-17-digits", chunked(b"00000000000000005\r\nhello\r\n0\r\n\r\n"), False),
    case("trailer-content-length", chunked(b"0\r\nContent-Length: 5\r\n\r\n") + get(), False),
    case("trailer-bad-content-length", chunked(b"3\r\nabc\r\n0\r\nContent-Length: x\r\n\r\n") + get(), True),
    case("trailer-te-gzip", chunked(b"0\r\nTransfer-Encoding: gzip\r\nX: y\r\n\r\n") + get(), True),
]


@pytest.mark.parametrize(("raw", "h11_refuses"), TRICKY)
def test_tricky_input_is_framed_as_h11_frames_it(request: pytest.FixtureRequest, raw: bytes,
                                                  h11_refuses: bool) -> None:
    """Each hand-written case whole, cut at every point, and byte by byte."""
    assert (h11_run(raw).refusal is not None) == h11_refuses, "h11 (the oracle) no longer does what this table says"
    check(request.node.callspec.id, raw, [[raw[:at], raw[at:]] for at in range(1, len(raw))])


# -- the checks can fail -------------------------------------------------------------------


def _get(target: bytes = b"/") -> Message:
    return Message(b"GET", target, b"1.1", b"", True)


def test_a_different_body_fails() -> None:
    raw = post(b"Content-Length: 5\r\n", b"hello")
    ours = our_run([raw])
    assert compare(raw, ours).failures == []
    [mine] = ours
    assert isinstance(mine, Message)
    shorter = Message(mine.method, mine.target, mine.version, mine.body[:-1], mine.keep_alive)
    [failure] = compare(raw, [shorter]).failures
    assert (failure.kind, failure.field) == ("field", "body")


def test_an_extra_or_a_missing_message_fails() -> None:
    raw = get() + get(b"/2")
    ours = our_run([raw])
    assert [f.kind for f in compare(raw, ours[:1]).failures] == ["count"]
    assert [f.kind for f in compare(raw, [*ours, _get()]).failures] == ["count"]


def test_accepting_what_h11_refuses_fails() -> None:
    [failure] = compare(get(head=HOST + HOST), [_get()]).failures  # two Host fields: h11 refuses
    assert failure.kind == "h11-refuses"


def test_going_on_after_refusing_a_message_h11_reads_with_a_body_fails() -> None:
    raw = post(b"Content-Length: 3\r\n", b"abc") + get()
    assert [f.kind for f in compare(raw, [Refusal("400 made up", 400, close=False), _get()]).failures] == ["resync"]


def test_going_on_after_a_refused_head_that_declares_a_body_fails() -> None:
    raw = post(b"Content-Length: 3\r\n", b"abc").replace(HOST, b"") + get()  # no Host: h11 refuses too
    assert [f.kind for f in compare(raw, [Refusal("400 made up", 400, close=False), _get()]).failures] == ["resync"]


def test_refusing_bytes_that_h11_read_as_part_of_a_message_fails() -> None:
    """A trailer ended after its first field: we refuse the second as a request line,
    while h11 read it as a trailer and waits for nothing more."""
    raw = chunked(b"0\r\nX: a\r\nY: b\r\n\r\n")
    [failure] = compare(raw, [Message(b"POST", b"/echo", b"1.1", b"", True), Refusal("400 made up", 400)]).failures
    assert (failure.kind, failure.theirs) == ("count", "no more bytes")


def test_a_cut_dependent_parser_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    real_feed = RequestParser.feed

    def feed_dropping_short_pieces(self: RequestParser, data: bytes) -> list[Request]:
        return real_feed(self, data) if len(data) > 3 else []

    monkeypatch.setattr(RequestParser, "feed", feed_dropping_short_pieces)
    with pytest.raises(AssertionError, match="depends on the cut"):
        check("cut-dependent", get())


def test_a_message_ending_elsewhere_fails() -> None:
    """Same fields, another end: what follows would be read from another byte."""
    raw = post(b"Content-Length: 5\r\n", b"hello")
    ours = our_run([raw])
    assert compare(raw, ours, lambda i: len(raw)).failures == []
    [failure] = compare(raw, ours, lambda i: len(raw) - 1).failures
    assert (failure.kind, failure.field, failure.ours, failure.theirs) == ("field", "end", len(raw) - 1, len(raw))


def test_ends_are_compared_in_the_bytes_as_sent_after_a_drop() -> None:
    """h11 reads the bytes less what an excuse dropped; ends are still offsets in ours."""
    raw = b"\r\n" + get() + chunked(b"5 ;x\r\nhello\r\n0\r\nContent-Length: x\r\n\r\n") + get(b"/2")
    verdict = check("drops", raw)
    assert [name for name, _ in verdict.excused] == ["leading-empty-line", "bws-before-chunk-ext",
                                                     "trailer-fields-discarded"]
    assert verdict.both_accepted == 3


def test_check_fails_when_our_parser_frames_differently(monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole check, with a parser that drops the last body byte, must fail."""
    real_feed = RequestParser.feed

    def feed_dropping_a_byte(self: RequestParser, data: bytes) -> list[Request]:
        requests = real_feed(self, data)
        for r in requests:
            r.body = r.body[:-1]
        return requests

    monkeypatch.setattr(RequestParser, "feed", feed_dropping_a_byte)
    with pytest.raises(AssertionError, match="body"):
        check("broken", post(b"Content-Length: 5\r\n", b"hello"))


def test_excused_refusals_still_compare_what_follows() -> None:
    """After an excused refusal h11 reads on: a wrong message behind it still fails."""
    raw = b"\r\n" + get() + get(b"/2")
    assert compare(raw, our_run([raw])).failures == []
    [failure] = compare(raw, [_get(), _get(b"/3")]).failures
    assert (failure.index, failure.field) == (1, "target")
    raw = chunked(b"5 ;x\r\nhello\r\n0\r\n\r\n") + get(b"/2")
    [failure] = compare(raw, [*our_run([raw])[:1], _get(b"/3")]).failures
    assert (failure.index, failure.field) == (1, "target")


def test_excuses_cover_only_what_they_name() -> None:
    def field_d(name: str, ours: object, theirs: object, context: Message | None = None) -> Disagreement:
        return Disagreement("field", 0, name, ours, theirs, b"", 0, context or _get())

    def refused(detail: str, data: bytes, **offsets: int) -> Disagreement:
        return Disagreement("h11-refuses", 0, "", _get(), Refusal(detail, **offsets), data, 0)

    assert excuse_for(refused("no request line received", b"\r\nGET", at=0)) is not None
    assert excuse_for(refused("no request line received", b"\nGET", at=0)) is None
    assert excuse_for(refused("Found multiple Host: headers", b"\r\nGET", at=0)) is None
    line = b"\r\n\r\n5 ;x\r\n"
    assert excuse_for(refused("illegal chunk header: x", line, phase="body", stop=len(line))) is not None
    line = b"\r\n\r\n5 x\r\n"
    assert excuse_for(refused("illegal chunk header: x", line, phase="body", stop=len(line))) is None
    assert excuse_for(refused("bad Content-Length", b"", phase="body")) is not None
    assert excuse_for(refused("bad Content-Length", b"", phase="head")) is None
    with_bare_lf = Message(b"GET", b"/", b"1.1", b"", True, lines=b"GET / HTTP/1.1\nHost: x\n\n")
    with_crlf = Message(b"GET", b"/", b"1.1", b"a\nb", True, lines=b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert excuse_for(Disagreement("count", 0, "", "still reading", with_bare_lf, b"", 0)) is not None
    assert excuse_for(Disagreement("count", 0, "", "still reading", with_crlf, b"", 0)) is None
    assert excuse_for(Disagreement("count", 0, "", with_bare_lf, "still reading", b"", 0)) is None
    assert excuse_for(field_d("version", b"1.1", b"1.9")) is not None
    assert excuse_for(field_d("version", b"1.1", b"1.0")) is None
    assert excuse_for(field_d("version", b"1.0", b"1.9")) is None
    assert excuse_for(field_d("target", b"/x", b"http://h/x")) is None  # no excuse for absolute-form
    assert excuse_for(field_d("body", b"1.1", b"1.9")) is None
    assert excuse_for(field_d("end", 10, 12)) is None
    keep_alive_10 = Message(b"GET", b"/", b"1.0", b"", False, ((b"Connection", b"Keep-Alive"),))
    assert excuse_for(field_d("keep_alive", True, False, keep_alive_10)) is not None
    assert excuse_for(field_d("keep_alive", False, True, keep_alive_10)) is None
    assert excuse_for(field_d("keep_alive", True, False, Message(b"GET", b"/", b"1.0", b"", False))) is None
    keep_alive_11 = Message(b"GET", b"/", b"1.1", b"", False, ((b"Connection", b"keep-alive"),))
    assert excuse_for(field_d("keep_alive", True, False, keep_alive_11)) is None
