"""What every load driver puts on the wire: the address to connect to and the request bytes.

Plain functions with no gevent, so the Locust driver, the wrk driver and the launcher all
call the same code: a request is the same bytes whichever tool sends it.
"""

from __future__ import annotations

from harness.drivers.spec import RequestSpec

# As a destination, "any address" means this host.
_THIS_HOST = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


def destination_host(host: str) -> str:
    """The address to connect to for `host` (a bind address or a target), unbracketed."""
    host = host.strip("[]")
    return _THIS_HOST.get(host, host)


def host_header(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


def build_request(entry: RequestSpec, *, host: str, keep_alive: bool) -> bytes:
    """The whole request as one buffer: one send per request, nothing for Nagle to hold."""
    body = entry.body.encode()
    headers = {"host": ("Host", host)}
    if body or entry.method in ("POST", "PUT", "PATCH"):
        headers["content-length"] = ("Content-Length", str(len(body)))
    if not keep_alive:
        headers["connection"] = ("Connection", "close")
    headers.update((name.lower(), (name, value)) for name, value in entry.headers.items())
    lines = [f"{entry.method} {entry.path} HTTP/1.1", *(f"{n}: {v}" for n, v in headers.values())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
