"""Conformance: every backend variant, over real sockets, behaves the same.

The `server` fixture runs each test against every variant in the registry, one process per
variant, on the harness's own interpreter and on the free-threaded build (`threaded@3.13t`).
"""

from __future__ import annotations

import json
import socket
import struct
import time

import pytest

from support import Client, LiveServer, ServerSpec, ServerStart, request, server_specs
from servers.http import CONTINUE

pytestmark = pytest.mark.timeout(60)


# -- routes ------------------------------------------------------------------------------
ROUTES = [
    pytest.param("GET", "/", b"", 200, b"Hello, World!", id="root-says-hello"),
    pytest.param("GET", "/sleep?ms=10", b"", 200, b"slept 10 ms\n", id="sleep-waits-and-answers"),
    pytest.param("GET", "/cpu?ms=5", b"", 200, None, id="cpu-computes-and-answers"),
    pytest.param("GET", "/bytes?size=300000", b"", 200, b"x" * 300000, id="bytes-large-body-partial-sends"),
    pytest.param("GET", "/bytes?size=0", b"", 200, b"", id="bytes-empty-body"),
    pytest.param("POST", "/echo", b"ping" * 1000, 200, b"ping" * 1000, id="echo-returns-body"),
    pytest.param("GET", "/static/hello.txt", b"", 200, b"Hello from the docroot.\n", id="static-file"),
    pytest.param("GET", "/static/%2e%2e/app.py", b"", 404, None, id="static-refuses-encoded-dotdot"),
    pytest.param("GET", "/nowhere", b"", 404, None, id="unknown-path-404"),
    pytest.param("DELETE", "/", b"", 405, None, id="wrong-method-405"),
    pytest.param("GET", "/sleep?ms=nope", b"", 400, None, id="bad-parameter-400"),
    pytest.param("GET", "/bytes?size=67108865", b"", 400, None, id="out-of-range-parameter-400"),
]


@pytest.mark.parametrize(("method", "target", "body", "status", "expected"), ROUTES)
def test_route(client: Client, method: str, target: str, body: bytes, status: int, expected: bytes | None) -> None:
    client.send(request(method, target, body=body))
    response = client.read_response(method)
    assert response.status == status
    if expected is not None:
        assert response.body == expected
    assert int(response.headers["content-length"]) == len(response.body)


def test_405_names_allowed_methods(client: Client) -> None:
    client.send(request("GET", "/echo"))
    response = client.read_response()
    assert response.status == 405
    assert response.headers["allow"] == "POST"


def test_head_has_headers_but_no_body(client: Client) -> None:
    client.send(request("HEAD", "/bytes?size=1000") + request("GET", "/"))
    head = client.read_response("HEAD")
    assert head.status == 200 and head.body == b"" and head.headers["content-length"] == "1000"
    assert client.read_response().body == b"Hello, World!"  # framing survived the HEAD


def test_chunked_echo(client: Client) -> None:
    client.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nTrailer: x\r\n\r\n")
    assert client.read_response().body == b"hello world"


def test_response_carries_date_server_and_type(client: Client) -> None:
    client.send(request())
    headers = client.read_response().headers
    assert {"date", "server", "content-type", "content-length"} <= set(headers)


# -- keep-alive, pipelining, partial reads -------------------------------------------------
def test_keep_alive_serves_many_requests_on_one_connection(client: Client) -> None:
    for _ in range(5):
        client.send(request())
        response = client.read_response()
        assert response.status == 200 and "connection" not in response.headers


def test_pipelined_requests_answered_in_order(client: Client) -> None:
    targets = ["/sleep?ms=30", "/bytes?size=3", "/", "/sleep?ms=1", "/bytes?size=5"]
    client.send(b"".join(request("GET", t) for t in targets))
    bodies = [client.read_response().body for _ in targets]
    assert bodies == [b"slept 30 ms\n", b"xxx", b"Hello, World!", b"slept 1 ms\n", b"xxxxx"]


def test_one_byte_at_a_time(client: Client) -> None:
    for byte in request("POST", "/echo", body=b"abc"):
        client.send(bytes([byte]))
    assert client.read_response().body == b"abc"


def test_connection_close_is_honoured(client: Client) -> None:
    client.send(request(close=True))
    response = client.read_response()
    assert response.headers.get("connection") == "close"
    assert client.closed_by_server()


def test_http10_closes_by_default(client: Client) -> None:
    client.send(b"GET / HTTP/1.0\r\n\r\n")
    assert client.read_response().status == 200
    assert client.closed_by_server()


