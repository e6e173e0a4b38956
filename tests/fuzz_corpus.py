"""What the fuzz tests send: a valid corpus, known smuggling payloads, and mutations of both.

Shared by tests/test_fuzz_sockets.py (over real sockets, every backend), by
tests/test_fuzz_parser.py and by bench/fuzz_parser.py (the parser alone). Every entry
is raw bytes with an id that says what it is; `payloads()` draws from them, mutated or
not, or draws raw binary. The valid entries only use routes of servers/app.py, with
small costs (/sleep and /cpu for 1 ms), so a payload never stalls a backend.

Sources for the hostile entries: the request-smuggling classics (CL.TE, TE.CL, TE.TE
obfuscations), llhttp's test/request/*.md and h11's tests of invalid framing.
"""

from __future__ import annotations

from hypothesis import strategies as st

HOST = b"Host: fuzz\r\n"


def get(target: bytes = b"/", *, method: bytes = b"GET", head: bytes = HOST, version: bytes = b"1.1") -> bytes:
    return method + b" " + target + b" HTTP/" + version + b"\r\n" + head + b"\r\n"


def post(head: bytes, body: bytes = b"", *, target: bytes = b"/echo") -> bytes:
    return b"POST " + target + b" HTTP/1.1\r\n" + HOST + head + b"\r\n" + body


def chunked(body: bytes, head: bytes = b"Transfer-Encoding: chunked\r\n") -> bytes:
    return post(head, body)


def length(body: bytes, head: bytes = b"") -> bytes:
    return post(head + b"Content-Length: %d\r\n" % len(body), body)


SMUGGLED = get(b"/nowhere")  # what a desynchronised server would answer as a second request

