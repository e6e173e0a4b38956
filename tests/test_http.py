"""The sans-IO HTTP/1.1 core (servers/http.py) against RFC 9112 and the project's issue.

Each table is a specification: one row per rule, with an id that reads as the rule.
The parser is also cross-checked against h11, as a server for requests and as a client
for the responses we build.
"""

from __future__ import annotations

import re
import string
from dataclasses import fields as dataclass_fields
from email.utils import parsedate_to_datetime

import h11
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from servers.http import (
    Limits,
    ProtocolError,
    Request,
    RequestParser,
    Response,
    build_response,
    error_response,
)

SIMPLE_GET = b"GET /next HTTP/1.1\r\nHost: a\r\n\r\n"


# ---------------------------------------------------------------------------
# helpers


def feed_all(raw: bytes, limits: Limits | None = None) -> list[Request]:
    """Parse raw in one feed()."""
    parser = RequestParser(limits) if limits else RequestParser()
    return parser.feed(raw)


def feed_bytewise(raw: bytes, limits: Limits | None = None) -> list[Request]:
    """Parse raw one byte per feed(), as a slowloris client would send it."""
    parser = RequestParser(limits) if limits else RequestParser()
    out: list[Request] = []
    for i in range(len(raw)):
        out.extend(parser.feed(raw[i : i + 1]))
    return out


def feed_chunks(chunks: list[bytes], limits: Limits | None = None) -> list[Request]:
    parser = RequestParser(limits) if limits else RequestParser()
    out: list[Request] = []
    for chunk in chunks:
        out.extend(parser.feed(chunk))
    return out


def fields_of(req: Request) -> dict:
    """Every field of a Request as plain data; headers become a list of pairs."""
    return {
        "method": req.method,
        "target": req.target,
        "path": req.path,
        "query": req.query,
        "version": req.version,
        "headers": list(req.headers),
        "body": req.body,
        "keep_alive": req.keep_alive,
    }


def rejection(raw: bytes, limits: Limits | None = None) -> ProtocolError:
    """The ProtocolError that parsing raw in one feed() raises."""
    with pytest.raises(ProtocolError) as info:
        feed_all(raw, limits)
    return info.value


def rejection_bytewise(raw: bytes, limits: Limits | None = None) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        feed_bytewise(raw, limits)
    return info.value


def outcome(chunks: list[bytes]) -> tuple[list[dict], object]:
    """Every request parsed from chunks, then the error (status, close) or bytes left buffered."""
    parser = RequestParser()
    got: list[dict] = []
    try:
        for chunk in chunks:
            got += [fields_of(r) for r in parser.feed(chunk)]
    except ProtocolError as err:
        return got + [fields_of(r) for r in err.requests], (err.status, err.close)
    return got, parser.buffered


def h11_response(raw: bytes, *, method: bytes = b"GET") -> tuple[h11.Response, bytes, bool]:
    """Parse a response with h11 acting as the client: (head, body, complete)."""
    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method=method, target="/", headers=[("Host", "test")]))
    client.send(h11.EndOfMessage())
    client.receive_data(raw)
    head = client.next_event()
    assert isinstance(head, h11.Response), head
    body = b""
    while True:
        event = client.next_event()
        if isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            return head, body, True
        else:
            return head, body, False


def header_values(head: h11.Response, name: bytes) -> list[bytes]:
    return [v for n, v in head.headers if n == name.lower()]


# ---------------------------------------------------------------------------
# valid requests: each parsed whole, byte by byte, and at every two-part split