def test_http10_keep_alive_is_said_and_kept(client: Client) -> None:
    """An HTTP/1.0 client waits for the close unless the answer says keep-alive (ab -k)."""
    for _ in range(3):
        client.send(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        response = client.read_response()
        assert (response.status, response.headers.get("connection")) == (200, "keep-alive")
    client.send(b"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n")
    assert client.read_response().headers.get("connection") == "close"
    assert client.closed_by_server()


def test_absolute_form_target_is_served_by_its_path(client: Client) -> None:
    client.send(b"GET http://localhost/ HTTP/1.1\r\nHost: localhost\r\n\r\n")
    response = client.read_response()
    assert (response.status, response.body) == (200, b"Hello, World!")
    client.send(b"GET http://localhost:8080/bytes?size=7 HTTP/1.1\r\nHost: localhost\r\n\r\n")
    assert client.read_response().body == b"x" * 7


def read_exactly(client: Client, size: int, timeout: float = 3.0) -> bytes:
    """`size` raw bytes from the server (or fewer if it stops sending for `timeout`)."""
    client.sock.settimeout(timeout)
    data = client.buffer
    while len(data) < size:
        try:
            more = client.sock.recv(size - len(data))
        except TimeoutError:
            break
        if not more:
            break
        data += more
    client.buffer = data[size:]
    return data[:size]


def test_expect_100_continue_gets_continue_before_the_body(client: Client) -> None:
    client.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
    assert read_exactly(client, len(CONTINUE)) == CONTINUE
    client.send(b"hello")
    response = client.read_response("POST")
    assert (response.status, response.body) == (200, b"hello")
    client.send(request())  # the connection is still in step
    assert client.read_response().body == b"Hello, World!"


def test_continue_comes_after_the_answers_owed_before_it(client: Client) -> None:
    """Pipelined behind a slow request, the 100 must not overtake that request's answer."""
    client.send(request("GET", "/sleep?ms=100") +
                b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n")
    first = client.read_response()
    assert first.status == 200 and first.body.startswith(b"slept")
    assert read_exactly(client, len(CONTINUE)) == CONTINUE
    client.send(b"ok")
    assert client.read_response("POST").body == b"ok"


def test_expect_100_continue_with_the_body_already_sent_gets_no_100(client: Client) -> None:
    client.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhello")
    response = client.read_response("POST")
    assert (response.status, response.body) == (200, b"hello")
    client.send(request())
    assert client.read_response().body == b"Hello, World!"  # no stray 100 came before this answer


def test_expect_100_continue_over_the_body_limit_is_refused_without_100(client: Client) -> None:
    client.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 2000000\r\nExpect: 100-continue\r\n\r\n")
    response = client.read_response("POST")
    assert response.status == 413
    assert client.closed_by_server()


# -- every parser rejection, through the socket --------------------------------------------
REJECTIONS = [
    pytest.param(b"GET / HTTP/1.1 extra\r\nHost: t\r\n\r\n", 400, True, id="malformed-request-line-400"),
    pytest.param(b"G(T / HTTP/1.1\r\nHost: t\r\n\r\n", 400, True, id="bad-method-token-400"),
    pytest.param(b"GET / HTTP/1.x\r\nHost: t\r\n\r\n", 400, True, id="bad-version-syntax-400"),
    pytest.param(b"GET / HTTP/2.0\r\nHost: t\r\n\r\n", 505, True, id="http2-version-505"),
    pytest.param(b"GET / HTTP/1.1\r\n\r\n", 400, False, id="missing-host-400-keeps-connection"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, False, id="two-hosts-400"),
    pytest.param(b"GET / HTTP/1.1\r\nHost : t\r\n\r\n", 400, True, id="space-before-colon-400"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: t\r\nX: a\r\n b\r\n\r\n", 400, True, id="obs-fold-400"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: t\r\nX: a\rb\r\n\r\n", 400, True, id="bare-cr-400"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: t\r\nX: a\x00b\r\n\r\n", 400, True, id="nul-in-field-400"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: t\r\nX: a\x07b\r\n\r\n", 400, True, id="control-char-in-field-400"),
    pytest.param(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
                 400, True, id="cl-with-te-400-close"),
    pytest.param(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
                 400, True, id="repeated-cl-400-close"),
    pytest.param(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabc",
                 400, True, id="differing-cl-400-close"),
    pytest.param(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: +5\r\n\r\nhello", 400, True, id="cl-plus-sign-400-close"),
    pytest.param(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1_0\r\n\r\n", 400, True, id="cl-underscore-400-close"),
    pytest.param(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n", 400, True, id="cl-negative-400-close"),
    pytest.param(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n", 400, True, id="te-gzip-400-close"),
    pytest.param(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 400, True,
                 id="te-chunked-not-final-400-close"),
    pytest.param(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501, True,
                 id="te-gzip-then-chunked-501"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: bad host\r\n\r\n", 400, False, id="host-with-space-400"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400, False, id="host-with-slash-400"),
    pytest.param(b"GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\nConnection: keep-alive\r\n\r\n", 400, True,
                 id="two-hosts-on-http10-400-close"),
    pytest.param(b"GET http://user@a/ HTTP/1.1\r\nHost: a\r\n\r\n", 400, False, id="absolute-form-userinfo-400"),
    pytest.param(b"GET foo/bar HTTP/1.1\r\nHost: t\r\n\r\n", 400, False, id="target-in-no-form-400"),
    pytest.param(b"GET t:80 HTTP/1.1\r\nHost: t\r\n\r\n", 400, False, id="authority-form-not-connect-400"),
    pytest.param(b"GET * HTTP/1.1\r\nHost: t\r\n\r\n", 400, False, id="asterisk-form-not-options-400"),
    pytest.param(b"GET /\r HTTP/1.1\r\nHost: t\r\n\r\n", 400, True, id="bare-cr-in-request-line-400"),
    pytest.param(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r;x\r\nhello\r\n0\r\n\r\n",
                 400, True, id="bare-cr-in-chunk-size-line-400-close"),
    pytest.param(b"POST /echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400, True, id="te-on-http10-400"),
    pytest.param(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400, True,
                 id="bad-chunk-size-400-close"),
    pytest.param(b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: t\r\n\r\n", 414, True, id="request-line-over-8k-414"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: t\r\n" + b"X-Big: " + b"b" * 70000 + b"\r\n\r\n", 431, True,
                 id="header-section-over-64k-431"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: t\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(101)) + b"\r\n",
                 431, True, id="over-100-fields-431"),
    pytest.param(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 2000000\r\n\r\n", 413, True,
                 id="body-over-limit-413-before-body"),
]


@pytest.mark.parametrize(("raw", "status", "closes"), REJECTIONS)
def test_rejection(server: LiveServer, raw: bytes, status: int, closes: bool) -> None:
    client = Client(server.connect())
    try:
        client.send(raw)
        response = client.read_response()
        assert response.status == status
        assert int(response.headers["content-length"]) == len(response.body) > 0  # self-delimiting, with a reason
        if closes:
            assert response.headers.get("connection") == "close"
            assert client.closed_by_server()
        else:
            client.send(request())
            assert client.read_response().status == 200  # the connection survived
    finally:
        client.close()
    assert_still_serving(server)


def assert_still_serving(server: LiveServer) -> None:
    fresh = Client(server.connect())
    try:
        fresh.send(request(close=True))
        assert fresh.read_response().status == 200
    finally:
        fresh.close()


def test_client_reset_mid_request_does_not_hurt(server: LiveServer) -> None:
    for _ in range(3):
        sock = server.connect()
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\npartial")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()  # RST
    assert_still_serving(server)


def test_garbage_then_vanish_does_not_hurt(server: LiveServer) -> None:
    sock = server.connect()
    sock.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(256)))  # a TLS hello
    sock.close()
    assert_still_serving(server)


def test_answers_come_from_the_interpreter_it_was_started_with(client: Client, server: LiveServer) -> None:
    """GET /runtime names the interpreter the server was started on, and the free-threaded
    build answers with its GIL off: a @3.13t case really runs without it (an extension that
    is not free-threading safe would turn it back on, silently)."""
    client.send(request("GET", "/runtime"))
    runtime = json.loads(client.read_response().body)
    assert server.spec is not None
    python = server.spec.python
    assert runtime["python"].startswith(".".join(map(str, python.version)) + ".")
    assert runtime["free_threaded"] is python.free_threaded
    assert runtime["gil_enabled"] is not python.free_threaded


# -- concurrency: the lesson of each model --------------------------------------------------
def ten_sleeps(start: ServerStart, spec: ServerSpec) -> float:
    """Seconds until 10 x /sleep?ms=300, sent at once on 10 connections, are all answered."""
    live = start(spec)
    clients = [Client(live.connect()) for _ in range(10)]
    started = time.monotonic()
    for c in clients:
        c.send(request("GET", "/sleep?ms=300", close=True))
    for c in clients:
        assert c.read_response().status == 200
        c.close()
    return time.monotonic() - started


@pytest.mark.parametrize("spec", server_specs())
def test_ten_sleeps_run_concurrently_except_where_the_model_forbids(at_once, spec: ServerSpec) -> None:  # type: ignore[no-untyped-def]
    """10 x /sleep?ms=300 at once: ~0.3 s where connections are concurrent.

    iterative serves one at a time (~3 s); a pool of 4 threads or 2 pre-forked workers
    serves in waves (ceil(10/4) or ceil(10/2) x 0.3 s). Workers the kernel hashes
    connections to (--reuseport) serve as many waves as the busiest one got: 5 to 10.
    Every case runs side by side: the waits overlap, the answers' timing does not.
    """
    elapsed = at_once(ten_sleeps)
    model = spec.model
    waves = -(-10 // model.at_once) if model.at_once else 1
    most = 10 if model.hashed else waves
    assert 0.3 * waves - 0.05 <= elapsed < 0.3 * most + 0.5, f"{elapsed:.2f}s for {waves} to {most} wave(s)"
