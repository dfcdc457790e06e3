#!/usr/bin/python3
# aiohttp_client_peer.py: the Python peer of spindle_bench_http_client
# (client_bench.cpp), the same load written the way an aiohttp user writes
# it: TASKS asyncio tasks (100) fetch URL in a closed loop through one
# ClientSession over keep-alive (TCPConnector(limit=TASKS): one connection
# per task, as the spindle client's pool limit). Every response must be 200
# with the body "Hello, World!"; a wrong one or an error exits 1.
#
#   /usr/bin/python3 aiohttp_client_peer.py URL [TASKS] [SECONDS] [WARMUP_SECONDS]
#   defaults:                                    100     5         1
#
# Debian's python3-aiohttp on Debian's /usr/bin/python3, default asyncio
# event loop (what `apt install python3-aiohttp` gives a user; no uvloop).
# Counts requests in a window of SECONDS after the warm-up and the
# process's CPU time over it (utime + stime from /proc/self/stat), and
# prints the line spindle_bench_http_client prints:
#   requests=N seconds=S cpu_s=C connections=K
import asyncio
import os
import sys
import time

import aiohttp

BODY = b"Hello, World!"


def process_cpu_s():
    with open("/proc/self/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def main(url, tasks, seconds, warmup):
    done = 0
    stop = False
    opened = 0

    async def on_connection_create_end(session, ctx, params):
        nonlocal opened
        opened += 1

    trace = aiohttp.TraceConfig()
    trace.on_connection_create_end.append(on_connection_create_end)

    async def fetch(session):
        nonlocal done
        while not stop:
            async with session.get(url) as r:
                body = await r.read()
                if r.status != 200 or body != BODY:
                    print(f"aiohttp_client_peer: unexpected response {r.status}, {len(body)} bytes",
                          file=sys.stderr)
                    os._exit(1)
            done += 1

    connector = aiohttp.TCPConnector(limit=tasks)
    async with aiohttp.ClientSession(connector=connector, trace_configs=[trace]) as session:
        fetchers = [asyncio.create_task(fetch(session)) for _ in range(tasks)]
        await asyncio.sleep(warmup)
        n0, cpu0, t0 = done, process_cpu_s(), time.monotonic()
        await asyncio.sleep(seconds)
        n1, cpu1, t1 = done, process_cpu_s(), time.monotonic()
        stop = True
        await asyncio.gather(*fetchers)
    wall = t1 - t0
    print(f"requests={n1 - n0} seconds={wall:.4f} cpu_s={cpu1 - cpu0:.2f} connections={opened}")
    print(f"aiohttp {aiohttp.__version__}, {tasks} tasks: {(n1 - n0) / wall:.0f} req/s, "
          f"{(n1 - n0) / max(cpu1 - cpu0, 1e-9):.0f} req per CPU-s", file=sys.stderr)


if __name__ == "__main__":
    if not 2 <= len(sys.argv) <= 5:
        print(f"usage: {sys.argv[0]} URL [TASKS] [SECONDS] [WARMUP_SECONDS]", file=sys.stderr)
        sys.exit(2)
    url = sys.argv[1]
    tasks = int(sys.argv[2]) if len(sys.argv) > 2 else 100
    seconds = float(sys.argv[3]) if len(sys.argv) > 3 else 5.0
    warmup = float(sys.argv[4]) if len(sys.argv) > 4 else 1.0
    asyncio.run(main(url, tasks, seconds, warmup))