VALID = [
    pytest.param(
        b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n",
        dict(method="GET", target="/", path="/", query="", version="1.1",
             headers=[(b"Host", b"example.com")], body=b"", keep_alive=True),
        id="minimal GET on HTTP/1.1",
    ),
    pytest.param(
        b"GET /search?q=a+b&x=%20 HTTP/1.1\r\nHost: a\r\n\r\n",
        dict(target="/search?q=a+b&x=%20", path="/search", query="q=a+b&x=%20"),
        id="target splits into path and query at the first ?",
    ),
    pytest.param(
        b"GET /a?b?c HTTP/1.1\r\nHost: a\r\n\r\n",
        dict(path="/a", query="b?c"),
        id="query keeps later question marks",
    ),
    pytest.param(
        b"GET / HTTP/1.9\r\nHost: a\r\n\r\n",
        dict(version="1.1", keep_alive=True),
        id="a higher HTTP/1 minor version is answered as 1.1",
    ),
    pytest.param(
        b"GET / HTTP/1.0\r\n\r\n",
        dict(version="1.0", headers=[], keep_alive=False),
        id="HTTP/1.0 needs no Host",
    ),
    pytest.param(
        b"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
        dict(method="GET", target="/"),
        id="one empty line before the request line is ignored",
    ),
    pytest.param(
        b"PURGE /cache HTTP/1.1\r\nHost: a\r\n\r\n",
        dict(method="PURGE"),
        id="any token is a method",
    ),
    pytest.param(
        b"M-SEARCH!#$%&'*+.^_`|~ / HTTP/1.1\r\nHost: a\r\n\r\n",
        dict(method="M-SEARCH!#$%&'*+.^_`|~"),
        id="method may use every tchar",
    ),
    pytest.param(
        b"get / HTTP/1.1\r\nHost: a\r\n\r\n",
        dict(method="get"),
        id="method is case-sensitive and kept as sent",
    ),
    pytest.param(
        b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
        dict(method="OPTIONS", target="*"),
        id="asterisk-form target",
    ),
    pytest.param(
        b"GET http://example.com/x?y=1 HTTP/1.1\r\nHost: example.com\r\n\r\n",
        dict(target="http://example.com/x?y=1"),
        id="absolute-form target is accepted",
    ),
    pytest.param(
        b"GET / HTTP/1.1\r\nHost: a\r\nX-A: \t v a l \t\r\n\r\n",
        dict(headers=[(b"Host", b"a"), (b"X-A", b"v a l")]),
        id="OWS around a field value is stripped, inner spaces kept",
    ),
    pytest.param(
        b"GET / HTTP/1.1\r\nHost: a\r\nX-Tab: a\tb\r\n\r\n",
        dict(headers=[(b"Host", b"a"), (b"X-Tab", b"a\tb")]),
        id="HTAB inside a field value is kept",
    ),
    pytest.param(
        b"GET / HTTP/1.1\r\nHost: a\r\nX-Empty:\r\nX-Blank:   \r\n\r\n",
        dict(headers=[(b"Host", b"a"), (b"X-Empty", b""), (b"X-Blank", b"")]),
        id="empty field values are allowed",
    ),
    pytest.param(
        b"GET / HTTP/1.1\r\nhOsT: a\r\nx-MiXeD: 1\r\n\r\n",
        dict(headers=[(b"hOsT", b"a"), (b"x-MiXeD", b"1")]),
        id="field names keep their case and order",
    ),
    pytest.param(
        b"GET / HTTP/1.1\r\nHost: a\r\nAccept: a\r\nAccept: b\r\n\r\n",
        dict(headers=[(b"Host", b"a"), (b"Accept", b"a"), (b"Accept", b"b")]),
        id="repeated fields are kept as separate pairs",
    ),
    pytest.param(
        b"GET / HTTP/1.1\r\nHost: a\r\nX-Name: caf\xc3\xa9\r\n\r\n",
        dict(headers=[(b"Host", b"a"), (b"X-Name", b"caf\xc3\xa9")]),
        id="obs-text bytes in a field value are opaque data",
    ),
    pytest.param(
        b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
        dict(method="POST", body=b"hello"),
        id="Content-Length body",
    ),
    pytest.param(
        b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
        dict(body=b""),
        id="Content-Length zero",
    ),
    pytest.param(
        b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 007\r\n\r\nabcdefg",
        dict(body=b"abcdefg"),
        id="Content-Length with leading zeros is plain digits",
    ),
    pytest.param(
        b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\n\r\n\r\n",
        dict(body=b"\r\n\r\n"),
        id="body bytes are opaque, CRLFs included",
    ),
    pytest.param(
        b"POST /echo HTTP/1.1\r\nHost: a\r\n\r\n",
        dict(body=b""),
        id="request without Content-Length or Transfer-Encoding has no body",
    ),
    pytest.param(
        b"GET /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc",
        dict(method="GET", body=b"abc"),
        id="GET may carry a body",
    ),
    pytest.param(
        b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\n\r\n",
        dict(body=b"hello world"),
        id="chunked body",
    ),
    pytest.param(
        b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        dict(body=b""),
        id="chunked body with only the last chunk",
    ),
    pytest.param(
        b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;name=value\r\nhello\r\n3;a;b=\"q;x\"\r\nabc\r\n0;last\r\n\r\n",
        dict(body=b"helloabc"),
        id="chunk extensions are ignored",
    ),
    pytest.param(
        b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n0\r\nX-Checksum: abc\r\nX-Other: d\r\n\r\n",
        dict(body=b"hello"),
        id="chunked trailers are consumed",
    ),
    pytest.param(
        b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"000A\r\n0123456789\r\nb\r\nabcdefghijk\r\n0\r\n\r\n",
        dict(body=b"0123456789abcdefghijk"),
        id="chunk size is hex, either case, leading zeros allowed",
    ),
    pytest.param(
        b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n"
        b"2\r\nhi\r\n0\r\n\r\n",
        dict(body=b"hi"),
        id="transfer-coding names are case-insensitive",
    ),
    pytest.param(
        b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\n0\r\n\r\n\r\n0\r\n\r\n",
        dict(body=b"0\r\n\r\n"),
        id="chunk data that looks like a last chunk is data",
    ),
    # absolute-form is served by its path (RFC 9112 3.2.2: a server MUST accept it)
    pytest.param(
        b"GET http://localhost/ HTTP/1.1\r\nHost: localhost\r\n\r\n",
        dict(target="http://localhost/", path="/", query=""),
        id="absolute-form target",
    ),
    pytest.param(
        b"GET HTTP://example.com:8080/sleep?ms=1 HTTP/1.1\r\nHost: other\r\n\r\n",
        dict(path="/sleep", query="ms=1"),
        id="absolute-form target with a port and query, any Host, scheme in any case",
    ),
    pytest.param(
        b"GET https://localhost HTTP/1.1\r\nHost: localhost\r\n\r\n",
        dict(path="/", query=""),
        id="absolute-form target with an empty path is /",
    ),
    pytest.param(
        b"GET http://a?x=1 HTTP/1.1\r\nHost: a\r\n\r\n",
        dict(path="/", query="x=1"),
        id="absolute-form target with a query and no path",
    ),
    # Host values within the grammar
    pytest.param(b"GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n", dict(), id="Host IPv6 literal with a port"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: 127.0.0.1:80\r\n\r\n", dict(), id="Host IPv4 with a port"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: xn--bcher-kva.example~_!$&'()*+,;=%41\r\n\r\n", dict(),
                 id="Host with every reg-name character class"),
    pytest.param(b"GET / HTTP/1.1\r\nHost:\r\n\r\n", dict(), id="Host empty (a target with no authority)"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: a:\r\n\r\n", dict(), id="Host with an empty port"),
]


@pytest.mark.parametrize(("raw", "expected"), VALID)
def test_valid_request_fields(raw: bytes, expected: dict) -> None:
    [req] = feed_all(raw)
    got = fields_of(req)
    assert {k: got[k] for k in expected} == expected


@pytest.mark.parametrize(("raw", "expected"), VALID)
def test_valid_request_fed_byte_by_byte_is_identical(raw: bytes, expected: dict) -> None:
    whole = [fields_of(r) for r in feed_all(raw)]
    assert [fields_of(r) for r in feed_bytewise(raw)] == whole


@pytest.mark.parametrize(("raw", "expected"), VALID)
def test_valid_request_split_anywhere_in_two_is_identical(raw: bytes, expected: dict) -> None:
    whole = [fields_of(r) for r in feed_all(raw)]
    for cut in range(len(raw) + 1):
        got = [fields_of(r) for r in feed_chunks([raw[:cut], raw[cut:]])]
        assert got == whole, f"split at {cut}"


@pytest.mark.parametrize(("raw", "expected"), VALID)
def test_valid_request_consumes_exactly_its_bytes(raw: bytes, expected: dict) -> None:
    """A request followed by another parses as two, and nothing is left buffered."""
    parser = RequestParser()
    first, second = parser.feed(raw + SIMPLE_GET)
    assert fields_of(first) == fields_of(feed_all(raw)[0])
    assert second.target == "/next"
    assert parser.buffered == 0


# ---------------------------------------------------------------------------
# Headers and Request contract


def parsed_headers():
    [req] = feed_all(b"GET / HTTP/1.1\r\nHost: a\r\nAccept: x\r\naccept: y\r\nX-One: 1\r\n\r\n")
    return req.headers


def test_headers_get_is_case_insensitive_for_str_and_bytes() -> None:
    headers = parsed_headers()
    assert headers.get("x-one") == headers.get(b"X-ONE") == b"1"


def test_headers_get_joins_repeats_with_comma_space() -> None:
    assert parsed_headers().get("Accept") == b"x, y"


def test_headers_get_missing_returns_default() -> None:
    headers = parsed_headers()
    assert headers.get("missing") is None
    assert headers.get("missing", b"d") == b"d"


def test_headers_contains_is_case_insensitive() -> None:
    headers = parsed_headers()
    assert "HOST" in headers and b"x-one" in headers and "nope" not in headers


def test_headers_len_counts_every_field() -> None:
    assert len(parsed_headers()) == 4


def test_request_is_a_slots_dataclass() -> None:
    assert {f.name for f in dataclass_fields(Request)} >= {
        "method", "target", "path", "query", "version", "headers", "body", "keep_alive"}
    assert hasattr(Request, "__slots__")


# ---------------------------------------------------------------------------
# rejections: (raw, status, close) where close None means "not specified"

H = b"Host: a\r\n"


def _get(line: bytes = b"GET / HTTP/1.1", head: bytes = H) -> bytes:
    return line + b"\r\n" + head + b"\r\n"


def _post(head: bytes, body: bytes = b"") -> bytes:
    return b"POST /echo HTTP/1.1\r\nHost: a\r\n" + head + b"\r\n" + body


def _chunked(chunks: bytes) -> bytes:
    return _post(b"Transfer-Encoding: chunked\r\n", chunks)


REJECT = [
    # request line
    pytest.param(_get(b"GET /"), 400, None, id="request line without version"),
    pytest.param(_get(b"GET"), 400, None, id="request line with only a method"),
    pytest.param(_get(b"GET / HTTP/1.1 extra"), 400, None, id="request line with a fourth word"),
    pytest.param(_get(b"GET /a b HTTP/1.1"), 400, None, id="space inside the target"),
    pytest.param(_get(b"GET  / HTTP/1.1"), 400, None, id="two spaces after the method"),
    pytest.param(_get(b"GET /a\x00b HTTP/1.1"), 400, None, id="NUL in the target"),
    pytest.param(_get(b"GET /a\x7fb HTTP/1.1"), 400, None, id="DEL in the target"),
    # method
    pytest.param(_get(b"G(T / HTTP/1.1"), 400, None, id="method with a delimiter"),
    pytest.param(_get(b"G:T / HTTP/1.1"), 400, None, id="method with a colon"),
    pytest.param(_get(b"G\xc3\x89T / HTTP/1.1"), 400, None, id="method with non-ASCII bytes"),
    pytest.param(_get(b"GE\x01T / HTTP/1.1"), 400, None, id="method with a control character"),
    # version syntax
    pytest.param(_get(b"GET / HTTP/1"), 400, None, id="version without minor"),
    pytest.param(_get(b"GET / HTTP/1.1.1"), 400, None, id="version with three numbers"),
    pytest.param(_get(b"GET / HTTP/11"), 400, None, id="version without a dot"),
    pytest.param(_get(b"GET / http/1.1"), 400, None, id="version name is case-sensitive"),
    pytest.param(_get(b"GET / HTTPS/1.1"), 400, None, id="version name other than HTTP"),
    pytest.param(_get(b"GET / HTTP/1.x"), 400, None, id="version with a letter"),
    pytest.param(_get(b"GET / HTTP/1.1 "), 400, None, id="trailing space after the version"),
    pytest.param(_get(b"GET / HTTP/\xd9\xa1.1"), 400, None, id="version with a non-ASCII digit"),
    # unsupported major versions
    pytest.param(_get(b"GET / HTTP/2.0"), 505, None, id="HTTP/2.0 is not supported"),
    pytest.param(_get(b"GET / HTTP/3.0"), 505, None, id="HTTP/3.0 is not supported"),
    pytest.param(_get(b"GET / HTTP/0.9"), 505, None, id="HTTP/0.9 is not supported"),
    pytest.param(_get(b"GET / HTTP/9.9"), 505, None, id="HTTP/9.9 is not supported"),
    # Host
    pytest.param(_get(head=b""), 400, None, id="HTTP/1.1 without Host"),
    pytest.param(_get(head=b"Host: a\r\nHost: a\r\n"), 400, None, id="two identical Host fields"),
    pytest.param(_get(head=b"Host: a\r\nhost: b\r\n"), 400, None, id="two Host fields differing in case"),
    # RFC 9112 3.2: a Host outside the RFC 3986 grammar, or repeated, on any request.
    pytest.param(_get(head=b"Host: bad host\r\n"), 400, None, id="Host with a space"),
    pytest.param(_get(head=b"Host: a\tb\r\n"), 400, None, id="Host with a tab"),
    pytest.param(_get(head=b"Host: a/b\r\n"), 400, None, id="Host with a slash"),
    pytest.param(_get(head=b"Host: user@a\r\n"), 400, None, id="Host with userinfo"),
    pytest.param(_get(head=b"Host: a:80x\r\n"), 400, None, id="Host with a port that is not digits"),
    pytest.param(_get(head=b"Host: [::1\r\n"), 400, None, id="Host with an unclosed IP literal"),
    pytest.param(_get(head=b"Host: a\"b\r\n"), 400, None, id="Host with a quote"),
    pytest.param(_get(head=b"Host: %zz\r\n"), 400, None, id="Host with a bad percent-encoding"),
    pytest.param(_get(b"GET / HTTP/1.0", b"Host: a\r\nHost: b\r\n"), 400, True, id="two Host fields on HTTP/1.0"),
    pytest.param(_get(b"GET / HTTP/1.0", b"Host: bad host\r\n"), 400, True, id="invalid Host on HTTP/1.0"),
    # absolute-form: its authority stands in for Host, so it must be one
    pytest.param(_get(b"GET http://a b/ HTTP/1.1"), 400, None, id="absolute-form with a space"),
    pytest.param(_get(b"GET http://user@a/ HTTP/1.1"), 400, False, id="absolute-form with userinfo"),
    pytest.param(_get(b"GET http:///x HTTP/1.1"), 400, False, id="absolute-form with an empty host"),
    pytest.param(_get(b"GET http://:80/x HTTP/1.1"), 400, False, id="absolute-form with only a port"),
    # bare CR: a line ends only at CRLF
    pytest.param(_get(b"GET /\r HTTP/1.1"), 400, None, id="bare CR in the request line"),
    pytest.param(_get(b"GET / HTTP/1.1\r"), 400, None, id="bare CR ending the request line"),
    pytest.param(_get(b"GET\r/ HTTP/1.1"), 400, None, id="bare CR for a space in the request line"),
    pytest.param(_chunked(b"5\r;a\r\nhello\r\n0\r\n\r\n"), 400, True, id="bare CR in a chunk-size line"),
    pytest.param(_chunked(b"5\rhello\r\n0\r\n\r\n"), 400, True, id="bare CR ending a chunk-size line"),
    pytest.param(_chunked(b"5;a=\rb\r\nhello\r\n0\r\n\r\n"), 400, True, id="bare CR in a chunk extension"),
    # field syntax
    pytest.param(_get(head=b"Host : a\r\n"), 400, None, id="space between field name and colon"),
    pytest.param(_get(head=H + b"X-A\t: b\r\n"), 400, None, id="tab between field name and colon"),
    pytest.param(_get(head=H + b"X-A: b\r\n c\r\n"), 400, None, id="obs-fold with a space"),
    pytest.param(_get(head=H + b"X-A: b\r\n\tc\r\n"), 400, None, id="obs-fold with a tab"),
    pytest.param(_get(head=b" X-A: b\r\n" + H), 400, None, id="whitespace before the first field"),
    pytest.param(_get(head=H + b"X-A: a\rb\r\n"), 400, None, id="bare CR in a field value"),
    pytest.param(_get(head=H + b"X-A: a\x00b\r\n"), 400, None, id="NUL in a field value"),
    pytest.param(_get(head=H + b"X-A: a\x01b\r\n"), 400, None, id="SOH in a field value"),
    pytest.param(_get(head=H + b"X-A: a\x1bb\r\n"), 400, None, id="ESC in a field value"),
    pytest.param(_get(head=H + b"X-A: a\x7fb\r\n"), 400, None, id="DEL in a field value"),
    pytest.param(_get(head=H + b"X-A: a\nb\r\n"), 400, None, id="bare LF inside a field value"),
    pytest.param(_get(head=H + b"X\x00A: b\r\n"), 400, None, id="NUL in a field name"),
    pytest.param(_get(head=H + b"X A: b\r\n"), 400, None, id="space inside a field name"),
    pytest.param(_get(head=H + b"X(A): b\r\n"), 400, None, id="field name not a token"),
    pytest.param(_get(head=H + b": b\r\n"), 400, None, id="empty field name"),
    pytest.param(_get(head=H + b"NoColon\r\n"), 400, None, id="field line without a colon"),
    # Content-Length and Transfer-Encoding together
    pytest.param(_post(b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n"),
                 400, True, id="Content-Length then Transfer-Encoding"),
    pytest.param(_post(b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n", b"0\r\n\r\n"),
                 400, True, id="Transfer-Encoding then Content-Length"),
    # Content-Length
    pytest.param(_post(b"Content-Length: 5\r\nContent-Length: 5\r\n", b"hello"),
                 400, True, id="Content-Length repeated"),
    pytest.param(_post(b"Content-Length: 5\r\nContent-Length: 6\r\n", b"hello!"),
                 400, True, id="Content-Length differing"),
    pytest.param(_post(b"Content-Length: 5, 5\r\n", b"hello"),
                 400, True, id="Content-Length as a list"),
    pytest.param(_post(b"Content-Length: 1 0\r\n", b"0123456789"),
                 400, True, id="Content-Length with inner space"),
    pytest.param(_post(b"Content-Length: +5\r\n", b"hello"),
                 400, True, id="Content-Length with a plus sign"),
    pytest.param(_post(b"Content-Length: -1\r\n"), 400, True, id="Content-Length negative"),
    pytest.param(_post(b"Content-Length: 1_0\r\n", b"0123456789"),
                 400, True, id="Content-Length with an underscore"),
    pytest.param(_post(b"Content-Length: 0x5\r\n", b"hello"), 400, True, id="Content-Length in hex"),
    pytest.param(_post(b"Content-Length: 5.0\r\n", b"hello"), 400, True, id="Content-Length decimal"),
    pytest.param(_post(b"Content-Length: \xd9\xa3\r\n", b"abc"),
                 400, True, id="Content-Length with a non-ASCII digit"),
    pytest.param(_post(b"Content-Length:\r\n"), 400, True, id="Content-Length empty"),
    pytest.param(_post(b"Content-Length: five\r\n", b"hello"), 400, True, id="Content-Length in words"),
    # Transfer-Encoding
    # RFC 9112 6.3 rule 4: chunked not final leaves no reliable length: 400, then close.
    pytest.param(_post(b"Transfer-Encoding: gzip\r\n"), 400, True, id="Transfer-Encoding gzip"),
    pytest.param(_post(b"Transfer-Encoding: chunked, gzip\r\n"), 400, True,
                 id="Transfer-Encoding with chunked not final"),
    pytest.param(_post(b"Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n"), 400, True,
                 id="Transfer-Encoding with chunked not final across two fields"),
    pytest.param(_post(b"Transfer-Encoding: identity\r\n"), 400, True,
                 id="Transfer-Encoding identity"),
    pytest.param(_post(b"Transfer-Encoding: chunked, chunked\r\n"), 400, True,
                 id="Transfer-Encoding chunked twice"),
    # chunked final, but after a coding we cannot undo: a length we know, a coding we lack.
    pytest.param(_post(b"Transfer-Encoding: gzip, chunked\r\n", b"0\r\n\r\n"), 501, True,
                 id="Transfer-Encoding gzip then chunked"),
    pytest.param(b"POST /echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, None,
                 id="Transfer-Encoding on HTTP/1.0"),
    # chunk-size lines
    pytest.param(_chunked(b"zz\r\nhello\r\n0\r\n\r\n"), 400, True, id="chunk size not hex"),
    pytest.param(_chunked(b"-1\r\nhello\r\n0\r\n\r\n"), 400, True, id="chunk size negative"),
    pytest.param(_chunked(b"+1\r\nh\r\n0\r\n\r\n"), 400, True, id="chunk size with a plus sign"),
    pytest.param(_chunked(b"\r\nhello\r\n0\r\n\r\n"), 400, True, id="chunk size empty"),
    pytest.param(_chunked(b"0x10\r\n0123456789abcdef\r\n0\r\n\r\n"), 400, True,
                 id="chunk size with 0x prefix"),
    pytest.param(_chunked(b"1_0\r\n0123456789abcdef\r\n0\r\n\r\n"), 400, True,
                 id="chunk size with an underscore"),
    pytest.param(_chunked(b" 5\r\nhello\r\n0\r\n\r\n"), 400, True, id="chunk size with leading space"),
    pytest.param(_chunked(b"5\r\nhelloXX0\r\n\r\n"), 400, True, id="chunk data not followed by CRLF"),
    # trailer fields are fields: the same syntax rules apply before they are discarded
    pytest.param(_chunked(b"0\r\nX-T: a\x00b\r\n\r\n"), 400, True, id="NUL in a trailer field"),
    pytest.param(_chunked(b"0\r\nX-T: a\rb\r\n\r\n"), 400, True, id="bare CR in a trailer field"),
    pytest.param(_chunked(b"0\r\nX-T: a\nb\r\n\r\n"), 400, True, id="bare LF in a trailer field"),
]


@pytest.mark.parametrize(("raw", "status", "close"), REJECT)
def test_rejection_status(raw: bytes, status: int, close: bool | None) -> None:
    assert rejection(raw).status == status


@pytest.mark.parametrize(
    ("raw", "status", "close"), [p for p in REJECT if p.values[2] is not None])
def test_rejection_closes_when_framing_is_in_doubt(raw: bytes, status: int, close: bool) -> None:
    assert rejection(raw).close is close


@pytest.mark.parametrize(("raw", "status", "close"), REJECT)
def test_rejection_is_the_same_fed_byte_by_byte(raw: bytes, status: int, close: bool | None) -> None:
    whole = rejection(raw)
    bytewise = rejection_bytewise(raw)
    assert (bytewise.status, bytewise.close) == (whole.status, whole.close)


@pytest.mark.parametrize(("raw", "status", "close"), REJECT)
def test_error_response_is_self_delimiting_with_a_short_text_body(
        raw: bytes, status: int, close: bool | None) -> None:
    err = rejection(raw)
    head, body, complete = h11_response(error_response(err))
    assert complete
    assert head.status_code == err.status
    assert header_values(head, b"content-length") == [str(len(body)).encode()]
    assert 0 < len(body) <= 512
    body.decode("utf-8")
    assert header_values(head, b"content-type")[0].startswith(b"text/")


@pytest.mark.parametrize(
    ("raw", "status", "close"), [p for p in REJECT if p.values[2] is True])
def test_error_response_says_connection_close_when_err_close(
        raw: bytes, status: int, close: bool) -> None:
    err = rejection(raw)
    head, _, _ = h11_response(error_response(err))
    tokens = [t.strip().lower() for v in header_values(head, b"connection") for t in v.split(b",")]
    assert err.close and b"close" in tokens


def test_error_carries_a_short_reason() -> None:
    err = rejection(_get(b"GET / HTTP/2.0"))
    assert isinstance(err.reason, str) and 0 < len(err.reason) <= 200


# ---------------------------------------------------------------------------
# limits


def _line_of(length: int) -> bytes:
    """A request line of exactly length bytes, CRLF not counted."""
    fixed = len(b"GET / HTTP/1.1")
    return b"GET /" + b"a" * (length - fixed) + b" HTTP/1.1"


def _fields(n: int) -> bytes:
    """n field lines in total, Host included."""
    return H + b"".join(b"X-F%d: v\r\n" % i for i in range(n - 1))


SMALL = Limits(max_request_line=64, max_header_bytes=256, max_header_fields=5, max_body=10)

OVER_LIMIT = [
    pytest.param(_get(_line_of(9000)), None, 414, id="request line over 8 KiB"),
    pytest.param(_line_of(9000), None, 414, id="request line over 8 KiB before its CRLF arrives"),
    pytest.param(_get(_line_of(8193)), None, 414, id="request line one byte over 8 KiB"),
    pytest.param(_line_of(9000) + b"\r\n" + H, None, 414,
                 id="request line over 8 KiB with its CRLF before the head ends"),
    pytest.param(_get(head=H + b"X-Big: " + b"v" * 70_000 + b"\r\n"), None, 431,
                 id="header section over 64 KiB"),
    pytest.param(b"GET / HTTP/1.1\r\n" + H + b"X-Big: " + b"v" * 70_000, None, 431,
                 id="header section over 64 KiB before its end arrives"),
    pytest.param(_get(head=b"".join(b"X-F%d: %s\r\n" % (i, b"v" * 1000) for i in range(70)) + H),
                 None, 431, id="header section over 64 KiB in many fields"),
    pytest.param(_get(head=_fields(101)), None, 431, id="more than 100 fields"),
    pytest.param(_post(b"Content-Length: 1048577\r\n"), None, 413,
                 id="Content-Length over 1 MiB rejected before the body arrives"),
    pytest.param(_post(b"Content-Length: 99999999999999999999999999999999\r\n"), None, 413,
                 id="Content-Length with many digits"),
    pytest.param(_chunked(b"100000\r\n" + b"x" * 0x100000 + b"\r\n1\r\nx\r\n"), None, 413,
                 id="chunked body over 1 MiB across chunks"),
    pytest.param(_chunked(b"100001\r\n" + b"x" * 0x100001), None, 413,
                 id="chunked body over 1 MiB in one chunk"),
    pytest.param(_get(_line_of(65)), SMALL, 414, id="custom request line limit"),
    pytest.param(_line_of(70), SMALL, 414, id="custom request line limit before its CRLF"),
    pytest.param(_get(head=H + b"X-Big: " + b"v" * 300 + b"\r\n"), SMALL, 431,
                 id="custom header section limit"),
    pytest.param(b"GET / HTTP/1.1\r\n" + H + b"X-Big: " + b"v" * 300, SMALL, 431,
                 id="custom header section limit before its end"),
    pytest.param(_get(head=_fields(6)), SMALL, 431, id="custom field count limit"),
    pytest.param(_post(b"Content-Length: 11\r\n"), SMALL, 413, id="custom body limit from Content-Length"),
    pytest.param(_chunked(b"6\r\nabcdef\r\n5\r\nghijk\r\n"), SMALL, 413,
                 id="custom body limit counted across chunks before the last chunk"),
    pytest.param(_chunked(b"b\r\n" + b"x" * 11), SMALL, 413,
                 id="custom body limit counted as chunk data arrives"),
]

WITHIN_LIMIT = [
    pytest.param(_get(_line_of(8190)), None, id="request line just under 8 KiB"),
    pytest.param(_get(head=H + b"X-Big: " + b"v" * 60_000 + b"\r\n"), None,
                 id="header section just under 64 KiB"),
    pytest.param(_get(head=_fields(100)), None, id="exactly 100 fields"),
    pytest.param(_post(b"Content-Length: 1048576\r\n", b"x" * 1048576), None,
                 id="Content-Length body of exactly 1 MiB"),
    pytest.param(_chunked(b"80000\r\n" + b"x" * 0x80000 + b"\r\n80000\r\n" + b"y" * 0x80000
                          + b"\r\n0\r\n\r\n"), None, id="chunked body of exactly 1 MiB"),
    pytest.param(_get(_line_of(62)), SMALL, id="custom request line just under its limit"),
    pytest.param(_get(head=_fields(5)), SMALL, id="custom field count exactly at its limit"),
    pytest.param(_post(b"Content-Length: 10\r\n", b"0123456789"), SMALL,
                 id="custom body exactly at its limit"),
    pytest.param(_chunked(b"5\r\n01234\r\n5\r\n56789\r\n0\r\n\r\n"), SMALL,
                 id="custom chunked body exactly at its limit"),
]


@pytest.mark.parametrize(("raw", "limits", "status"), OVER_LIMIT)
def test_over_limit_is_rejected_at_once(raw: bytes, limits: Limits | None, status: int) -> None:
    assert rejection(raw, limits).status == status


@pytest.mark.parametrize(("raw", "limits"), WITHIN_LIMIT)
def test_within_limit_is_accepted(raw: bytes, limits: Limits | None) -> None:
    assert len(feed_all(raw, limits)) == 1


def test_limits_defaults_match_the_contract() -> None:
    assert Limits() == Limits(max_request_line=8192, max_header_bytes=65536,
                              max_header_fields=100, max_body=1048576)


def test_limits_are_frozen() -> None:
    with pytest.raises(Exception):
        Limits().max_body = 1  # type: ignore[misc]


def test_request_line_trickled_byte_by_byte_is_cut_off_at_the_limit() -> None:
    """A client trickling a line with no CRLF is stopped once the limit is passed."""
    parser = RequestParser(SMALL)
    with pytest.raises(ProtocolError) as info:
        for _ in range(200):
            parser.feed(b"a")
    assert info.value.status == 414


# ---------------------------------------------------------------------------
# keep-alive: HTTP/1.0 closes unless keep-alive, HTTP/1.1 stays open unless close

KEEP_ALIVE = [
    pytest.param("1.0", [], False, id="1.0 without Connection closes"),
    pytest.param("1.0", ["keep-alive"], True, id="1.0 with keep-alive stays open"),
    pytest.param("1.0", ["Keep-Alive"], True, id="1.0 keep-alive token is case-insensitive"),
    pytest.param("1.0", ["foo, keep-alive"], True, id="1.0 keep-alive anywhere in the list"),
    pytest.param("1.0", ["foo", "keep-alive"], True, id="1.0 keep-alive in a second Connection field"),
    pytest.param("1.0", ["close"], False, id="1.0 with close closes"),
    pytest.param("1.0", ["keep-alive, close"], False, id="1.0 close wins over keep-alive"),
    pytest.param("1.0", ["keep-alives"], False, id="1.0 token must match whole"),
    pytest.param("1.1", [], True, id="1.1 without Connection stays open"),
    pytest.param("1.1", ["keep-alive"], True, id="1.1 with keep-alive stays open"),
    pytest.param("1.1", ["close"], False, id="1.1 with close closes"),
    pytest.param("1.1", ["CLOSE"], False, id="1.1 close token is case-insensitive"),
    pytest.param("1.1", ["Upgrade, close"], False, id="1.1 close anywhere in the list"),
    pytest.param("1.1", ["foo,close"], False, id="1.1 list without spaces"),
    pytest.param("1.1", ["foo ,  close  "], False, id="1.1 list with OWS around commas"),
    pytest.param("1.1", ["foo", "close"], False, id="1.1 close in a second Connection field"),
    pytest.param("1.1", ["closed"], True, id="1.1 token must match whole"),
    pytest.param("1.1", ["x-close"], True, id="1.1 token containing close is not close"),
]


@pytest.mark.parametrize(("version", "connection", "keep_alive"), KEEP_ALIVE)
def test_keep_alive(version: str, connection: list[str], keep_alive: bool) -> None:
    head = b"".join(b"Connection: " + v.encode() + b"\r\n" for v in connection)
    raw = f"GET / HTTP/{version}\r\n".encode() + H + head + b"\r\n"
    [req] = feed_all(raw)
    assert req.keep_alive is keep_alive


# ---------------------------------------------------------------------------
# pipelining and incremental feeding

POST_CL = b"POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"
POST_CHUNKED = b"POST /b HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nde\r\n0\r\n\r\n"


def test_pipelined_requests_come_back_in_order() -> None:
    reqs = feed_all(SIMPLE_GET + POST_CL + POST_CHUNKED + SIMPLE_GET)
    assert [(r.method, r.target, r.body) for r in reqs] == [
        ("GET", "/next", b""), ("POST", "/a", b"abc"), ("POST", "/b", b"de"), ("GET", "/next", b"")]


def test_partial_next_request_is_kept_for_the_next_feed() -> None:
    parser = RequestParser()
    [first] = parser.feed(POST_CL + SIMPLE_GET[:7])
    assert first.body == b"abc"
    assert parser.buffered == 7
    [second] = parser.feed(SIMPLE_GET[7:])
    assert second.target == "/next"
    assert parser.buffered == 0


def test_incomplete_head_returns_nothing_and_is_buffered() -> None:
    parser = RequestParser()
    assert parser.feed(SIMPLE_GET[:-2]) == []
    assert parser.buffered == len(SIMPLE_GET) - 2


def test_empty_feed_returns_nothing() -> None:
    parser = RequestParser()
    assert parser.feed(b"") == []
    assert parser.buffered == 0


def test_body_that_looks_like_a_request_is_not_split() -> None:
    raw = _post(b"Content-Length: %d\r\n" % len(SIMPLE_GET), SIMPLE_GET)
    [req] = feed_all(raw)
    assert req.body == SIMPLE_GET


def test_empty_line_between_pipelined_requests_is_ignored() -> None:
    """RFC 9112 2.2: some clients send an extra CRLF after a POST body."""
    reqs = feed_bytewise(POST_CL + b"\r\n" + SIMPLE_GET)
    assert [r.target for r in reqs] == ["/a", "/next"]


def test_two_empty_lines_get_the_same_answer_however_split() -> None:
    """Whether two empty lines are accepted is a choice; it must not depend on recv sizes."""
    raw = b"\r\n\r\n" + SIMPLE_GET
    assert outcome([b"\r\n", b"\r\n", SIMPLE_GET]) == outcome([raw])


def test_error_carries_requests_completed_in_the_same_feed() -> None:
    with pytest.raises(ProtocolError) as info:
        feed_all(SIMPLE_GET + POST_CL + _get(b"GET / HTTP/2.0"))
    assert info.value.status == 505
    assert [r.target for r in info.value.requests] == ["/next", "/a"]


def test_error_does_not_repeat_requests_returned_by_an_earlier_feed() -> None:
    parser = RequestParser()
    assert len(parser.feed(SIMPLE_GET)) == 1
    with pytest.raises(ProtocolError) as info:
        parser.feed(_get(b"GET / HTTP/2.0"))
    assert info.value.requests == []


@pytest.mark.parametrize(("raw", "status", "close"), REJECT)
def test_parser_after_an_error_fails_again_only_if_framing_was_lost(raw: bytes, status: int, close: bool | None) -> None:
    parser = RequestParser()
    with pytest.raises(ProtocolError) as info:
        parser.feed(raw)
    if info.value.close:
        with pytest.raises(ProtocolError):
            parser.feed(SIMPLE_GET)
    else:  # framing is certain (no body): the connection and the parser go on
        assert [r.method for r in parser.feed(SIMPLE_GET)] == ["GET"]


# ---------------------------------------------------------------------------
# generated requests: any split, and a differential against h11

TCHAR = "!#$%&'*+-.^_`|~" + string.ascii_letters + string.digits
PCHAR = string.ascii_letters + string.digits + "-._~!$&'()*+,;=:@"
FRAMING = {b"host", b"content-length", b"transfer-encoding", b"connection", b"upgrade",
           b"expect", b"te", b"trailer"}

tokens = st.text(TCHAR, min_size=1, max_size=12)
# uri-host [":" port] (RFC 3986 3.2.2): reg-name characters, not every token character.
REG_NAME = string.ascii_letters + string.digits + "-._~!$&'()*+,;="
hosts = st.builds(lambda name, port: name + port, st.text(REG_NAME, min_size=1, max_size=12),
                  st.sampled_from(["", ":80", ":8080", ":"]))
methods = tokens.filter(lambda m: m not in ("CONNECT",))
segments = st.lists(
    st.one_of(st.text(PCHAR, max_size=8), st.from_regex(r"\A%[0-9A-F]{2}\Z")), max_size=3
).map("".join)
targets = st.builds(
    lambda segs, query: "/" + "/".join(segs) + (f"?{query}" if query is not None else ""),
    st.lists(segments, max_size=4),
    st.none() | st.text(PCHAR + "/?", max_size=16),
)
field_names = st.text(TCHAR, min_size=1, max_size=16).map(str.encode).filter(
    lambda n: n.lower() not in FRAMING)
vchars = st.sampled_from([bytes([b]) for b in range(0x21, 0x7F)])
words = st.lists(vchars, min_size=1, max_size=8).map(b"".join)
field_values = st.lists(
    st.tuples(words, st.sampled_from([b" ", b"\t", b"  "])), max_size=4
).map(lambda parts: b"".join(w + s for w, s in parts).rstrip(b" \t"))
ows = st.sampled_from([b"", b" ", b"\t", b"  "])


@st.composite
def chunked_body(draw, body: bytes) -> bytes:
    out = []
    rest = body
    while rest:
        n = draw(st.integers(1, len(rest)))
        size = draw(st.sampled_from([f"{n:x}", f"{n:X}", f"{n:04x}"])).encode()
        ext = draw(st.sampled_from([b"", b";a", b";a=b", b';n="v"']))
        out.append(size + ext + b"\r\n" + rest[:n] + b"\r\n")
        rest = rest[n:]
    trailers = draw(st.lists(st.tuples(field_names, field_values), max_size=2))
    out.append(b"0\r\n" + b"".join(n + b": " + v + b"\r\n" for n, v in trailers) + b"\r\n")
    return b"".join(out)


@st.composite
def valid_requests(draw) -> tuple[bytes, dict]:
    """A valid request and the fields it must parse to."""
    method = draw(methods)
    target = draw(targets)
    version = draw(st.sampled_from(["1.1", "1.1", "1.0"]))
    headers = [(b"Host", draw(hosts).encode())] if version == "1.1" else []
    extra = draw(st.lists(st.tuples(field_names, field_values), max_size=6))
    headers[draw(st.integers(0, len(headers))):0] = extra
    body = draw(st.binary(max_size=64))
    framing = draw(st.sampled_from(["none", "length", "chunked"] if version == "1.1"
                                   else ["none", "length"]))
    if framing == "none":
        body = b""
    wire_body = body
    if framing == "length":
        headers.append((b"Content-Length", str(len(body)).encode()))
    elif framing == "chunked":
        headers.append((b"Transfer-Encoding", b"chunked"))
        wire_body = draw(chunked_body(body))
    head = f"{method} {target} HTTP/{version}\r\n".encode()
    for name, value in headers:
        head += name + b":" + draw(ows) + value + draw(ows) + b"\r\n"
    raw = head + b"\r\n" + wire_body
    return raw, {"method": method, "target": target, "version": version,
                 "headers": headers, "body": body}


@st.composite
def split_streams(draw) -> tuple[list[bytes], list[dict]]:
    """Pipelined valid requests, some after one empty line, cut at random places."""
    reqs = draw(st.lists(valid_requests(), min_size=1, max_size=4))
    stream = b"".join(draw(st.sampled_from([b"", b"", b"\r\n"])) + raw for raw, _ in reqs)
    cuts = sorted(draw(st.lists(st.integers(0, len(stream)), max_size=12)))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)])]
    return chunks, [expected for _, expected in reqs]


