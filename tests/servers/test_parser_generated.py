"""Generated requests (hypothesis): any split of any stream gives the same outcome, and the
parser agrees with h11 on what it accepts."""

from __future__ import annotations

import string

import h11
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from http_support import feed_all, feed_chunks, fields_of, outcome


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
