"""The ready-made peers serve our app through servers/adapters.py: the same routes and answers
as our backends, so they land in the same charts. Each runs as a real server process."""

from __future__ import annotations

import http.client
import socket

import pytest

from harness.run.launch import launch_backend
from harness.run.peers import PEERS, available
from harness.run.targets import resolve_backends
from servers.http import MAX_BODY

# http.server serves a directory, not the app.
APP_PEERS = [name for name in PEERS if name != "http.server"]


@pytest.fixture(params=APP_PEERS, ids=APP_PEERS)
def peer_url(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    name = request.param
    if not available(name):
        pytest.skip(f"{PEERS[name].needs} is not installed (pip install 'concurbench[peers]')")
    running = launch_backend(resolve_backends(name)[name])
    try:
        yield running.host, running.port
    finally:
        running.stop()


def ask(address: tuple[str, int], method: str, target: str, body: bytes | None = None,
        headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(*address, timeout=10)
    try:
        conn.request(method, target, body=body, headers=headers or {})
        reply = conn.getresponse()
        return reply.status, reply.read()
    finally:
        conn.close()


def test_a_peer_serves_the_apps_routes(peer_url: tuple[str, int]) -> None:
    assert ask(peer_url, "GET", "/") == (200, b"Hello, World!")
    assert ask(peer_url, "GET", "/sleep?ms=5") == (200, b"slept 5 ms\n")
    assert ask(peer_url, "POST", "/echo", b"ping", {"Content-Type": "text/x-ping"}) == (200, b"ping")
    assert ask(peer_url, "GET", "/bytes?size=200001") == (200, b"x" * 200_001)  # a body made in pieces
    assert ask(peer_url, "GET", "/nowhere")[0] == 404


def test_a_peer_holds_a_body_to_our_limit_and_echoes_bytes(peer_url: tuple[str, int]) -> None:
    """servers/adapters.py bounds what a peer's own server may not, and /echo's type is fixed."""
    with socket.create_connection(peer_url, timeout=10) as sock:  # the head alone: refused on its word
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (MAX_BODY + 1))
        assert sock.recv(4096).startswith(b"HTTP/1.1 413 ")
    conn = http.client.HTTPConnection(*peer_url, timeout=10)
    try:
        conn.request("POST", "/echo", body=b"<p>hi</p>", headers={"Content-Type": "text/html"})
        reply = conn.getresponse()
        assert (reply.status, reply.read()) == (200, b"<p>hi</p>")
        assert reply.getheader("Content-Type") == "application/octet-stream"
        assert reply.getheader("X-Content-Type-Options") == "nosniff"
    finally:
        conn.close()


def test_granian_is_a_peer_by_name() -> None:
    assert {"granian", "granian-wsgi"} <= set(PEERS)
    assert "servers.adapters:asgi_app" in PEERS["granian"].command
    assert "servers.adapters:wsgi_app" in PEERS["granian-wsgi"].command
