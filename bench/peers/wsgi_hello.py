"""The gunicorn peer: a minimal WSGI app answering every request with "Hello, World!"."""

from collections.abc import Callable, Iterable

BODY = b"Hello, World!"
HEADERS = [("Content-Type", "text/plain"), ("Content-Length", str(len(BODY)))]


def app(environ: dict, start_response: Callable) -> Iterable[bytes]:
    start_response("200 OK", HEADERS)
    return [BODY]
