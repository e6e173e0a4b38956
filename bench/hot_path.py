"""Where one keep-alive request's Python time goes on an event loop, without the sockets.

The asyncio backend's data_received is driven in-process with one request per call (what
wrk sends: one request per connection at a time) and a transport that drops what it is
given, then its parts alone: the parser's feed(), the responder (app + response builder),
and what is left (the connection's state machine and the calls between). Beside them, the
same callback of the no-parse ceiling (bench/peers/ceiling.py). Best of 5 x 0.2 s each, in
microseconds per request; pin it (taskset -c 0) and compare runs of one machine only.

    python bench/hot_path.py
"""

from __future__ import annotations

import sys
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from servers.backends.asyncio_server import AsyncioServer, HttpProtocol  # noqa: E402
from servers.backends.responder import Responder  # noqa: E402
from servers.config import ServerConfig  # noqa: E402
from servers.http import RequestParser  # noqa: E402

WRK = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n"
BROWSER = (b"GET / HTTP/1.1\r\nHost: localhost:8080\r\n"
           b"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n"
           b"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
           b"Accept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate, br\r\n"
           b"Connection: keep-alive\r\nUpgrade-Insecure-Requests: 1\r\n\r\n")
CEILING_RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, World!"


class NullTransport:
    def write(self, data: bytes) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str) -> None:
        return None

    def is_closing(self) -> bool:
        return False


class Ceiling:
    transport = NullTransport()

    def data_received(self, data: bytes) -> None:
        self.transport.write(CEILING_RESPONSE * data.count(b"\r\n\r\n"))


def per_request_us(call, arg) -> float:  # type: ignore[no-untyped-def]
    timer = timeit.Timer(lambda: call(arg))
    number, _ = timer.autorange()
    number = max(1, number)
    return min(timer.repeat(repeat=5, number=number)) / number * 1e6


def main() -> None:
    config = ServerConfig()
    protocol = HttpProtocol(AsyncioServer(config))
    protocol.connection_made(NullTransport())  # type: ignore[arg-type]
    responder = Responder(config)
    print(f"Python {sys.version.split()[0]}; microseconds per request, best of 5")
    print(f"{'':34}{'wrk GET':>10}{'browser GET':>13}")
    rows = []
    for name, request in (("wrk GET", WRK), ("browser GET", BROWSER)):
        parsed = RequestParser().feed(request)[0]
        whole = per_request_us(protocol.data_received, request)
        feed = per_request_us(RequestParser().feed, request)
        respond = per_request_us(responder.respond, parsed)
        rows.append((whole, feed, respond, whole - feed - respond, per_request_us(Ceiling().data_received, request)))
    labels = ("asyncio data_received, whole", "  parser feed()", "  responder (app + build)",
              "  the rest (state machine, calls)", "ceiling data_received")
    for i, label in enumerate(labels):
        print(f"{label:34}{rows[0][i]:10.2f}{rows[1][i]:13.2f}")


if __name__ == "__main__":
    main()
