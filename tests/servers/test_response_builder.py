"""build_response, cross-checked with h11 as the client; HTTP/1.0 keep-alive answers."""

from __future__ import annotations

import re
from email.utils import parsedate_to_datetime

import pytest

from http_support import SIMPLE_GET, h11_response, header_values
from servers.http import Pieces, ProtocolError, RequestParser, Response, Streamed, build_response


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


def test_a_body_of_pieces_is_a_head_then_its_pieces_made_as_they_are_taken() -> None:
    made = []

    def pieces():  # type: ignore[no-untyped-def]
        for piece in (b"ab", b"cde", b"f"):
            made.append(piece)
            yield piece

    body = Pieces(6, pieces)
    built = build_response(Response(200, body, content_type="application/octet-stream"))
    assert isinstance(built, Streamed) and made == []  # nothing made before it is sent
    head, _, complete = h11_response(built.head)
    assert not complete and header_values(head, b"content-length") == [b"6"]
    assert next(built.pieces) == b"ab" and made == [b"ab"]
    _, whole, complete = h11_response(built.head + b"ab" + b"".join(built.pieces))
    assert complete and whole == b"abcdef"
    assert build_response(Response(200, body), head=True).endswith(b"Content-Length: 6\r\n\r\n")  # HEAD: bytes