@settings(deadline=None, max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(split_streams())
def test_any_split_of_a_pipelined_stream_yields_the_same_requests(case) -> None:
    chunks, expected = case
    whole = [fields_of(r) for r in feed_all(b"".join(chunks))]
    assert [fields_of(r) for r in feed_chunks(chunks)] == whole
    assert [(r["method"], r["target"], r["body"]) for r in whole] == [
        (e["method"], e["target"], e["body"]) for e in expected]


NOISE = [b"\r", b"\n", b"\r\n", b" ", b"\t", b"\x00", b":", b",", b";", b"0", b"a", b"/"]


@st.composite
def damaged_streams(draw) -> tuple[bytes, list[bytes]]:
    """Pipelined valid requests with a few bytes inserted, deleted or replaced, then cut."""
    data = bytearray(b"".join(raw for raw, _ in draw(st.lists(valid_requests(), min_size=1,
                                                                max_size=3))))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        noise = draw(st.sampled_from(NOISE))
        edit = draw(st.sampled_from(["insert", "delete", "replace"]))
        if edit == "insert":
            data[at:at] = noise
        elif edit == "delete":
            del data[at : at + len(noise)]
        else:
            data[at : at + 1] = noise
    raw = bytes(data)
    cuts = sorted(draw(st.lists(st.integers(0, len(raw)), max_size=8)))
    return raw, [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)])]


