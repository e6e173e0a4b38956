"""Why the container image binds 0.0.0.0, shown with a network namespace.

The namespace plays the container: a server inside it bound to 127.0.0.1 listens on the
namespace's own loopback, which the host cannot reach through the veth pair; bound to
0.0.0.0 it listens on every interface, the veth end included.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import pytest

from support import ROOT

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root"),
    pytest.mark.skipif(shutil.which("ip") is None, reason="iproute2 (ip) is not installed"),
]

# A /30 inside the namespace we create and delete here; nothing else uses it.
HOST_ADDR, CONTAINER_ADDR = "10.213.7.1", "10.213.7.2"


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@pytest.fixture
def container() -> Iterator[str]:
    name = f"cb-{uuid.uuid4().hex[:8]}"
    host_end, ns_end = f"{name}-h", f"{name}-c"
    try:
        ip("netns", "add", name)
    except subprocess.CalledProcessError as error:
        pytest.skip(f"cannot create a network namespace here: {error.stderr.decode().strip()}")
    try:
        ip("link", "add", host_end, "type", "veth", "peer", "name", ns_end)
        ip("link", "set", ns_end, "netns", name)
        ip("addr", "add", f"{HOST_ADDR}/30", "dev", host_end)
        ip("link", "set", host_end, "up")
        ip("netns", "exec", name, "ip", "addr", "add", f"{CONTAINER_ADDR}/30", "dev", ns_end)
        ip("netns", "exec", name, "ip", "link", "set", ns_end, "up")
        ip("netns", "exec", name, "ip", "link", "set", "lo", "up")
        yield name
    finally:
        subprocess.run(["ip", "link", "del", host_end], capture_output=True)
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


def serve_in(namespace: str, host: str) -> tuple[subprocess.Popen, int]:
    process = subprocess.Popen(
        ["ip", "netns", "exec", namespace, sys.executable, "-m", "servers", "--backend", "selectors",
         "--host", host, "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    line = process.stdout.readline().decode()  # type: ignore[union-attr]
    assert line.startswith(f"listening on http://{host}:"), line
    return process, int(line.strip().rsplit(":", 1)[1])


def reachable_from_host(port: int) -> bool:
    deadline = time.monotonic() + 2
    while True:
        try:
            with socket.create_connection((CONTAINER_ADDR, port), timeout=1) as sock:
                sock.sendall(b"GET / HTTP/1.1\r\nHost: c\r\nConnection: close\r\n\r\n")
                return sock.recv(64).startswith(b"HTTP/1.1 200")
        except OSError:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)


@pytest.mark.parametrize(("bind", "reachable"), [
    pytest.param("127.0.0.1", False, id="loopback-bind-is-unreachable-from-the-host"),
    pytest.param("0.0.0.0", True, id="all-interfaces-bind-is-reachable-from-the-host"),
])
def test_bind_address_decides_reachability(container: str, bind: str, reachable: bool) -> None:
    process, port = serve_in(container, bind)
    try:
        assert reachable_from_host(port) is reachable
    finally:
        process.terminate()
        assert process.wait(10) == 0
