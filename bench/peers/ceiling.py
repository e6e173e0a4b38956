"""The ceiling: no parsing, one constant response per b"\r\n\r\n" received. Not HTTP-correct
(a header block split across reads is missed); it shows what the syscalls alone allow.

    python bench/peers/ceiling.py PORT
"""

import asyncio
import sys

RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, World!"


class Constant(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(RESPONSE * data.count(b"\r\n\r\n"))


async def main(port: int) -> None:
    server = await asyncio.get_running_loop().create_server(Constant, "127.0.0.1", port, backlog=1024)
    await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
