"""Fuzz target for RequestParser.feed(): `fuzz_one(data)` checks the parser's invariants.

With atheris installed (`pip install atheris`; not a project dependency), this runs
coverage-guided libFuzzer on `fuzz_one`, seeded with tests/fuzz_corpus.py; any extra
arguments go to libFuzzer (-max_total_time=60, -runs=N, a corpus directory, ...).
Without atheris it says so and runs a hypothesis-driven loop over the same corpus,
its mutations and raw binary, for --seconds (default 30; with atheris, -max_total_time).

    python bench/fuzz_parser.py [--seconds N] [libFuzzer args...]

Invariants, for any input:
- feed() raises nothing but ProtocolError, whose status is a 4xx/5xx int, whose reason
  is a short printable str and whose close is a bool;
- the requests and the error (status, close) do not depend on how the input is cut:
  whole, in two at any point, or byte by byte;
- after an error with close=True the parser stays failed: the next feed raises again,
  with no requests; after close=False it goes on with what was pipelined behind;
- every request is sane: a token method, a visible-ASCII target that splits into path and
  query, version "1.0" or "1.1", token field names, values without CR/LF/NUL or outer
  whitespace, one Host in HTTP/1.1, a body exactly Content-Length long;
- `buffered` is 0 only between requests: then a new GET parses as exactly that GET.
"""

from __future__ import annotations

import re
import sys
import time
from urllib.parse import urlsplit
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout

try:
    import atheris
except ImportError:
    atheris = None

if atheris is not None and __name__ == "__main__":
    with atheris.instrument_imports(include=["servers"]):
        from servers.http import Limits, ProtocolError, Request, RequestParser
else:
    from servers.http import Limits, ProtocolError, Request, RequestParser

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_TARGET = re.compile(r"[!-~]+")
_REASON = re.compile(r"[ -~]{1,80}")
_BAD_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")  # CTLs but HTAB: never in a value
PROBE = b"GET /probe HTTP/1.1\r\nHost: probe\r\n\r\n"
LIMITS = Limits()
BYTEWISE_MAX = 512  # inputs up to this long are also fed one byte at a time


def fields_of(request: Request) -> tuple:
    return (request.method, request.target, request.path, request.query, request.version,
            list(request.headers), request.body, request.keep_alive)


def check_error(error: ProtocolError) -> None:
    assert type(error) is ProtocolError, type(error)
    assert type(error.status) is int and 400 <= error.status <= 599, error.status
    assert isinstance(error.reason, str) and _REASON.fullmatch(error.reason), error.reason
    assert type(error.close) is bool and type(error.head) is bool
    assert isinstance(error.requests, list) and all(type(r) is Request for r in error.requests)


def check_request(request: Request) -> None:
    assert _TOKEN.fullmatch(request.method.encode("ascii")), request.method
    assert _TARGET.fullmatch(request.target), request.target
    if request.target.startswith("/"):  # origin-form: path and query are the target, split
        assert request.path + ("?" + request.query if "?" in request.target else "") == request.target
    elif request.target[:8].lower().startswith(("http://", "https://")):  # absolute-form: its path
        url = urlsplit(request.target)
        assert (request.path, request.query) == (url.path or "/", url.query), request.target
    assert request.version in ("1.0", "1.1"), request.version
    assert type(request.keep_alive) is bool
    names = [name.lower() for name, _ in request.headers]
    for name, value in request.headers:
        assert _TOKEN.fullmatch(name), name
        assert not _BAD_VALUE.search(value), value
        assert value == value.strip(b" \t"), value
    if request.version == "1.1":
        assert names.count(b"host") == 1, names
    te = request.headers.get("transfer-encoding")
    cl = request.headers.get("content-length")
    if te is not None:
        assert cl is None and te.lower() == b"chunked" and request.version == "1.1", (te, cl)
        assert len(request.body) <= LIMITS.max_body
    elif cl is not None:
        assert names.count(b"content-length") == 1 and len(request.body) == int(cl), (cl, len(request.body))
    else:
        assert request.body == b""


