"""The iterative peer: stdlib http.server.HTTPServer, one connection at a time, keep-alive.

    python bench/peers/stdlib_hello.py PORT [--as-shipped]

--as-shipped leaves Nagle on, as the stdlib does by default: the lesson in numbers.
"""

import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

BODY = b"Hello, World!"


class Hello(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive; HTTP/1.0 would close after each response
    # Headers and body leave in two send()s: with Nagle on, the second waits for the client's
    # delayed ACK (40 ms on Linux), capping one connection at ~25 req/s. Our servers set it too.
    disable_nagle_algorithm = "--as-shipped" not in sys.argv

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)

    def log_message(self, format: str, *args: object) -> None:
        pass  # an access log line per request would measure stderr, not the server


if __name__ == "__main__":
    HTTPServer(("127.0.0.1", int(sys.argv[1])), Hello).serve_forever()
