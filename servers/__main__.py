"""python -m servers --backend NAME: run one backend in the foreground."""

from __future__ import annotations

import argparse
import errno
import sys
from pathlib import Path

from servers._help import DefaultsOnce
from servers.backends import BACKENDS, load_backend
from servers.descriptors import raise_fd_limit
from servers.config import MAX_PENDING_OUTPUT, POOL_THREADS, ServerConfig
from servers.http import Limits

# Fewer descriptors than this after raising the soft limit to the hard one: say so at start.
FD_LIMIT_WARNING = 4096
BIND_ERRNOS = {errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES, errno.EPERM}


def positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def port_number(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be 0..65535, got {text}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text}")
    return value


def build_parser(prog: str = "python -m servers") -> argparse.ArgumentParser:
    defaults = ServerConfig()
    limits = Limits()
    parser = argparse.ArgumentParser(
        prog=prog,
        allow_abbrev=False,  # a flag is named in full: a scenario's args are checked by name (--docroot)
        description="Serve the concurbench app with one concurrency model.",
        formatter_class=DefaultsOnce,
        epilog="Work per connection is bounded: of the requests one read completes, at most "
               f"{limits.max_pipelined} are answered (then 503 and close); a pipelined request is not started "
               "past the request timeout (the connection closes instead); and the event loops make no more "
               f"answers while {MAX_PENDING_OUTPUT // 1024 // 1024} MiB of output is unread; an answer must be taken at "
               "--min-send-rate once the request timeout has passed, and /bytes is made in pieces as it is sent. "
               "Inside a container, use --host 0.0.0.0: there 127.0.0.1 is the container's own loopback, "
               "unreachable from the host.",
    )
    parser.add_argument("--list", action="store_true", help="list the backends and exit")
    parser.add_argument("--backend", choices=list(BACKENDS), metavar="NAME",
                        help="concurrency model: " + ", ".join(BACKENDS))
    parser.add_argument("--host", default=defaults.host, help="address to bind")
    parser.add_argument("--port", type=port_number, default=defaults.port, help="port to bind; 0 means any free port")
    parser.add_argument("--backlog", type=positive_int, default=defaults.backlog, help="listen backlog")
    parser.add_argument("--request-timeout", type=positive_float, default=defaults.request_timeout,
                        help="seconds to receive a whole request (408 if partly received)")
    parser.add_argument("--keepalive-timeout", type=positive_float, default=defaults.keepalive_timeout,
                        help="idle seconds allowed between requests on a connection")
    parser.add_argument("--min-send-rate", type=positive_int, default=defaults.min_send_rate, metavar="BYTES",
                        help="bytes a second a client must take an answer at once it falls behind (a send not taken "
                             "whole), after a grace of the request timeout; a slower reader is reset (default: %(default)s, "
                             "512 kbit/s: lower it for clients on slow links)")
    parser.add_argument("--max-connections", type=positive_int, default=None,
                        help="connections served at once; beyond it new ones get 503 and close (default: no limit)")
    parser.add_argument("--access-log", action="store_true", help="log each request to stderr")
    parser.add_argument("--threads", type=positive_int, default=None,
                        help="threaded (and gevent: of greenlets; interpreters: in each): a bounded pool of N threads; "
                             "selectors-pool: the pool that answers requests "
                             f"(default: a thread per connection; selectors-pool: {POOL_THREADS})")
    parser.add_argument("--workers", type=positive_int, default=None,
                        help="forking: N pre-forked worker processes (default: a process per connection)")
    parser.add_argument("--reuseport", action="store_true",
                        help="forking --workers N: each worker opens its own listener with SO_REUSEPORT and the "
                             "kernel spreads connections between them (default: all accept on one shared socket)")
    parser.add_argument("--max-children", type=positive_int, default=defaults.max_children,
                        help="forking: children at once; further connections wait in the backlog "
                             "(with --max-connections, they get a 503 instead)")
    parser.add_argument("--interpreters", type=positive_int, default=None,
                        help="interpreters: N sub-interpreters, each with its own GIL, each serving a thread per "
                             "connection (default: one per CPU the server may use)")
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default=defaults.loop, help="asyncio: event loop")
    parser.add_argument("--docroot", type=Path, default=None, help="directory served under /static/ (default: the bundled one)")
    parser.add_argument("--max-body", type=positive_int, default=limits.max_body, help="largest request body in bytes (413 above)")
    parser.add_argument("--shutdown-grace", type=positive_float, default=defaults.shutdown_grace,
                        help="on SIGTERM, seconds in-flight requests may take to finish")
    return parser


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    return ServerConfig(
        host=args.host, port=args.port, backlog=args.backlog, request_timeout=args.request_timeout,
        keepalive_timeout=args.keepalive_timeout, min_send_rate=args.min_send_rate, max_connections=args.max_connections,
        access_log=args.access_log, threads=args.threads, workers=args.workers, reuseport=args.reuseport,
        max_children=args.max_children, interpreters=args.interpreters, loop=args.loop, docroot=args.docroot,
        limits=Limits(max_body=args.max_body), shutdown_grace=args.shutdown_grace,
    )


def list_backends() -> str:
    width = max(map(len, BACKENDS))
    return "\n".join(f"{name:<{width}}  {backend.description}" for name, backend in BACKENDS.items())


def main(argv: list[str] | None = None, prog: str = "python -m servers") -> int:
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    if args.list:
        print(list_backends())
        return 0
    if args.backend is None:
        parser.error(f"--backend is required; choose from: {', '.join(BACKENDS)}")
    if args.reuseport and (args.backend != "forking" or args.workers is None):
        parser.error("--reuseport is for pre-fork workers: use it with --backend forking --workers N")
    if args.docroot is not None and not args.docroot.is_dir():
        parser.error(f"--docroot {args.docroot} is not a directory")
    config = config_from_args(args)
    soft, hard = raise_fd_limit()
    if soft < FD_LIMIT_WARNING:
        sys.stderr.write(f"concurbench-server: warning: only {soft} file descriptors (hard limit {hard}); "
                         f"connections past that fail with EMFILE (raise it with ulimit -Hn as root)\n")
    try:
        server = load_backend(args.backend)(config)
    except ImportError as error:  # --loop uvloop without uvloop installed, for one
        sys.stderr.write(f"error: {error}\n")
        return 2
    try:
        server.serve()
    except OSError as error:  # bind failures: address in use, permission denied; or worse
        where = f"cannot serve on {config.host}:{config.port}" if error.errno in BIND_ERRNOS else "server failed"
        sys.stderr.write(f"error: {where}: {error.strerror or error}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
