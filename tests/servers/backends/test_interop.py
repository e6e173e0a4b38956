"""Interop: real clients (ab, h2load, curl) against every backend variant, on each interpreter.

Our own client in conftest checks framing byte by byte; these check that the tools people
actually point at a server agree with it: ApacheBench's HTTP/1.0 keep-alive, h2load's
HTTP/1.1 pipelining, curl's HEAD, chunked upload and `Expect: 100-continue`.

Each client run must finish within SANE_SECONDS. The server closes an idle keep-alive
connection after 5 s and curl waits 10 s for a `100 Continue` before sending the body
anyway, so a client that ends up waiting for either fails here instead of passing slowly.
A failing run is cut short at that limit, so a broken server costs seconds, not minutes.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from support import REGISTRY, LiveServer

pytestmark = pytest.mark.timeout(60)

SANE_SECONDS = 3.0  # a passing run takes ~0.05 s; waiting out the 5 s keep-alive timeout even once fails

needs_ab = pytest.mark.skipif(shutil.which("ab") is None, reason="ab is not installed (apt-get install apache2-utils)")
needs_h2load = pytest.mark.skipif(shutil.which("h2load") is None,
                                  reason="h2load is not installed (apt-get install nghttp2-client)")
needs_curl = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed (apt-get install curl)")

# Connections a variant serves at once; more wait in the listen backlog until one closes.
# A keep-alive client holding more connections than that stalls by design: ab -k -c 4
# finishes its share on the connections being served, leaves them open and idle, and the
# requests it already sent on the others wait for the server's 5 s keep-alive timeout to
# free a slot (measured: 10.4 s against iterative, 5.2 s against forking-prefork2). That
# is the lesson of those models (see test_ten_sleeps_run_concurrently_... in
# test_backends.py), not a bug, so ab opens no more connections than the variant serves.
# The registry says how many connections each variant serves at once.


def run(argv: list[str], *, within: float = SANE_SECONDS,
        hint: str = "") -> tuple[subprocess.CompletedProcess[str], float]:
    """Run a client; fail (with what it printed so far) if it is still running after `within` s."""
    started = time.monotonic()
    try:
        done = subprocess.run(argv, capture_output=True, text=True, errors="replace", timeout=within)
    except subprocess.TimeoutExpired as expired:
        out, err = (_text(s)[-3000:] for s in (expired.stdout, expired.stderr))
    else:
        return done, time.monotonic() - started
    pytest.fail(f"{argv[0]} still running after {within} s{hint}\n$ {' '.join(argv)}\n"
                f"--- stdout\n{out}\n--- stderr\n{err}", pytrace=False)


def _text(data: bytes | str | None) -> str:
    if isinstance(data, bytes):
        return data.decode(errors="replace")
    return data or ""


def url(server: LiveServer, path: str = "/") -> str:
    return f"http://127.0.0.1:{server.port}{path}"


def variant(server: LiveServer) -> str:
    return server.variant


# -- ab: HTTP/1.0 keep-alive -----------------------------------------------------------------
AB_REQUESTS = 2000
AB_SOCKET_TIMEOUT = 2  # ab's own wait for each response: below SANE_SECONDS, so ab reports it


@needs_ab
def test_ab_keep_alive_http10(server: LiveServer) -> None:
    """ab -k sends HTTP/1.0 with `Connection: keep-alive` and reuses a connection only if the
    response says `Connection: keep-alive`; otherwise it reads until the server closes, which
    here is after the 5 s keep-alive timeout, so ab's socket timeout expires first."""
    model = REGISTRY[variant(server)]
    concurrency = 1 if model.hashed else min(4, model.at_once or 4)  # hashed: a second may wait behind the first
    argv = ["ab", "-k", "-s", str(AB_SOCKET_TIMEOUT), "-n", str(AB_REQUESTS), "-c", str(concurrency), url(server)]
    done, elapsed = run(argv, within=10.0)
    assert done.returncode == 0, (
        f"ab exited {done.returncode}: {done.stderr.strip()[-500:]}\n"
        "(a timeout after a 200 usually means ab waited for the close: an HTTP/1.0 client keeps a\n"
        "connection only if the response carries `Connection: keep-alive`, RFC 9112 9.3)\n"
        f"{done.stdout[-1500:]}")
    summary = dict(re.findall(r"^([A-Za-z0-9 -]+):\s+(.*?)\s*$", done.stdout, re.MULTILINE))
    assert summary.get("Complete requests") == str(AB_REQUESTS), done.stdout
    assert summary.get("Failed requests") == "0", done.stdout
    assert summary.get("Non-2xx responses", "0") == "0", done.stdout
    assert summary.get("Keep-Alive requests") == str(AB_REQUESTS), done.stdout  # every one kept alive
    assert summary.get("Document Length") == "13 bytes", done.stdout  # "Hello, World!"
    assert elapsed < SANE_SECONDS, f"{AB_REQUESTS} keep-alive requests took {elapsed:.2f} s\n{done.stdout}"


# -- h2load: HTTP/1.1 pipelining ---------------------------------------------------------------
H2LOAD_REQUESTS = 4000


