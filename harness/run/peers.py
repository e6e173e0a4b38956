"""Ready-made peers: real servers serving the same app (servers/adapters.py), each a `cmd:`
backend under a short name (`--backend uvicorn`), available when installed (`pip install
'concurbench[peers]'`)."""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class Peer:
    """An external server under a short name: its command and the module it needs."""

    command: str  # {python}, {host} and {port} are filled in at launch
    needs: str | None  # the module that must be importable
    description: str


PEERS: dict[str, Peer] = {
    "uvicorn": Peer("{python} -m uvicorn --host {host} --port {port} --http httptools --loop asyncio "
                    "--no-access-log --log-level warning servers.adapters:asgi_app", "uvicorn",
                    "uvicorn (httptools parser, asyncio loop), one process"),
    "gunicorn-sync": Peer("{python} -m gunicorn -k sync -w 1 -b {host}:{port} --log-level warning "
                          "servers.adapters:wsgi_app", "gunicorn", "gunicorn sync worker, one process"),
    "gunicorn-gthread": Peer("{python} -m gunicorn -k gthread -w 1 --threads 8 -b {host}:{port} "
                             "--log-level warning servers.adapters:wsgi_app", "gunicorn",
                             "gunicorn gthread worker, one process, 8 threads"),
    # Rust I/O and HTTP parsing, Python only for the app: what keeping those in Python costs.
    # One worker, one runtime thread, as our servers and uvicorn get one process.
    "granian": Peer("{python} -m granian --interface asgi --host {host} --port {port} --workers 1 "
                    "--runtime-threads 1 --loop asyncio --http 1 --no-ws --log-level warning "
                    "servers.adapters:asgi_app", "granian",
                    "granian ASGI (Rust I/O and parser, asyncio loop), one worker"),
    "granian-wsgi": Peer("{python} -m granian --interface wsgi --host {host} --port {port} --workers 1 "
                         "--runtime-threads 1 --blocking-threads 8 --http 1 --no-ws --log-level warning "
                         "servers.adapters:wsgi_app", "granian",
                         "granian WSGI (Rust I/O and parser), one worker, 8 Python threads"),
    "http.server": Peer("{python} -m http.server --bind {host} {port}", None,
                        "the stdlib's http.server (serves a directory listing at /; GET only)"),
}


def available(name: str) -> bool:
    needs = PEERS[name].needs
    return needs is None or importlib.util.find_spec(needs) is not None


def peer_command(name: str) -> str:
    """The `cmd:` backend for a peer name."""
    return "cmd:" + PEERS[name].command.replace("{python}", sys.executable)
