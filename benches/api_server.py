"""A fast local API for the HTTP benchmarks, run in a process of its own.

An asyncio HTTP/1.1 server (keep-alive) that adds ``--latency`` seconds to every answer, like
a remote API would, without using the benchmark process's CPU or GIL:

- ``GET /pages?shard=S&cursor=N&pages=P``: page N of shard S, 10 rows, ``next_cursor`` until P;
- ``GET /fast``: a small JSON object; its arrival time is kept;
- ``GET /arrivals``: the arrival times of ``/fast`` requests so far (monotonic seconds), then
  forgets them.

It prints its port on stdout once listening.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import urllib.parse

arrivals: list[float] = []


def page(query: dict[str, str]) -> bytes:
    shard, cursor = int(query.get("shard", "0")), int(query.get("cursor", "0"))
    pages = int(query.get("pages", "10"))
    rows = [
        {"id": shard * 1_000_000 + cursor * 10 + i, "shard": shard, "name": f"row {i}"}
        for i in range(10)
    ]
    following = str(cursor + 1) if cursor + 1 < pages else None
    return json.dumps({"data": rows, "next_cursor": following}).encode()


async def handle(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, latency: float
) -> None:
    try:
        while True:
            line = await reader.readline()
            if not line:
                break
            length = 0
            while True:
                header = await reader.readline()
                if header in (b"\r\n", b"\n", b""):
                    break
                name, _, value = header.decode("latin-1").partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value.strip())
            if length:
                await reader.readexactly(length)
            target = line.split(b" ")[1].decode()
            split = urllib.parse.urlsplit(target)
            query = dict(urllib.parse.parse_qsl(split.query))
            if split.path == "/fast":
                arrivals.append(time.monotonic())
                body = b'{"ok": true}'
            elif split.path == "/arrivals":
                body = json.dumps(arrivals).encode()
                arrivals.clear()
            else:
                body = page(query)
            if latency and split.path != "/arrivals":
                await asyncio.sleep(latency)
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                + str(len(body)).encode()
                + b"\r\n\r\n"
                + body
            )
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--latency", type=float, default=0.0)
    args = parser.parse_args()
    server = await asyncio.start_server(
        lambda r, w: handle(r, w, args.latency), "127.0.0.1", 0, backlog=256
    )
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
