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
HOST = re.compile(
    rb"(?:\[(?:[0-9A-Fa-f:.]+|[vV][0-9A-Fa-f]+\.[A-Za-z0-9\-._~!$&'()*+,;=:]+)\]"
    rb"|(?:[A-Za-z0-9\-._~!$&'()*+,;=]|%[0-9A-Fa-f]{2})*)(?::[0-9]*)?"
)
# Hosts already checked: clients repeat one Host on every request, so the common case is a
# set lookup. Bounded, so a client cannot grow it with distinct values.
HOSTS_SEEN: set[bytes] = set()
MAX_HOSTS_SEEN = 64
# absolute-form (RFC 9112 3.2.2): scheme "://" authority, then the path and query, if any.
ABSOLUTE_FORM = re.compile(r"[Hh][Tt][Tt][Pp][Ss]?://([^/?#]*)([^#]*)")


def other_form(target: str, *, close: bool) -> tuple[str, str]:
    """(path, query) of a request-target that does not start with "/".

    absolute-form is served by its path: a server MUST accept it (RFC 9112 3.2.2), and its
    authority stands in for Host, so it must be a valid host too. Anything else
    (asterisk-form "*", authority-form) keeps the target as its path: no route has one.
    """
    match = ABSOLUTE_FORM.fullmatch(target)
    if match is None:
        path, _, query = target.partition("?")
        return path, query
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

