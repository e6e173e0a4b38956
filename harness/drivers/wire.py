"""What every load driver puts on the wire: the requests (RequestSpec), the address to
connect to and the request bytes.

Plain code with no gevent, so the Locust driver, the wrk driver, the orchestrator and a
scenario all use the same: a request is the same bytes whichever tool sends it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

_TOKEN_CHARS = frozenset("!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")


class SpecError(ValueError):
    """A driver spec that cannot be run; the message names the key and the reason."""


@dataclass(frozen=True, slots=True)
class RequestSpec:
    """One entry of the request mix, as it goes on the wire; `weight` is its relative share.

    The one request type of the harness: a scenario file's [[request]] tables become these
    (harness.scenario adds its own, stricter rules), and a driver reads them from its spec.
    Built valid or not at all: SpecError names the field and the reason."""

    method: str = "GET"
    path: str = "/"
    body: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)  # pairs are taken too, in order
    weight: int = 1

    def __post_init__(self) -> None:
        if isinstance(self.headers, tuple):
            object.__setattr__(self, "headers", dict(self.headers))
        problem = _request_problem(self)
        if problem:
            raise SpecError(problem)


def _request_problem(request: RequestSpec) -> str | None:
    """What makes a request unsendable, as "field must ..."; None if nothing does."""
    method, path, headers, weight = request.method, request.path, request.headers, request.weight
    if not isinstance(method, str) or not is_token(method):
        return f"method must be an HTTP method token, got {method!r}"
    if not isinstance(path, str) or not (path.startswith("/") or path == "*") or not _is_target(path):
        return f"path must be '/' then printable ASCII, no spaces; got {path!r}"
    if not isinstance(request.body, str):
        return "body must be a string"
    if not isinstance(headers, Mapping) or not all(isinstance(k, str) and is_token(k)
                                                   and isinstance(v, str) and _is_field_value(v)
                                                   for k, v in headers.items()):
        return "headers must map header names to single-line Latin-1 strings"
    if not isinstance(weight, int) or isinstance(weight, bool) or weight < 0:
        return f"weight must be an int >= 0, got {weight!r}"
    return None


def is_token(text: str) -> bool:
    """An RFC 9110 token (section 5.6.2): what a method and a header name are."""
    return bool(text) and set(text) <= _TOKEN_CHARS


def _is_target(path: str) -> bool:
    return path.isascii() and path.isprintable() and " " not in path


def _is_field_value(value: str) -> bool:
    return all(c == "\t" or " " <= c <= "~" or "\x80" <= c <= "\xff" for c in value)


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