@needs_h2load
def test_h2load_pipelining(server: LiveServer) -> None:
    """16 requests in flight on each of 2 connections, answered in order on each.

    Two connections suit every variant, iterative included: h2load closes a connection once
    its share is done, which lets the server take the next one from the backlog. -N makes a
    connection silent for 2 s count as a timeout in the summary rather than hang.
    """
    argv = ["h2load", "--h1", "-n", str(H2LOAD_REQUESTS), "-c", "2", "-m", "16", "-N", "2", url(server)]
    done, elapsed = run(argv, within=10.0)
    assert done.returncode == 0, f"h2load exited {done.returncode}\n{done.stdout[-2000:]}\n{done.stderr[-1000:]}"
    n = H2LOAD_REQUESTS
    requests = re.search(r"^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                         r"(\d+) errored, (\d+) timeout$", done.stdout, re.MULTILINE)
    assert requests, done.stdout
    assert tuple(map(int, requests.groups())) == (n, n, n, n, 0, 0, 0), requests.group(0)
    statuses = re.search(r"^status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx$", done.stdout, re.MULTILINE)
    assert statuses, done.stdout
    assert tuple(map(int, statuses.groups())) == (n, 0, 0, 0), statuses.group(0)
    assert elapsed < SANE_SECONDS, f"{n} pipelined requests took {elapsed:.2f} s\n{done.stdout}"


# -- curl: HEAD, chunked upload, Expect: 100-continue --------------------------------------------
@needs_curl
def test_curl_head_has_length_but_no_body(server: LiveServer, tmp_path: Path) -> None:
    """HEAD, then GET on the same connection. A body sent after the HEAD's headers would be
    read as the next response: curl drops what arrives with the headers ("Excess found"),
    but a 1 MB body does not fit in one read, and the rest breaks the GET."""
    head, get = tmp_path / "head.txt", tmp_path / "get.txt"
    write_out = "%{http_code} %{size_download} %{num_connects}\\n"
    done, _ = run(["curl", "-sS", "-v", "-I", url(server, "/bytes?size=1000000"), "-o", str(head), "-w", write_out,
                   "--next", "-sS", "-v", url(server), "-o", str(get), "-w", write_out])
    assert done.returncode == 0, done.stderr
    assert "Excess found" not in done.stderr, done.stderr  # curl 7.88 -v; the GET below needs no wording
    head_line, get_line = done.stdout.splitlines()
    assert head_line == "200 0 1"  # status, body bytes, new connections
    lines = head.read_text().splitlines()
    assert lines[0] == "HTTP/1.1 200 OK"
    assert "Content-Length: 1000000" in lines  # what a GET would carry
    assert get_line == "200 13 0"  # the connection was reused for the GET ...
    assert get.read_bytes() == b"Hello, World!"  # ... and its framing survived the HEAD


@needs_curl
def test_curl_chunked_upload_is_echoed(server: LiveServer, tmp_path: Path) -> None:
    body = bytes(range(256)) * 800  # 200 KiB, every byte value: curl sends it in 64 KiB chunks
    sent, received, trace = tmp_path / "sent.bin", tmp_path / "received.bin", tmp_path / "trace.txt"
    sent.write_bytes(body)
    done, _ = run(["curl", "-sS", "-H", "Transfer-Encoding: chunked", "-H", "Content-Type: application/octet-stream",
                   "-H", "Expect:",  # no 100-continue here: that is the next test's subject
                   "--data-binary", f"@{sent}", "--trace-ascii", str(trace), "-o", str(received),
                   "-w", "%{http_code} %{size_upload}", url(server, "/echo")])
    assert done.returncode == 0, done.stderr
    status, uploaded = done.stdout.split()
    assert status == "200"
    sent_chunks = re.findall(r"^=> Send data, \d+ bytes", trace.read_text(errors="replace"), re.MULTILINE)
    assert len(sent_chunks) >= 3 and int(uploaded) > len(body), "curl did not send the body in several chunks"
    assert received.read_bytes() == body


@needs_curl
def test_curl_expect_100_continue(server: LiveServer, tmp_path: Path) -> None:
    """curl sends the headers, then waits for `100 Continue` (here up to 10 s) before the body.

    A server that never sends it still gets the body after the 10 s, and answers 200, so
    the time is what tells: this run must end well before curl would have given up waiting.
    """
    body = bytes(range(256)) * 256  # 64 KiB
    sent, received = tmp_path / "sent.bin", tmp_path / "received.bin"
    sent.write_bytes(body)
    done, elapsed = run(["curl", "-sS", "-v", "-H", "Expect: 100-continue", "--expect100-timeout", "10",
                         "--data-binary", f"@{sent}", "-o", str(received), "-w", "%{http_code}", url(server, "/echo")],
                        hint=" (no `< HTTP/1.1 100 Continue` below: curl is\n"
                             "waiting for one, up to its --expect100-timeout of 10 s, before it sends the body)")
    assert done.returncode == 0, done.stderr
    assert re.search(r"^> Expect: 100-continue\r?$", done.stderr, re.MULTILINE), done.stderr  # it was asked
    assert re.search(r"^< HTTP/1\.1 100 Continue\r?$", done.stderr, re.MULTILINE), done.stderr
    assert done.stdout == "200"
    assert received.read_bytes() == body
    assert elapsed < SANE_SECONDS, f"took {elapsed:.2f} s\n{done.stderr}"
