#!/usr/bin/python3
# ws_echo_peer.py: the Python peer of the WebSocket echo figure in
# docs/http.md. The same workload as the hidden "[.bench]" case of
# tests/http/websocket_test.cpp: an echo server on 127.0.0.1:0 and N client
# connections in the same process, each sending a 32-byte text message and
# waiting for its echo, for 2 seconds; prints round trips per second.
# Uses python3-websockets (Debian, scripts/install-deps.sh --bench), asyncio,
# without permessage-deflate (spindle does not negotiate it). Run it with
# /usr/bin/python3, the interpreter Debian installs the module for.
import asyncio
import sys
import time

import websockets


async def echo(ws):
    async for msg in ws:
        await ws.send(msg)


async def main(conns):
    async with websockets.serve(echo, "127.0.0.1", 0, compression=None) as server:
        port = server.sockets[0].getsockname()[1]
        trips = 0
        t0 = time.monotonic()

        async def client():
            nonlocal trips
            async with websockets.connect(f"ws://127.0.0.1:{port}/", compression=None) as ws:
                msg = "m" * 32
                while time.monotonic() - t0 < 2.0:
                    await ws.send(msg)
                    await ws.recv()
                    trips += 1

        await asyncio.gather(*(client() for _ in range(conns)))
        secs = time.monotonic() - t0
        print(f"python websockets echo, {conns} connection(s): {trips / secs:.0f} round trips/s")


if __name__ == "__main__":
    for n in (int(a) for a in (sys.argv[1:] or ["1", "16"])):
        asyncio.run(main(n))
