"""The one application every backend serves: a route table from Request to Reply.

The app is pure: it never sleeps and never touches a socket. A wait is data on the Reply
(`delay`), so each backend waits in its own model: time.sleep in a thread or process, a
timer in the selectors loop, call_later in asyncio. Only /cpu and /cpu-shared burn CPU
inline, because that it blocks an event loop is the lesson.

| route | does |
|---|---|
| GET / | 200 Hello, World! |
| GET /sleep?ms=N | 200 after N ms, waited by the backend in its own model |
| GET /cpu?ms=N | about N ms of pure-Python work on the handler's own (private) state |
| GET /cpu-shared?ms=N | the same loop, reading a dict shared by every thread on each iteration |
| GET /bytes?size=N | an N-byte body |
| POST /echo | the request body back, as application/octet-stream |
| GET /static/PATH | a file under the docroot |
| GET /runtime | JSON: the answering interpreter's version, build and GIL state, now |
"""

from __future__ import annotations

import json
import mimetypes
import os
import platform
import sys
import sysconfig
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

from servers.http import Pieces, Request, Response

MAX_MS = 60_000  # /sleep and /cpu: a minute is longer than any sensible benchmark step
MAX_SIZE = 64 * 1024 * 1024  # /bytes: 64 MiB exercises partial sends without exhausting RAM
# /bytes above this is made in pieces of it as it is sent: a slow reader of 64 MiB holds one
# piece of the server's memory, not 64 MiB. At or below it, one buffer with the head.
PIECE_SIZE = 64 * 1024
_PIECE = b"x" * PIECE_SIZE
DEFAULT_DOCROOT = Path(__file__).parent / "docroot"


@dataclass(frozen=True, slots=True)
class Reply(Response):
    delay: float = 0.0  # seconds the backend waits, in its own model, before sending


def _text(status: int, text: str, *, headers: tuple[tuple[str, str], ...] = ()) -> Reply:
    return Reply(status, text.encode() + b"\n", headers=headers)


HELLO = Reply(200, b"Hello, World!")
ECHO_HEADERS = (("X-Content-Type-Options", "nosniff"),)
NOT_FOUND = _text(404, "Not Found")


class App:
    """Routes requests to handlers; HEAD is served wherever GET is."""

    def __init__(self, *, docroot: Path | None = None) -> None:
        self.docroot = (docroot or DEFAULT_DOCROOT).resolve()
        # path -> (allowed methods, handler); /static/ is matched by prefix. /cpu-shared is a
        # route of its own rather than a flag on /cpu: a series of mix = "each", a chart line
        # and a finding each name a request by its path.
        self._routes: dict[str, tuple[frozenset[str], Callable[[Request], Reply]]] = {
            "/": (frozenset({"GET", "HEAD"}), lambda request: HELLO),
            "/sleep": (frozenset({"GET", "HEAD"}), self._sleep),
            "/cpu": (frozenset({"GET", "HEAD"}), self._cpu),
            "/cpu-shared": (frozenset({"GET", "HEAD"}), self._cpu_shared),
            "/bytes": (frozenset({"GET", "HEAD"}), self._bytes),
            "/echo": (frozenset({"POST"}), self._echo),
            "/runtime": (frozenset({"GET", "HEAD"}), self._runtime),
        }
        self._static = (frozenset({"GET", "HEAD"}), self._static_file)
        calibrate_cpu()  # once per process, at start-up rather than on the first /cpu

    def handle(self, request: Request) -> Reply:
        route = self._routes.get(request.path)
        if route is None:
            if not request.path.startswith("/static/"):
                return NOT_FOUND
            route = self._static
        methods, handler = route
        if request.method not in methods:
            allow = ", ".join(sorted(methods))
            return _text(405, "Method Not Allowed", headers=(("Allow", allow),))
        return handler(request)

    def _sleep(self, request: Request) -> Reply:
        ms = _int_param(request.query, "ms", MAX_MS)
        if isinstance(ms, Reply):
            return ms
        return Reply(200, b"slept %d ms\n" % ms, delay=ms / 1000)

    def _cpu(self, request: Request) -> Reply:
        return _burned(request, burn_cpu, b"burned %d ms (%d)\n")

    def _cpu_shared(self, request: Request) -> Reply:
        return _burned(request, burn_cpu_shared, b"burned %d ms reading shared state (%d)\n")

    def _runtime(self, request: Request) -> Reply:
        return Reply(200, json.dumps(runtime()).encode() + b"\n", content_type="application/json")

    def _bytes(self, request: Request) -> Reply:
        size = _int_param(request.query, "size", MAX_SIZE)
        if isinstance(size, Reply):
            return size
        if size <= PIECE_SIZE:
            return Reply(200, _PIECE[:size], content_type="application/octet-stream")
        return Reply(200, Pieces(size, lambda: _pieces_of_x(size)), content_type="application/octet-stream")

    def _echo(self, request: Request) -> Reply:
        # Never the client's own Content-Type: a text/html body would come back as a page of
        # this origin, script and all. Bytes, and a browser told not to guess otherwise.
        return Reply(200, request.body, content_type="application/octet-stream", headers=ECHO_HEADERS)

    def _static_file(self, request: Request) -> Reply:
        path = resolve_static(self.docroot, request.path[len("/static/") :])
        if path is None:
            return NOT_FOUND
        try:
            body = path.read_bytes()
        except OSError:
            return NOT_FOUND
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return Reply(200, body, content_type=content_type)


