"""What the parser refuses, with which status, and whether the connection must close: one
row per RFC 9112 rule, with an id that reads as the rule; then the size limits."""

from __future__ import annotations

import pytest

from http_support import (H, SIMPLE_GET, _chunked, _get, _post, feed_all, h11_response, header_values, rejection,
                          rejection_bytewise)
from servers.http import Limits, ProtocolError, RequestParser, error_response


# ---------------------------------------------------------------------------
# rejections: (raw, status, close) where close None means "not specified"

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
    # RFC 9112 3.2: a target in none of the four forms is an invalid request line (3: SHOULD
    # be 400); the line's framing is intact, so a request with no body keeps its connection
    pytest.param(_get(b"GET foo/bar HTTP/1.1"), 400, False, id="target in none of the four forms"),
    pytest.param(_get(b"GET ?a=b HTTP/1.1"), 400, False, id="target that is only a query"),
    pytest.param(_get(b"GET foo/bar HTTP/1.0"), 400, True, id="target in no form on HTTP/1.0"),
    pytest.param(b"POST foo HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc", 400, True,
                 id="target in no form with a body"),
    pytest.param(_get(b"GET urn:isbn:0451450523 HTTP/1.1"), 400, False, id="absolute-URI of another scheme"),
    # RFC 9112 3.2.3: authority-form is only for CONNECT; 3.2.4: asterisk-form only for OPTIONS
    pytest.param(_get(b"GET example.com:443 HTTP/1.1"), 400, False, id="authority-form on GET"),
    pytest.param(_get(b"POST [::1]:80 HTTP/1.1"), 400, False, id="authority-form on POST"),
    pytest.param(_get(b"GET * HTTP/1.1"), 400, False, id="asterisk-form on GET"),
    pytest.param(_get(b"DELETE * HTTP/1.1"), 400, False, id="asterisk-form on DELETE"),
    pytest.param(_get(b"CONNECT * HTTP/1.1"), 400, False, id="asterisk-form on CONNECT"),
    pytest.param(_get(b"OPTIONS example.com:443 HTTP/1.1"), 400, False, id="authority-form on OPTIONS"),
    pytest.param(_get(b"CONNECT example.com HTTP/1.1"), 400, False, id="CONNECT to a host without a port"),
    pytest.param(_get(b"CONNECT :443 HTTP/1.1"), 400, False, id="CONNECT to a port without a host"),
    pytest.param(_get(b"CONNECT user@a:443 HTTP/1.1"), 400, False, id="CONNECT with userinfo"),
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


@pytest.mark.parametrize(("raw", "status", "close"), REJECT)
def test_parser_after_an_error_fails_again_only_if_framing_was_lost(
        raw: bytes, status: int, close: bool | None) -> None:
    parser = RequestParser()
    with pytest.raises(ProtocolError) as info:
        parser.feed(raw)
    if info.value.close:
        with pytest.raises(ProtocolError):
            parser.feed(SIMPLE_GET)
    else:  # framing is certain (no body): the connection and the parser go on
        assert [r.method for r in parser.feed(SIMPLE_GET)] == ["GET"]