def run(chunks: list[bytes]) -> tuple[list[tuple], tuple[int, bool] | None, int]:
    """Feed chunks as a backend does; (requests, the closing error or None, buffered).

    A recoverable error (close=False) goes in the list, where a backend sends its answer,
    and parsing goes on with feed(b"").
    """
    parser = RequestParser(LIMITS)
    got: list[tuple] = []

    def take(requests: list[Request]) -> None:
        for request in requests:
            check_request(request)
            got.append(fields_of(request))

    for chunk in chunks:
        data = chunk
        while True:
            try:
                take(parser.feed(data))
                break
            except ProtocolError as error:
                check_error(error)
                take(error.requests)
                if error.close:
                    check_stays_failed(parser, error)
                    return got, (error.status, error.close), -1
                got.append(("error", error.status, error.reason))
                data = b""
    buffered = parser.buffered
    assert buffered >= 0
    if buffered == 0:  # between requests: the next one is parsed on its own
        try:
            probe = [r.target for r in parser.feed(PROBE)]
        except ProtocolError as error:
            raise AssertionError(f"buffered is 0 inside a request: a GET after it got {error.status}") from error
        assert probe == ["/probe"], f"buffered is 0 inside a request: a GET after it parsed as {probe}"
    return got, None, buffered


def check_stays_failed(parser: RequestParser, error: ProtocolError) -> None:
    for more in (b"", PROBE):
        try:
            parser.feed(more)
        except ProtocolError as again:
            check_error(again)
            assert (again.status, again.close, again.requests) == (error.status, True, []), again
        else:
            raise AssertionError(f"feed({more!r}) after a closing {error.status} did not raise")


def check_stream(stream: bytes, cut: int) -> None:
    """Every invariant on one input, whole, cut in two at `cut`, and byte by byte."""
    whole = run([stream])
    cut %= len(stream) + 1
    assert run([stream[:cut], stream[cut:]]) == whole, f"cut at {cut} changes the outcome"
    if len(stream) <= BYTEWISE_MAX:
        assert run([stream[i : i + 1] for i in range(len(stream))]) == whole, "byte by byte changes the outcome"


def fuzz_one(data: bytes) -> None:
    """The fuzz entry point: the first two bytes pick where to cut, the rest is the input."""
    cut = int.from_bytes(data[:2], "big")
    check_stream(data[2:], cut)


def seed_inputs() -> list[bytes]:
    """The corpus of tests/fuzz_corpus.py as fuzz_one inputs, each cut in its middle."""
    sys.path.insert(0, str(ROOT / "tests"))
    from fuzz_corpus import CORPUS

    return [(len(raw) // 2 % 65536).to_bytes(2, "big") + raw for raw in CORPUS.values()]


def hypothesis_loop(seconds: float) -> int:
    """Runs of a few hundred hypothesis examples, each with a fresh seed, until time is up."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    sys.path.insert(0, str(ROOT / "tests"))
    from fuzz_corpus import payloads

    count = 0

    @settings(max_examples=500, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.integers(0, 65535), payloads())
    def one(cut: int, stream: bytes) -> None:
        nonlocal count
        count += 1
        fuzz_one(cut.to_bytes(2, "big") + stream)

    for seed in seed_inputs():
        fuzz_one(seed)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        one()  # raises, with the falsifying example printed, on the first broken invariant
    print(f"{count} hypothesis examples in {seconds:g} s: no invariant broken")
    return 0


def main(argv: list[str]) -> int:
    seconds = 30.0
    if "--seconds" in argv:  # with atheris, the same as libFuzzer's -max_total_time
        at = argv.index("--seconds")
        seconds = float(argv[at + 1])
        argv = [*argv[:at], *argv[at + 2 :], f"-max_total_time={int(seconds)}"]
    if atheris is None:
        print(f"atheris is not installed (pip install atheris): running a hypothesis loop for {seconds:g} s instead")
        return hypothesis_loop(seconds)
    import tempfile

    args = list(argv)
    if not any(not a.startswith("-") for a in args[1:]):  # no corpus directory given: seed one
        seeds = Path(tempfile.mkdtemp(prefix="fuzz_parser_"))
        for i, raw in enumerate(seed_inputs()):
            (seeds / f"seed{i:03d}").write_bytes(raw)
        print(f"corpus directory (seeded from tests/fuzz_corpus.py, grown by libFuzzer): {seeds}")
        args.append(str(seeds))
    atheris.Setup(args, fuzz_one)
    atheris.Fuzz()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
