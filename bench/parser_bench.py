"""Parser throughput: servers.http against h11 and httptools on one fixed corpus.

Each parser is used the way a keep-alive server uses it: one parser per connection, fed
whole buffers. h11 runs its idiomatic server cycle (Request, Data, EndOfMessage, send a
response, start_next_cycle), because it cannot take the next request without answering
the previous one; ours and httptools only parse. Each figure is the best of several
~1 s `perf_counter` loops. Run under `taskset -c 0` to keep it on one core.

    python bench/parser_bench.py [--quick]
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import h11
import httptools

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from servers.http import RequestParser  # noqa: E402

# ---------------------------------------------------------------------------
# the corpus: what a browser, an API client and a pipelining load generator send

BROWSER_GET = (
    b"GET /articles/2024/concurrency-models?ref=homepage&utm_source=newsletter HTTP/1.1\r\n"
    b"Host: www.example.com\r\n"
    b"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,"
    b"image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7\r\n"
    b"Cookie: session_id=7f3c9a2be4d1456f8a0c2e9b71d3f5a6; _ga=GA1.2.1843257719.1700000000; "
    b"_gid=GA1.2.998877665.1700086400; theme=dark; lang=en; "
    b"consent=%7B%22analytics%22%3Atrue%2C%22ads%22%3Afalse%7D; "
    b"csrftoken=Qm9vZ2llV29vZ2llMTIzNDU2Nzg5MGFiY2RlZmdoaWprbG1u\r\n"
    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    b"Chrome/124.0.0.0 Safari/537.36\r\n"
    b"Accept-Language: en-US,en;q=0.9,de;q=0.8,fr;q=0.7\r\n"
    b"Accept-Encoding: gzip, deflate, br, zstd\r\n"
    b"Connection: keep-alive\r\n"
    b"Upgrade-Insecure-Requests: 1\r\n"
    b"\r\n"
)

_EVENT = b'{"event":"add_to_cart","sku":"A-1042","qty":2,"ts":1700000000123}'
SMALL_POST = (
    b"POST /api/v1/events HTTP/1.1\r\n"
    b"Host: api.example.com\r\n"
    b"User-Agent: python-requests/2.32.3\r\n"
    b"Accept: */*\r\n"
    b"Content-Type: application/json\r\n"
    b"Content-Length: %d\r\n"
    b"\r\n" % len(_EVENT)
) + _EVENT

# The request wrk's pipeline script sends in the TechEmpower plaintext test.
PLAINTEXT_GET = (
    b"GET /plaintext HTTP/1.1\r\n"
    b"Host: localhost\r\n"
    b"Accept: text/plain,text/html;q=0.9,application/xhtml+xml;q=0.9,application/xml;q=0.8,*/*;q=0.7\r\n"
    b"Connection: keep-alive\r\n"
    b"\r\n"
)


@dataclass(frozen=True)
class Item:
    name: str
    buffer: bytes
    requests: int  # requests in one buffer


CORPUS = [
    Item("browser GET, 8 headers", BROWSER_GET, 1),
    Item("small POST, Content-Length", SMALL_POST, 1),
    Item("16 pipelined GETs, one buffer", PLAINTEXT_GET * 16, 16),
]

Parsed = list[tuple[bytes, bytes, bytes]]  # (method, target, body) per request


# ---------------------------------------------------------------------------
# one "connection" per parser: make(item) returns a function that handles one buffer


def make_ours(item: Item) -> Callable[[], Parsed]:
    parser = RequestParser()
    feed = parser.feed

    def run() -> Parsed:
        return [(r.method.encode(), r.target.encode(), r.body) for r in feed(item.buffer)]

    return run


def make_h11(item: Item) -> Callable[[], Parsed]:
    conn = h11.Connection(h11.SERVER)
    response = h11.Response(status_code=200, headers=[("Content-Length", "0")])
    end = h11.EndOfMessage()
    need_data = h11.NEED_DATA

    def run() -> Parsed:
        out: Parsed = []
        conn.receive_data(item.buffer)
        for _ in range(item.requests):
            body = b""
            while True:
                event = conn.next_event()
                if type(event) is h11.Request:
                    head = event
                elif type(event) is h11.Data:
                    body += event.data
                elif type(event) is h11.EndOfMessage:
                    break
                elif event is need_data:
                    raise RuntimeError("h11 wants more data than the buffer holds")
            out.append((head.method, head.target, body))
            conn.send(response)
            conn.send(end)
            conn.start_next_cycle()
        return out

    return run


class _Collector:
    """httptools callbacks: gather url, headers and body, as a server would."""

    __slots__ = ("parser", "out", "url", "headers", "body", "method")

    def __init__(self) -> None:
        self.parser: httptools.HttpRequestParser | None = None
        self.out: Parsed = []
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.method = b""

    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = []
        self.body = []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        assert self.parser is not None
        self.method = self.parser.get_method()
        self.parser.should_keep_alive()

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.out.append((self.method, self.url, b"".join(self.body)))


def make_httptools(item: Item) -> Callable[[], Parsed]:
    collector = _Collector()
    parser = httptools.HttpRequestParser(collector)
    collector.parser = parser
    feed = parser.feed_data

    def run() -> Parsed:
        collector.out = []
        feed(item.buffer)
        return collector.out

    return run


PARSERS: dict[str, Callable[[Item], Callable[[], Parsed]]] = {
    "ours": make_ours,
    "h11": make_h11,
    "httptools": make_httptools,
}


# ---------------------------------------------------------------------------
# measurement


def check_agreement(item: Item) -> None:
    """Every parser sees the same requests, twice in a row on one connection."""
    results = {}
    for name, make in PARSERS.items():
        run = make(item)
        results[name] = run() + run()
    expected = results["ours"]
    if len(expected) != 2 * item.requests:
        raise SystemExit(f"ours parsed {len(expected)} requests from {item.name!r}")
    for name, got in results.items():
        if got != expected:
            raise SystemExit(f"{name} disagrees with ours on {item.name!r}: {got[:1]} != {expected[:1]}")


def measure(run: Callable[[], Parsed], *, seconds: float, repeat: int) -> float:
    """Best loops per second over `repeat` timed loops of about `seconds` each."""
    loops = 1
    while True:  # calibrate: double until one loop run takes a tenth of the target
        start = time.perf_counter()
        for _ in range(loops):
            run()
        elapsed = time.perf_counter() - start
        if elapsed >= seconds / 10:
            break
        loops *= 2
    loops = max(1, int(loops * seconds / elapsed))
    best = 0.0
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        for _ in range(loops):
            run()
        best = max(best, loops / (time.perf_counter() - start))
    return best


def describe_machine() -> str:
    affinity = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    return (f"Python {platform.python_version()} ({platform.python_implementation()}), "
            f"h11 {version('h11')}, httptools {version('httptools')}\n"
            f"CPU {cpu}; affinity {affinity or 'unknown'}"
            + (" (one core)" if len(affinity) == 1 else " (pin with `taskset -c 0` for one core)")
            + f"; load average {load:.2f}"
            + (" (busy machine: figures are noisy)" if load > 0.5 * (os.cpu_count() or 1) else ""))


def main(argv: list[str] | None = None) -> int:
    cli = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    cli.add_argument("--quick", action="store_true",
                     help="0.1 s loops, best of 3 (default: 1 s loops, best of 5)")
    args = cli.parse_args(argv)
    seconds, repeat = (0.1, 3) if args.quick else (1.0, 5)

    print(describe_machine())
    print(f"{seconds:g} s loops, best of {repeat}; figures are requests/s\n")
    names = list(PARSERS)
    header = f"{'corpus item':32} {'bytes':>6} " + " ".join(f"{n:>11}" for n in names)
    header += f" {'ours/h11':>9} {'ours/httptools':>15}"
    print(header)
    print("-" * len(header))
    for item in CORPUS:
        check_agreement(item)
        rates = {name: item.requests * measure(make(item), seconds=seconds, repeat=repeat)
                 for name, make in PARSERS.items()}
        print(f"{item.name:32} {len(item.buffer):>6} "
              + " ".join(f"{rates[n]:>11,.0f}" for n in names)
              + f" {rates['ours'] / rates['h11']:>8.2f}x {rates['ours'] / rates['httptools']:>14.2f}x",
              flush=True)
    print("\nh11 includes sending a 0-byte response per request (its state machine needs one "
          "before the next request); ours and httptools parse only.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
