"""The parser fuzz target (bench/fuzz_parser.py) under hypothesis, and what it found.

`fuzz_one(data)` checks RequestParser's invariants on one input (see its module
docstring): only ProtocolError escapes, with sane fields; the outcome does not depend on
how the bytes are cut; a closing error sticks; requests are sane; `buffered` is 0 only
between requests. Here it runs on every corpus entry, on generated payloads and on raw
binary. The regressions below are the bugs it found, each pinned by a direct test.
"""

from __future__ import annotations

import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fuzz_corpus import CORPUS, HOST, chunked, get, payloads, post
from servers import _response
from servers.http import ProtocolError, RequestParser, Response, build_response, error_response
from support import BENCH

sys.path.insert(0, str(BENCH))
from fuzz_parser import PROBE, check_stream, fuzz_one, run  # noqa: E402

FAST = settings(max_examples=300, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.mark.parametrize("name", list(CORPUS))
def test_corpus_entry_keeps_every_invariant(name: str) -> None:
    """Each known attack, cut in the middle and just before its end."""
    raw = CORPUS[name]
    for cut in (len(raw) // 2, len(raw) - 2):
        check_stream(raw, cut)


@FAST
@given(st.integers(0, 65535), payloads())
def test_generated_payload_keeps_every_invariant(cut: int, payload: bytes) -> None:
    fuzz_one(cut.to_bytes(2, "big") + payload)


@FAST
@given(st.binary(max_size=600))
def test_raw_bytes_keep_every_invariant(data: bytes) -> None:
    """What atheris hands fuzz_one: any bytes, the first two choosing the cut."""
    fuzz_one(data)


def test_fuzz_one_fails_on_a_broken_invariant(monkeypatch: pytest.MonkeyPatch) -> None:
    """The target can fail: a parser whose outcome depends on the cut is caught."""
    real_feed = RequestParser.feed

    def feed_that_drops_short_chunks(self: RequestParser, data: bytes):  # type: ignore[no-untyped-def]
        return real_feed(self, data) if len(data) > 3 else []

    monkeypatch.setattr(RequestParser, "feed", feed_that_drops_short_chunks)
    with pytest.raises(AssertionError):
        fuzz_one(b"\x00\x02" + get())


# -- regressions: what the fuzzing found in servers/http.py and servers/_body.py ----------

LONG_LINE = b"A" * 9000  # a request line past the 8 KiB limit, its CRLF not arrived


def test_requests_before_a_head_refused_early_are_still_returned() -> None:
    """A 414 (or 431) raised for a head still arriving carried no requests: the GET
    completed in the same feed() was never answered."""
    with pytest.raises(ProtocolError) as info:
        RequestParser().feed(get() + LONG_LINE)
    assert info.value.status == 414
    assert [r.target for r in info.value.requests] == ["/"]


def test_failed_parser_raises_again_without_the_earlier_requests() -> None:
    """The stored error was raised again with its requests, which were answered already."""
    parser = RequestParser()
    with pytest.raises(ProtocolError) as first:
        parser.feed(get() + get(version=b"2.0"))
    assert len(first.value.requests) == 1
    with pytest.raises(ProtocolError) as again:
        parser.feed(PROBE)
    assert (again.value.status, again.value.requests) == (505, [])


SPLIT_DEPENDENT = [
    # A malformed request line with an oversized header section: 400 whole, 431 when
    # the head arrived in pieces (the partial check sees the size first).
    pytest.param(b"BAD\r\nX: " + b"a" * 70000 + b"\r\n\r\n", 4, id="header-too-large-behind-a-bad-request-line"),
    pytest.param(get(version=b"2.0", head=HOST + b"X: " + b"a" * 70000 + b"\r\n"), 4,
                 id="header-too-large-behind-http-2"),
    # A chunk-size line over 4 KiB: accepted whole, 400 when it arrived in pieces.
    pytest.param(chunked(b"5;" + b"e" * 5000 + b"\r\nhello\r\n0\r\n\r\n"), 20, id="chunk-line-too-long"),
    # Exactly at the limit, cut after its CR: accepted either way.
    pytest.param(chunked(b"5;" + b"e" * 4094 + b"\r\nhello\r\n0\r\n\r\n"), 17, id="chunk-line-at-limit-cut-after-cr"),
]


@pytest.mark.parametrize(("raw", "from_end"), SPLIT_DEPENDENT)
def test_limit_checks_give_the_same_outcome_however_the_bytes_arrive(raw: bytes, from_end: int) -> None:
    cut = len(raw) - from_end
    assert run([raw[:cut], raw[cut:]]) == run([raw])


def test_chunk_size_line_over_the_limit_is_refused_even_whole() -> None:
    with pytest.raises(ProtocolError) as info:
        RequestParser().feed(chunked(b"5;" + b"e" * 5000 + b"\r\nhello\r\n0\r\n\r\n"))
    assert info.value.status == 400


@pytest.mark.parametrize("head", [
    pytest.param(b"Content-Length: 5\r\n", id="content-length"),
    pytest.param(b"Transfer-Encoding: chunked\r\n", id="chunked"),
])
def test_buffered_counts_a_head_whose_body_has_not_arrived(head: bytes) -> None:
    """buffered was 0 once a head was parsed and no body byte had come: the backends took
    the connection for idle (keep-alive timeout, no 408) in the middle of a request."""
    parser = RequestParser()
    raw = post(head)
    assert parser.feed(raw) == []
    assert parser.buffered == len(raw)


def test_buffered_counts_a_chunked_body_between_its_last_chunk_and_its_end() -> None:
    parser = RequestParser()
    assert parser.feed(chunked(b"0\r\n")) == []
    assert parser.buffered > 0


@pytest.mark.parametrize(("raw", "status"), [
    pytest.param(get(method=b"HEAD", head=b""), 400, id="missing-host"),
    pytest.param(get(method=b"HEAD", version=b"2.0"), 505, id="http-2"),
    pytest.param(get(method=b"HEAD", head=HOST + b"X: a\x00\r\n"), 400, id="bad-field"),
    pytest.param(chunked(b"zz\r\n").replace(b"POST", b"HEAD", 1), 400, id="bad-chunk-in-body"),
])
def test_error_answer_to_a_head_has_no_content(raw: bytes, status: int) -> None:
    """RFC 9110 9.3.2: no content in an answer to HEAD, an error included. With content,
    a client reads it as the start of the next answer on the connection."""
    with pytest.raises(ProtocolError) as info:
        RequestParser().feed(raw)
    assert (info.value.status, info.value.head) == (status, True)
    answer = error_response(info.value)
    assert answer.endswith(b"\r\n\r\n") and b"Content-Length: " in answer


def test_error_answer_to_a_get_keeps_its_content() -> None:
    with pytest.raises(ProtocolError) as info:
        RequestParser().feed(get(head=b""))
    assert not info.value.head
    assert error_response(info.value).endswith(b"\r\n\r\n400 Missing Host header\n")


def test_content_type_cache_does_not_grow_with_client_values() -> None:
    """/echo answers with the client's Content-Type; each distinct one was cached for
    good, so a client could grow the server's memory without bound."""
    for i in range(_response.MAX_CACHED_CONTENT_TYPES + 50):
        answer = build_response(Response(200, b"x", content_type=f"x/fuzz-{i}"))
        assert f"Content-Type: x/fuzz-{i}\r\n".encode() in answer
    assert len(_response._CONTENT_TYPES) <= _response.MAX_CACHED_CONTENT_TYPES
