"""The request grammar of RFC 9110, 9112 and 3986 off the parser's hot path, as regular
expressions and small checks: a Host, the forms of a request-target, list tokens.

The parser (servers/http.py) applies them; keeping the ABNF here lets a reader check each
rule against its RFC without the parser's bookkeeping in the way. The request line and
field line patterns stay in http.py beside the code that runs them on every request:
measured, the same patterns imported from here made feed() 7% slower (CPython 3.11).
"""

from __future__ import annotations

import re

from servers._errors import ProtocolError

TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
# Host = uri-host [ ":" port ] (RFC 9110 7.2, RFC 3986 3.2.2): an IP literal in brackets, or
# a reg-name / IPv4 of unreserved, pct-encoded and sub-delims characters. No whitespace,
# no "@" (userinfo), no "/": a repeated Host, joined with ", ", fails here too.
URI_HOST = (rb"(?:\[(?:[0-9A-Fa-f:.]+|[vV][0-9A-Fa-f]+\.[A-Za-z0-9\-._~!$&'()*+,;=:]+)\]"
            rb"|(?:[A-Za-z0-9\-._~!$&'()*+,;=]|%[0-9A-Fa-f]{2})*)")
HOST = re.compile(URI_HOST + rb"(?::[0-9]*)?")
# Hosts already checked: clients repeat one Host on every request, so the common case is a
# set lookup. Bounded, so a client cannot grow it with distinct values.
HOSTS_SEEN: set[bytes] = set()
MAX_HOSTS_SEEN = 64
# absolute-form (RFC 9112 3.2.2): scheme "://" authority, then the path and query, if any.
ABSOLUTE_FORM = re.compile(r"[Hh][Tt][Tt][Pp][Ss]?://([^/?#]*)([^#]*)")
# authority-form (RFC 9112 3.2.3): uri-host ":" port, a host and a port both present
# (RFC 9110 9.3.6: "only the host and port number of the tunnel destination").
AUTHORITY_FORM = re.compile((rb"(?!:)" + URI_HOST + rb":[0-9]+").decode("ascii"))


def other_form(target: str, method: bytes, *, close: bool) -> tuple[str, str]:
    """(path, query) of a request-target that does not start with "/", which must be one of
    the other three forms of RFC 9112 3.2, each only where that form is allowed; anything
    else is an invalid request-line, answered 400 as RFC 9112 3 says it SHOULD be.

    absolute-form is served by its path: a server MUST accept it (RFC 9112 3.2.2), and its
    authority stands in for Host, so it must be a valid host too. authority-form is only for
    CONNECT (RFC 9112 3.2.3), asterisk-form only for a server-wide OPTIONS (RFC 9112 3.2.4):
    each keeps the target as its path (no route has one); on another method it is refused.
    A well-formed absolute-URI of another scheme ("urn:x", "ftp://h/") is refused too: on an
    origin server it could be a 421 (RFC 9110 7.4), but its syntax cannot be told from an
    authority-form on the wrong method ("localhost:8080"), which is an invalid request-line.
    """
    if target == "*":
        if method != b"OPTIONS":
            raise ProtocolError(400, "asterisk-form target is only for OPTIONS", close=close)
        return target, ""
    match = ABSOLUTE_FORM.fullmatch(target)
    if match is None:
        if AUTHORITY_FORM.fullmatch(target) is None:
            raise ProtocolError(400, "Invalid request target", close=close)
        if method != b"CONNECT":
            raise ProtocolError(400, "authority-form target is only for CONNECT", close=close)
        return target, ""
    authority, rest = match.groups()
    # An http(s) URI with an empty host MUST be rejected (RFC 9110 4.2.1 and 4.2.2).
    if authority[:1] in ("", ":") or HOST.fullmatch(authority.encode("ascii")) is None:
        raise ProtocolError(400, "Invalid authority in absolute-form target", close=close)
    path, _, query = rest.partition("?")
    return path or "/", query


def valid_host(host: bytes) -> bool:
    """Host within the grammar; a valid one is remembered, so the next check is HOSTS_SEEN's."""
    if HOST.fullmatch(host) is None:
        return False
    if len(HOSTS_SEEN) < MAX_HOSTS_SEEN:
        HOSTS_SEEN.add(host)
    return True


def expects_continue(index: dict[bytes, bytes]) -> bool:
    expect = index.get(b"expect")
    return expect is not None and expect.lower() == b"100-continue"


def has_token(value: bytes, token: bytes) -> bool:
    """Is `token` one of the comma-separated, case-insensitive tokens in `value`?"""
    value = value.lower()
    if value == token:
        return True
    return token in value and any(part.strip() == token for part in value.split(b","))

