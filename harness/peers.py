"""Ready-made external backends: real servers serving the same app (servers/adapters.py).

Each is a `cmd:` backend under a short name, available when its server is installed
(`pip install 'concurbench[peers]'`). Any other server works as `cmd:COMMAND with {port}`,
or as a named entry in a scenario's [backends] table.
"""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class Peer:
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
    "http.server": Peer("{python} -m http.server --bind {host} {port}", None,
                        "the stdlib's http.server (serves a directory listing at /; GET only)"),
}


def available(name: str) -> bool:
    needs = PEERS[name].needs
    return needs is None or importlib.util.find_spec(needs) is not None


def peer_command(name: str) -> str:
    """The `cmd:` backend for a peer name."""
    return "cmd:" + PEERS[name].command.replace("{python}", sys.executable)