# Well-formed requests: each gets a 2xx or an app-level 4xx, never a protocol error.
VALID: dict[str, bytes] = {
    "get-root": get(),
    "head-root": get(method=b"HEAD"),
    "get-sleep": get(b"/sleep?ms=1"),
    "get-cpu": get(b"/cpu?ms=1"),
    "get-bytes": get(b"/bytes?size=64"),
    "head-bytes": get(b"/bytes?size=64", method=b"HEAD"),
    "get-static": get(b"/static/hello.txt"),
    "get-static-encoded-dotdot": get(b"/static/%2e%2e/app.py"),
    "get-404": get(b"/nowhere?x=1"),
    "delete-405": get(method=b"DELETE"),
    "get-bad-param-400": get(b"/sleep?ms=nope"),
    "options-asterisk": get(b"*", method=b"OPTIONS"),
    "absolute-form": get(b"http://fuzz/"),
    "post-length": length(b"hello", b"Content-Type: text/plain\r\n"),
    "post-length-zero": length(b""),
    "post-chunked": chunked(b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n"),
    "post-chunked-upper-hex": chunked(b"A\r\n0123456789\r\n0\r\n\r\n"),
    "post-chunked-empty": chunked(b"0\r\n\r\n"),
    "http10-get": get(head=b"", version=b"1.0"),
    "http10-keep-alive-pair": get(head=b"Connection: keep-alive\r\n", version=b"1.0") + get(),
    "connection-close-then-more": get(head=HOST + b"Connection: close\r\n") + get(),
    "pipelined-get-post": get() + length(b"abc"),
    "pipelined-chunked-head": chunked(b"3\r\nabc\r\n0\r\n\r\n") + get(method=b"HEAD"),
    "pipelined-sleep-get": get(b"/sleep?ms=1") + get(),
    "leading-empty-line": b"\r\n" + get(),
    "ows-around-values": b"GET / HTTP/1.1\r\nHost:\t fuzz \t\r\nX-A:b  \r\n\r\n",
    "http11-minor-9": get(version=b"1.9"),
    "missing-host-then-get": get(head=b"") + get(),
    "head-missing-host-then-get": get(method=b"HEAD", head=b"") + get(),
}

# Known attacks and malformations: each must be refused or framed exactly one way.
HOSTILE: dict[str, bytes] = {
    # Content-Length and Transfer-Encoding together (CL.TE and TE.CL desync)
    "cl-te": post(b"Content-Length: 6\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\nG" + SMUGGLED),
    "te-cl": post(b"Transfer-Encoding: chunked\r\nContent-Length: 3\r\n", b"8\r\nSMUGGLED\r\n0\r\n\r\n"),
    # Transfer-Encoding obfuscation (TE.TE)
    "te-xchunked": post(b"Transfer-Encoding: xchunked\r\n", b"0\r\n\r\n" + SMUGGLED),
    "te-chunked-identity": post(b"Transfer-Encoding: chunked, identity\r\n", b"0\r\n\r\n"),
    "te-identity-chunked": post(b"Transfer-Encoding: identity, chunked\r\n", b"0\r\n\r\n"),
    "te-twice": post(b"Transfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n", b"0\r\n\r\n"),
    "te-quoted": post(b'Transfer-Encoding: "chunked"\r\n', b"0\r\n\r\n"),
    "te-uppercase": post(b"Transfer-Encoding: CHUNKED\r\n", b"0\r\n\r\n"),
    "te-tab": post(b"Transfer-Encoding:\tchunked\r\n", b"0\r\n\r\n"),
    "te-vertical-tab": post(b"Transfer-Encoding: \x0bchunked\r\n", b"0\r\n\r\n"),
    "te-space-before-colon": post(b"Transfer-Encoding : chunked\r\n", b"0\r\n\r\n" + SMUGGLED),
    "te-leading-space-obs-fold": post(b"X: y\r\n Transfer-Encoding: chunked\r\n", b"0\r\n\r\n"),
    "te-underscore": post(b"Transfer_Encoding: chunked\r\n", b"0\r\n\r\n"),
    "te-obs-fold-value": post(b"Transfer-Encoding:\r\n chunked\r\n", b"0\r\n\r\n"),
    "te-http10": b"POST /echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + SMUGGLED,
    # Content-Length malformations
    "cl-twice-differing": post(b"Content-Length: 3\r\nContent-Length: 8\r\n", b"abcdefgh"),
    "cl-twice-same": post(b"Content-Length: 3\r\nContent-Length: 3\r\n", b"abc"),
    "cl-list": post(b"Content-Length: 3, 3\r\n", b"abc"),
    "cl-plus": post(b"Content-Length: +3\r\n", b"abc"),
    "cl-minus": post(b"Content-Length: -3\r\n", b"abc"),
    "cl-inner-space": post(b"Content-Length: 1 2\r\n", b"abcdefghijkl"),
    "cl-hex": post(b"Content-Length: 0x3\r\n", b"abc"),
    "cl-leading-zeros": post(b"Content-Length: 0003\r\n", b"abc"),
    "cl-huge": post(b"Content-Length: 99999999999999999999999\r\n", b"abc"),
    "cl-over-max-body": post(b"Content-Length: 2000000\r\n", b"abc"),
    "cl-empty": post(b"Content-Length:\r\n", b"abc"),
    "cl-short-body": post(b"Content-Length: 10\r\n", b"abc"),
    "cl-on-get": get(head=HOST + b"Content-Length: 4\r\n") + b"GET " + get()[4:],
    # line endings and control bytes
    "bare-lf-everywhere": b"GET / HTTP/1.1\nHost: fuzz\n\n",
    "bare-lf-before-te": post(b"X: y\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n"),
    "bare-cr-in-value": get(head=HOST + b"X: a\rb\r\n"),
    "bare-cr-before-te": post(b"X:\rTransfer-Encoding: chunked\r\n", b"0\r\n\r\n"),
    "nul-in-value": get(head=HOST + b"X: a\x00b\r\n"),
    "nul-in-name": get(head=HOST + b"X\x00Y: b\r\n"),
    "del-in-target": get(b"/a\x7fb"),
    "obs-text-in-value": get(head=HOST + b"X: caf\xe9\r\n"),
    "space-before-colon": get(head=b"Host : fuzz\r\n"),
    "obs-fold": get(head=HOST + b"X: a\r\n b\r\n"),
    "whitespace-before-first-field": get(head=b" X: a\r\n" + HOST),
    "empty-field-name": get(head=HOST + b": b\r\n"),
    "no-colon": get(head=HOST + b"NoColon\r\n"),
    # chunked body malformations
    "chunk-ext-long": chunked(b"5;" + b"e" * 5000 + b"\r\nhello\r\n0\r\n\r\n"),
    "chunk-ext-at-limit": chunked(b"5;" + b"e" * 4094 + b"\r\nhello\r\n0\r\n\r\n"),
    "chunk-ext-bare-cr": chunked(b"5;a\rb\r\nhello\r\n0\r\n\r\n"),
    "chunk-size-overflow": chunked(b"fffffffffffffffff\r\nx\r\n0\r\n\r\n"),
    "chunk-size-2-64": chunked(b"ffffffffffffffff\r\nx\r\n0\r\n\r\n"),
    "chunk-size-negative": chunked(b"-5\r\nhello\r\n0\r\n\r\n"),
    "chunk-size-0x": chunked(b"0x5\r\nhello\r\n0\r\n\r\n"),
    "chunk-size-space": chunked(b"5 \r\nhello\r\n0\r\n\r\n"),
    "chunk-size-bare-lf": chunked(b"5\nhello\n0\n\n"),
    "chunk-data-too-long": chunked(b"3\r\nhello\r\n0\r\n\r\n"),
    "chunk-data-too-short": chunked(b"8\r\nhello\r\n0\r\n\r\n" + SMUGGLED),
    "chunk-missing-last": chunked(b"5\r\nhello\r\n"),
    "trailer-bare-lf": chunked(b"0\r\nX: a\nTransfer-Encoding: chunked\r\n\r\n"),
    "trailer-content-length": chunked(b"0\r\nContent-Length: 5\r\n\r\nhello"),
    # request line
    "http2-preface": b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    "http09": b"GET /\r\n\r\n",
    "http-2-0": get(version=b"2.0"),
    "http-lowercase": b"GET / http/1.1\r\n" + HOST + b"\r\n",
    "method-lowercase": get(method=b"get"),
    "method-not-token": get(method=b"G(T"),
    "two-spaces": b"GET  / HTTP/1.1\r\n" + HOST + b"\r\n",
    "trailing-space-version": b"GET / HTTP/1.1 \r\n" + HOST + b"\r\n",
    "two-empty-lines-first": b"\r\n\r\n" + get(),
    "host-twice": get(head=HOST + HOST),
    "host-with-comma": get(head=b"Host: a,b\r\n"),
    "head-bad-version-then-get": get(method=b"HEAD", version=b"2.0") + get(),
    "connection-close-keep-alive": get(head=HOST + b"Connection: keep-alive, close\r\n") + get(),
    "expect-continue": post(b"Expect: 100-continue\r\nContent-Length: 5\r\n", b"hello"),
    "tls-client-hello": bytes.fromhex("16030100a5010000a10303") + bytes(range(32)) + b"\x00\x02\x13\x01\x01\x00",
    "empty-lines-only": b"\r\n\r\n\r\n",
    # sizes around the limits of servers/http.py
    "request-line-too-long": get(b"/" + b"a" * 9000),
    "request-line-at-limit": get(b"/" + b"a" * (8192 - len(b"GET / HTTP/1.1"))),
    "header-section-too-large": get(head=HOST + b"X: " + b"a" * 70000 + b"\r\n"),
    "header-too-large-bad-line": b"BAD\r\nX: " + b"a" * 70000 + b"\r\n\r\n",
    "too-many-fields": get(head=HOST + b"X: y\r\n" * 100),
    "static-name-too-long": get(b"/static/" + b"a" * 300),
    "static-path-too-long": get(b"/static/" + b"a/" * 2100 + b"b"),
}

CORPUS: dict[str, bytes] = {**VALID, **HOSTILE}

# Bytes a mutation inserts: the ones that move framing, plus a few whole header lines.
INSERTS = [
    b"\r", b"\n", b"\r\n", b"\r\n\r\n", b" ", b"\t", b"\x00", b"\x0b", b":", b",", b";", b"=",
    b"0", b"9", b"f", b"-", b"+", b"x", b"/", b"?", b"%", b"\x7f", b"\x80", b"\xff", b"HTTP/1.1",
    b"chunked", b"Content-Length: 3\r\n", b"Transfer-Encoding: chunked\r\n", b"Connection: close\r\n",
    b"Host: x\r\n", b"0\r\n\r\n",
]

entries = st.sampled_from(list(CORPUS.values()))


def _lines(data: bytes) -> list[bytes]:
    """data cut after each LF, so that b"".join(_lines(data)) == data."""
    return data.splitlines(keepends=True)


@st.composite
def mutation(draw, data: bytes) -> bytes:
    """One edit of data: a bit flip, an insertion, a deletion, a truncation, a repeated
    line, or a splice with the tail of another corpus entry."""
    buf = bytearray(data)
    kind = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "duplicate-line", "splice"]))
    at = draw(st.integers(0, len(buf)))
    if kind == "flip" and buf:
        at = min(at, len(buf) - 1)
        buf[at] ^= 1 << draw(st.integers(0, 7))
    elif kind == "insert":
        buf[at:at] = draw(st.sampled_from(INSERTS) | st.binary(min_size=1, max_size=4))
    elif kind == "delete":
        del buf[at : at + draw(st.integers(1, 8))]
    elif kind == "truncate":
        del buf[at:]
    elif kind == "duplicate-line":
        lines = _lines(bytes(buf))
        if lines:
            i = draw(st.integers(0, len(lines) - 1))
            lines.insert(i, lines[i])
        buf = bytearray(b"".join(lines))
    elif kind == "splice":
        other = draw(entries)
        buf = buf[:at] + other[draw(st.integers(0, len(other))) :]
    return bytes(buf)


@st.composite
def mutated(draw) -> bytes:
    """A corpus entry after one to four mutations."""
    data = draw(entries)
    for _ in range(draw(st.integers(1, 4))):
        data = draw(mutation(data))
    return data


def payloads() -> st.SearchStrategy[bytes]:
    """A corpus entry as is, a mutated one, two pipelined, or raw binary."""
    return st.one_of(
        entries,
        mutated(),
        mutated(),  # twice the weight: mutations are where the unknown cases are
        st.tuples(entries, entries).map(b"".join),
        st.binary(max_size=256),
    )


@st.composite
def cuts(draw, data: bytes, max_cuts: int = 4) -> list[bytes]:
    """data cut at up to max_cuts random places: the pieces a client sends one by one."""
    points = sorted(draw(st.lists(st.integers(0, len(data)), max_size=max_cuts)))
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)]) if b > a]


@st.composite
def sends(draw) -> tuple[bytes, list[bytes]]:
    """A payload and the pieces it is sent in."""
    payload = draw(payloads())
    return payload, draw(cuts(payload))
