"""The uvicorn peer: a minimal ASGI app answering every HTTP request with "Hello, World!"."""

BODY = b"Hello, World!"
START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", b"text/plain"), (b"content-length", b"13")],
}


async def app(scope: dict, receive, send) -> None:  # type: ignore[no-untyped-def]
    if scope["type"] != "http":  # lifespan: nothing to set up, and "unsupported" is allowed
        return
    await send(START)
    await send({"type": "http.response.body", "body": BODY})