def _pieces_of_x(size: int) -> Iterator[bytes]:
    """`size` bytes of b"x", in pieces of PIECE_SIZE: the one piece, over and over."""
    whole, rest = divmod(size, PIECE_SIZE)
    for _ in range(whole):
        yield _PIECE
    if rest:
        yield _PIECE[:rest]


def resolve_static(docroot: Path, raw: str) -> Path | None:
    """The file under `docroot` named by the raw URL path `raw`, or None if it escapes.

    Refused: '..' segments (also percent-encoded), an encoded '/', absolute paths, NUL,
    and any path whose real location, after symlinks, is outside the docroot.
    """
    if "%2f" in raw.lower() or "%5c" in raw.lower():
        return None
    try:
        decoded = unquote(raw, errors="strict") if "%" in raw else raw
    except UnicodeDecodeError:
        return None
    if not decoded or decoded.startswith("/") or decoded.endswith("/") or "\\" in decoded or "\x00" in decoded:
        return None
    if any(part in ("..", ".") for part in decoded.split("/")):
        return None
    try:  # a name too long for the OS (ENAMETOOLONG), or unreadable: not a file we serve
        candidate = (docroot / decoded).resolve()
        if candidate != docroot and docroot not in candidate.parents:
            return None
        return candidate if candidate.is_file() else None
    except OSError:
        return None


def _burned(request: Request, burn: Callable[[int], int], text: bytes) -> Reply:
    """/cpu and /cpu-shared: `burn` ms=N of work, then say so with its checksum."""
    ms = _int_param(request.query, "ms", MAX_MS)
    if isinstance(ms, Reply):
        return ms
    return Reply(200, text % (ms, burn(ms)))


def _int_param(query: str, name: str, maximum: int) -> int | Reply:
    """The query parameter `name` as an int in 0..maximum, or a 400 Reply saying why."""
    for pair in query.split("&"):
        key, _, value = pair.partition("=")
        if key == name:
            if not (value.isascii() and value.isdigit()) or len(value) > 12 or int(value) > maximum:
                return _text(400, f"{name} must be an integer from 0 to {maximum}")
            return int(value)
    return _text(400, f"missing query parameter {name}")


# /cpu: pure-Python work calibrated once per process so that burn_cpu(ms) takes about ms.
# The loop counts iterations instead of reading the clock, so the work is the same in
# every model: a thread preempted by the GIL does not finish early.


