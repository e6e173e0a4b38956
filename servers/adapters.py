"""The one app behind ASGI and WSGI, so real servers (uvicorn, gunicorn) serve it too.

With these, `--backend uvicorn` or `--backend gunicorn-gthread` answers the same routes
with the same app as our own models, and lands in the same charts. A Reply's delay is
waited in the peer's own model: asyncio.sleep under ASGI, time.sleep in a WSGI worker.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from typing import Any

from servers.app import App, Reply
from servers.http import MAX_BODY, Headers, Request

_app: App | None = None
# A peer's own server may not bound a body: the adapter holds it to our parser's limit.
TOO_LARGE = Reply(413, b"413 Request body too large\n")


def _the_app() -> App:
    global _app
    if _app is None:
        _app = App()
    return _app


def _request(method: str, path: str, query: str, headers: list[tuple[bytes, bytes]], body: bytes) -> Request:
    target = f"{path}?{query}" if query else path
    return Request(method, target, path, query, "1.1", Headers.from_fields(headers), body, True)


async def asgi_app(scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
    if scope["type"] != "http":
        return
    declared = dict(scope.get("headers", [])).get(b"content-length", b"")
    if declared.isdigit() and (len(declared) > 18 or int(declared) > MAX_BODY):
        await _send_asgi(send, TOO_LARGE)  # refused before a byte of it is read
        return
    chunks: list[bytes] = []  # joined once: += on bytes copies the whole body each time
    size, more = 0, True
    while more:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            await _send_asgi(send, TOO_LARGE)
            return
        chunks.append(chunk)
        more = message.get("more_body", False)
    request = _request(scope["method"], scope["path"], scope.get("query_string", b"").decode("latin-1"),
                       list(scope.get("headers", [])), b"".join(chunks))
    reply = _the_app().handle(request)
    if reply.delay:
        await asyncio.sleep(reply.delay)
    await _send_asgi(send, reply)


async def _send_asgi(send: Callable[..., Any], reply: Reply) -> None:
    headers = [(b"content-type", reply.content_type.encode()), (b"content-length", b"%d" % len(reply.body)),
               *((k.encode(), v.encode()) for k, v in reply.headers)]
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    if type(reply.body) is bytes:
        await send({"type": "http.response.body", "body": reply.body})
        return
    pieces = iter(reply.body)  # a body made as it is sent: a piece a message, each awaited until taken
    piece = next(pieces, b"")
    for following in pieces:
        await send({"type": "http.response.body", "body": piece, "more_body": True})
        piece = following
    await send({"type": "http.response.body", "body": piece})


def wsgi_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    length = environ.get("CONTENT_LENGTH") or ""
    if length.isdigit() and (len(length) > 18 or int(length) > MAX_BODY):
        return _send_wsgi(start_response, TOO_LARGE)
    if length.isdigit():
        body = environ["wsgi.input"].read(int(length)) if int(length) else b""
    elif environ.get("wsgi.input_terminated"):  # chunked: read to the end, one byte past the limit at most
        body = environ["wsgi.input"].read(MAX_BODY + 1)
        if len(body) > MAX_BODY:
            return _send_wsgi(start_response, TOO_LARGE)
    else:
        body = b""
    headers = [(key[5:].replace("_", "-").encode("latin-1"), str(value).encode("latin-1"))
               for key, value in environ.items() if key.startswith("HTTP_")]
    request = _request(environ["REQUEST_METHOD"], environ.get("PATH_INFO", "/"), environ.get("QUERY_STRING", ""),
                       headers, body)
    reply = _the_app().handle(request)
    if reply.delay:
        time.sleep(reply.delay)
    return _send_wsgi(start_response, reply)


def _send_wsgi(start_response: Callable[..., Any], reply: Reply) -> Iterable[bytes]:
    status = f"{reply.status} {_reason(reply.status)}"
    start_response(status, [("Content-Type", reply.content_type), ("Content-Length", str(len(reply.body))),
                            *reply.headers])
    return [reply.body] if isinstance(reply.body, bytes) else reply.body  # Pieces: made as the server sends them


def _reason(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"
