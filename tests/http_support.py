"""Ways to feed the parser and to read what the builder made, shared by the parser's tests."""

from __future__ import annotations

import h11
import pytest

from servers.http import Limits, ProtocolError, Request, RequestParser

SIMPLE_GET = b"GET /next HTTP/1.1\r\nHost: a\r\n\r\n"



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



# -- requests to refuse, built from a line and a head


H = b"Host: a\r\n"


def _get(line: bytes = b"GET / HTTP/1.1", head: bytes = H) -> bytes:
    return line + b"\r\n" + head + b"\r\n"


def _post(head: bytes, body: bytes = b"") -> bytes:
    return b"POST /echo HTTP/1.1\r\nHost: a\r\n" + head + b"\r\n" + body


def _chunked(chunks: bytes) -> bytes:
    return _post(b"Transfer-Encoding: chunked\r\n", chunks)


