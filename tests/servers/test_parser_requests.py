"""The parser on valid input (RFC 9112): every field as sent, whole, byte by byte and at
every split; the Headers and Request contract; keep-alive; pipelining and incremental feeding;
Expect: 100-continue."""

from __future__ import annotations

from dataclasses import fields as dataclass_fields

import pytest

from http_support import H, SIMPLE_GET, _get, _post, feed_all, feed_bytewise, feed_chunks, fields_of, outcome
from servers.http import Limits, ProtocolError, Request, RequestParser


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
        b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
        dict(method="CONNECT", target="example.com:443", path="example.com:443", query=""),
        id="authority-form target on CONNECT",
    ),
    pytest.param(
        b"CONNECT [::1]:8080 HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n",
        dict(method="CONNECT", target="[::1]:8080"),
        id="authority-form target with an IP literal on CONNECT",
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


def test_one_read_completes_at_most_max_pipelined_requests_then_503_and_close() -> None:
    """One 64 KiB read can hold about 1,600 small requests: the 101st is refused, and the
    connection with it (its bytes are not read); 100 in one read are all served."""
    limit = Limits().max_pipelined
    assert limit == 100
    assert len(RequestParser().feed(SIMPLE_GET * limit)) == limit
    with pytest.raises(ProtocolError) as raised:
        RequestParser().feed(SIMPLE_GET * (limit + 1))
    error = raised.value
    assert (error.status, error.close, len(error.requests)) == (503, True, limit)
    small = RequestParser(Limits(max_pipelined=2))  # the cap counts what one read completes
    assert [len(small.feed(SIMPLE_GET * 2)) for _ in range(3)] == [2, 2, 2]


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


# ---------------------------------------------------------------------------
# Expect: 100-continue

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