# Every object the loop touches is the thread's own: on a free-threaded 3.13, each use of a
# shared object that is not immortal (a constant such as 0xFFFFFFFF, or a module global) writes
# its reference count, and two threads spinning on one shared mask ran slower than one. So the
# mask is made anew by each call (int.from_bytes; a literal would be one shared constant), and
# 31 is a small int, immortal everywhere. 3.13t makes the constants of code loaded from a .pyc
# immortal, but only in the main interpreter: this keeps /cpu private work in every model.
_MASK_BYTES = b"\xff\xff\xff\xff"  # 2**32 - 1


def _spin(iterations: int) -> int:
    acc, mask = 0, int.from_bytes(_MASK_BYTES)
    for i in range(iterations):
        acc = (acc * 31 + i) & mask
    return acc


def _calibrate() -> float:
    """Iterations of _spin per millisecond on this machine, best of a few short runs."""
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        _spin(20_000)
        best = min(best, time.perf_counter() - start)
    return 20_000 / (best * 1000)


_ITERATIONS_PER_MS: float | None = None
CPU_PIN = "CONCURBENCH_CPU_ITERS_PER_MS"  # the environment variable that pins the calibration


def calibrate_cpu() -> float:
    """Iterations per ms, measured once per process (CONCURBENCH_CPU_ITERS_PER_MS pins it)."""
    global _ITERATIONS_PER_MS
    if _ITERATIONS_PER_MS is None:
        _ITERATIONS_PER_MS = float(os.environ.get(CPU_PIN) or _calibrate())
    return _ITERATIONS_PER_MS


def burn_cpu(ms: int) -> int:
    """About `ms` milliseconds of pure-Python CPU work; returns a checksum."""
    return _spin(int(ms * calibrate_cpu()))


# /cpu-shared: the loop of /cpu, plus one read of module-level state on each iteration, as code
# that consults a settings dict, a registry or a cache in a hot loop does. Under the GIL the
# read costs a little. On a free-threaded build (3.13t) every thread of the process reads the
# same objects, and reading one takes a reference: an atomic increment and decrement of the
# object's shared reference count, so the cache line holding it moves between CPUs on every
# iteration (reference-count contention). Private work scales across threads; this may not.
# Processes and sub-interpreters each have their own copy: nothing is shared between them.
# Two choices keep that contention real: the dict is read through the module global on each
# iteration (the dict's own count is touched too), and its values are ints made at run time,
# above the small ints that CPython makes immortal (an immortal object's count is never
# written, so reading it contends on nothing).
SHARED_KEYS = 16  # a small table: every thread reads the same few objects
SHARED_STATE: dict[int, int] = {key: 1_000 + key for key in range(SHARED_KEYS)}  # computed: not constants


def _spin_shared(iterations: int) -> int:
    acc, mask = 0, int.from_bytes(_MASK_BYTES)
    for i in range(iterations):
        acc = (acc * 31 + i + SHARED_STATE[i & 15]) & mask  # 15: SHARED_KEYS - 1, a literal (no global read)
    return acc


def burn_cpu_shared(ms: int) -> int:
    """/cpu's iteration count for `ms` (the same calibration), each iteration also reading
    SHARED_STATE; returns a checksum. Slower than burn_cpu(ms) even alone (one more read per
    iteration): compare it with its own figures, on one core and on several."""
    return _spin_shared(int(ms * calibrate_cpu()))


# /runtime: what the interpreter answering requests is, asked while it serves. The GIL state is
# read at each request, not at start-up: on a free-threaded build, importing an extension that
# does not declare itself free-threading safe turns the GIL back on, silently, for the process.
_PYTHON = platform.python_version()
_FREE_THREADED = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))


def runtime() -> dict[str, object]:
    """{"python": "3.13.5", "free_threaded": built with --disable-gil, "gil_enabled": now}."""
    is_gil_enabled = getattr(sys, "_is_gil_enabled", None)  # 3.13+; before, always on
    return {"python": _PYTHON, "free_threaded": _FREE_THREADED,
            "gil_enabled": bool(is_gil_enabled()) if is_gil_enabled else True}
