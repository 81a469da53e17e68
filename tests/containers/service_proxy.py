"""A Service's forwarding, run inside its own container: `PORT:BACKEND_ALIAS:TARGET_PORT ...`.

kube-proxy's job for a ClusterIP Service: the container carries the Service's DNS
names; every connection to PORT goes to TARGET_PORT of one of the pods behind
BACKEND_ALIAS (the network alias every selected pod carries), resolved anew per
connection so a replaced pod is picked up. No backend: the connection is closed.
Standard library only (runs in the image's Python).
"""

from __future__ import annotations

import asyncio
import random
import socket
import sys


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


def handler(backend: str, target: int):  # type: ignore[no-untyped-def]
    async def handle(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(backend, target, type=socket.SOCK_STREAM)
            host = random.choice(infos)[4][0]
            upstream_reader, upstream_writer = await asyncio.wait_for(
                asyncio.open_connection(host, target), timeout=10
            )
        except (TimeoutError, OSError):
            client_writer.close()
            return
        await asyncio.gather(pipe(client_reader, upstream_writer), pipe(upstream_reader, client_writer))

    return handle


async def main(specs: list[str]) -> None:
    servers = []
    for spec in specs:
        port, backend, target = spec.split(":")
        servers.append(await asyncio.start_server(handler(backend, int(target)), "0.0.0.0", int(port)))
        print(f"forwarding :{port} -> {backend}:{target}", flush=True)
    await asyncio.gather(*(s.serve_forever() for s in servers))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
