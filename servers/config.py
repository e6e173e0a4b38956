"""ServerConfig: every setting a backend reads, with the defaults the CLI shows."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from servers.http import Limits


# selectors-pool: the worker pool's size without --threads (gunicorn's gthread peer runs 8 too).
POOL_THREADS = 8
# Stop reading from a client whose answers pile up unread beyond this (backpressure), and
# make no more of the answers it pipelined until it has read them (the event loops; the pool
# sends what it made before making more).
MAX_PENDING_OUTPUT = 1024 * 1024
# Once a client falls behind (a send not taken whole), the rest of its answer must be taken
# within the request timeout plus a second per this many bytes (512 kbit/s): a 64 MiB /bytes
# may take 17 minutes, but a client reading a few KiB every few seconds is dropped rather than
# held for a day. nginx bounds only the time between two writes (send_timeout), which such a
# client meets.
MIN_SEND_RATE = 64 * 1024


@dataclass(frozen=True, slots=True)
class ServerConfig:
    # 127.0.0.1 is safe by default; a container must bind 0.0.0.0 to be reachable from
    # the host, because inside it 127.0.0.1 is the container's own loopback.
    host: str = "127.0.0.1"
    port: int = 8000  # 0 asks the kernel for any free port; the startup line says which
    backlog: int = 1024  # the kernel caps this at net.core.somaxconn
    # Time to receive a complete request (head and body), from its first byte, or from
    # accept for a new connection. Bounds the iterative server's stall on an idle socket.
    request_timeout: float = 10.0
    keepalive_timeout: float = 5.0  # idle time allowed between requests
    min_send_rate: int = MIN_SEND_RATE  # bytes/s an answer must be taken at, after the request timeout
    max_connections: int | None = None  # beyond this, new connections get 503 and close
    access_log: bool = False  # one line per request on stderr
    threads: int | None = None  # threaded: a bounded pool of N threads instead of one per connection;
    # selectors-pool: its worker pool (None: POOL_THREADS)
    workers: int | None = None  # forking: N pre-forked processes instead of one per connection
    reuseport: bool = False  # forking --workers: a listener per worker (SO_REUSEPORT), the kernel spreads connections
    max_children: int = 64  # forking: connections served at once, one child each
    interpreters: int | None = None  # interpreters: sub-interpreters (None: one per CPU the server may use)
    loop: str = "asyncio"  # asyncio: "asyncio" or "uvloop"
    docroot: Path | None = None  # /static; None means the small docroot shipped in the package
    limits: Limits = field(default_factory=Limits)
    shutdown_grace: float = 5.0  # on SIGTERM, how long in-flight requests may take to finish