@settings(deadline=None, max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(damaged_streams())
def test_any_split_of_any_stream_gives_the_same_outcome(case) -> None:
    """Valid or not, what the parser answers never depends on how recv() cut the bytes."""
    raw, chunks = case
    whole = outcome([raw])
    assert outcome(chunks) == whole
    assert outcome([raw[i : i + 1] for i in range(len(raw))]) == whole


def h11_parse(raw: bytes) -> tuple[h11.Request, bytes]:
    server = h11.Connection(h11.SERVER)
    server.receive_data(raw)
    head = server.next_event()
    assert isinstance(head, h11.Request), head
    body = b""
    while True:
        event = server.next_event()
        if isinstance(event, h11.Data):
            body += event.data
        else:
            assert isinstance(event, h11.EndOfMessage), event
            return head, body


@settings(deadline=None, max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(valid_requests())
def test_parser_agrees_with_h11(case) -> None:
    raw, expected = case
    [ours] = feed_all(raw)
    theirs, theirs_body = h11_parse(raw)
    assert ours.method.encode() == theirs.method
    assert ours.target.encode() == theirs.target
    assert ours.version == theirs.http_version.decode()
    assert [(n.lower(), v) for n, v in ours.headers] == [
        (n.lower(), v) for n, v in theirs.headers.raw_items()]
    assert ours.body == theirs_body == expected["body"]


@settings(deadline=None, max_examples=200)
@given(valid_requests())
def test_generated_request_fields_are_as_sent(case) -> None:
    raw, expected = case
    [ours] = feed_all(raw)
    assert (ours.method, ours.target, ours.version, list(ours.headers), ours.body) == (
        expected["method"], expected["target"], expected["version"], expected["headers"],
        expected["body"])
    path, _, query = expected["target"].partition("?")
    assert ours.query == query
    if "%" not in path:  # whether path is percent-decoded is not in the contract
        assert ours.path == path


# ---------------------------------------------------------------------------
# build_response, cross-checked with h11 as the client

IMF_FIXDATE = re.compile(
    rb"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) "
    rb"\d{4} \d\d:\d\d:\d\d GMT")

RESPONSES = [
    pytest.param(Response(200, b"Hello, World!"), id="plain text"),
    pytest.param(Response(200), id="empty body"),
    pytest.param(Response(404, b"not found\n"), id="404"),
    pytest.param(Response(200, bytes(range(256)) * 4, content_type="application/octet-stream"),
                 id="binary body"),
    pytest.param(Response(201, b"{}", content_type="application/json",
                          headers=(("Location", "/x"), ("X-Trace", "abc"))), id="extra headers"),
    pytest.param(Response(405, b"no", headers=(("Allow", "GET, HEAD"),)), id="405 with Allow"),
    pytest.param(Response(500, b"x" * 100_000), id="large body"),
]


@pytest.mark.parametrize("keep_alive", [True, False], ids=["keep-alive", "close"])
@pytest.mark.parametrize("response", RESPONSES)
def test_built_response_parses_with_h11(response: Response, keep_alive: bool) -> None:
    raw = build_response(response, keep_alive=keep_alive)
    head, body, complete = h11_response(raw)
    assert complete
    assert head.status_code == response.status
    assert body == response.body
    assert header_values(head, b"content-type") == [response.content_type.encode()]
    assert header_values(head, b"content-length") == [str(len(response.body)).encode()]
    for name, value in response.headers:
        assert value.encode() in header_values(head, name.encode())
    assert (header_values(head, b"connection") == [b"close"]) is not keep_alive


@pytest.mark.parametrize("response", RESPONSES)
def test_head_response_has_no_body_but_the_full_content_length(response: Response) -> None:
    raw = build_response(response, head=True)
    assert raw.endswith(b"\r\n\r\n") and raw.count(b"\r\n\r\n") == 1
    head, body, complete = h11_response(raw, method=b"HEAD")
    assert complete and body == b""
    assert header_values(head, b"content-length") == [str(len(response.body)).encode()]


@pytest.mark.parametrize("response", RESPONSES)
def test_built_response_is_one_buffer_with_head_then_body(response: Response) -> None:
    raw = build_response(response)
    assert isinstance(raw, bytes)
    head, sep, body = raw.partition(b"\r\n\r\n")
    assert sep and body == response.body
    assert b"\n" not in head.replace(b"\r\n", b"")


def test_status_line_is_http11_200_ok() -> None:
    assert build_response(Response(200, b"x")).startswith(b"HTTP/1.1 200 OK\r\n")


@pytest.mark.parametrize("status", [201, 400, 404, 405, 413, 414, 431, 500, 501, 505])
def test_status_line_carries_the_status_and_a_reason(status: int) -> None:
    line = build_response(Response(status)).split(b"\r\n", 1)[0]
    assert re.fullmatch(rb"HTTP/1\.1 %d [\x21-\x7e][\x20-\x7e]*" % status, line), line


def test_headers_come_in_the_documented_order() -> None:
    response = Response(200, b"x", headers=(("X-A", "1"), ("X-B", "2")))
    head, _, _ = h11_response(build_response(response, keep_alive=False))
    names = [n for n, _ in head.headers if n != b"connection"]
    assert names == [b"date", b"server", b"content-type", b"content-length", b"x-a", b"x-b"]


def test_date_header_is_an_imf_fixdate() -> None:
    head, _, _ = h11_response(build_response(Response(200)))
    [date] = header_values(head, b"date")
    assert IMF_FIXDATE.fullmatch(date)
    assert parsedate_to_datetime(date.decode()).tzinfo is not None


def test_server_header_is_present() -> None:
    head, _, _ = h11_response(build_response(Response(200)))
    [server] = header_values(head, b"server")
    assert server


def test_keep_alive_response_does_not_say_close() -> None:
    head, _, _ = h11_response(build_response(Response(200), keep_alive=True))
    assert b"close" not in b",".join(header_values(head, b"connection")).lower()


def test_request_pipelined_behind_a_recoverable_error_is_parsed_next() -> None:
    parser = RequestParser()
    with pytest.raises(ProtocolError) as info:
        parser.feed(b"GET /a HTTP/1.1\r\n\r\n" + SIMPLE_GET)
    assert info.value.status == 400 and not info.value.close
    assert [r.method for r in parser.feed(b"")] == ["GET"]


# ---------------------------------------------------------------------------
# HTTP/1.0 keep-alive and Expect: 100-continue

def test_http10_keep_alive_response_says_keep_alive() -> None:
    """An HTTP/1.0 client closes unless told to keep the connection (RFC 9112 9.3)."""
    head, _, _ = h11_response(build_response(Response(200, b"hi"), keep_alive=True, http10=True))
    assert header_values(head, b"connection") == [b"keep-alive"]


def test_http10_closing_response_says_close() -> None:
    head, _, _ = h11_response(build_response(Response(200, b"hi"), keep_alive=False, http10=True))
    assert header_values(head, b"connection") == [b"close"]


def test_http11_keep_alive_response_has_no_connection_header() -> None:
    head, _, _ = h11_response(build_response(Response(200, b"hi"), keep_alive=True))
    assert header_values(head, b"connection") == []


EXPECT_HEAD = b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"


def test_expect_100_continue_waits_for_continue_until_the_body_comes() -> None:
    parser = RequestParser()
    assert parser.feed(EXPECT_HEAD) == []
    assert parser.client_awaits_continue
    parser.client_awaits_continue = False  # the caller sent CONTINUE
    assert [r.body for r in parser.feed(b"hello")] == [b"hello"]
    assert not parser.client_awaits_continue


def test_expect_100_continue_is_dropped_once_the_body_is_complete() -> None:
    """A body that came before CONTINUE was sent: no 100 may follow the final answer."""
    parser = RequestParser()
    parser.feed(EXPECT_HEAD)
    assert [r.body for r in parser.feed(b"hello")] == [b"hello"]
    assert not parser.client_awaits_continue


@pytest.mark.parametrize("raw", [
    pytest.param(EXPECT_HEAD + b"hello", id="body sent with the head"),
    pytest.param(EXPECT_HEAD + b"he", id="part of the body sent with the head"),
    pytest.param(EXPECT_HEAD.replace(b"HTTP/1.1", b"HTTP/1.0"), id="HTTP/1.0 (RFC 9110 10.1.1: ignore it)"),
    pytest.param(EXPECT_HEAD.replace(b"100-continue", b"something-else"), id="another expectation"),
    pytest.param(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n", id="no Expect"),
])
def test_no_continue_is_owed(raw: bytes) -> None:
    parser = RequestParser()
    parser.feed(raw)
    assert not parser.client_awaits_continue


def test_expect_100_continue_on_a_chunked_body() -> None:
    parser = RequestParser()
    assert parser.feed(b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                       b"Expect: 100-Continue\r\n\r\n") == []
    assert parser.client_awaits_continue
    assert [r.body for r in parser.feed(b"5\r\nhello\r\n0\r\n\r\n")] == [b"hello"]
    assert not parser.client_awaits_continue


def test_expect_100_continue_with_a_body_over_the_limit_is_refused_at_once() -> None:
    """A final status instead of 100 is allowed, and the client never sends the body."""
    parser = RequestParser(Limits(max_body=4))
    with pytest.raises(ProtocolError) as info:
        parser.feed(EXPECT_HEAD)
    assert (info.value.status, info.value.close) == (413, True)
    assert not parser.client_awaits_continue
