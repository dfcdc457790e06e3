# fetch_many.py: the Python twin of examples/fetch_many.cpp (asyncio +
# aiohttp): at most 10 requests in flight, a 2 s timeout per request, every
# failure reported on its own. Lines between scaffold:begin and scaffold:end
# are the test server, not counted (scripts/count_lines.py).
import asyncio
import socket

import aiohttp
from aiohttp import web


async def fetch(session, limit, url, stats):
    async with limit:
        stats["now"] += 1
        stats["peak"] = max(stats["peak"], stats["now"])
        try:
            async with asyncio.timeout(2):
                async with session.get(url) as res:
                    if res.status != 200:
                        raise RuntimeError(f"HTTP {res.status}")
                    return f"{len(await res.read())} bytes"
        finally:
            stats["now"] -= 1


async def main():
    # scaffold:begin
    release_slow = asyncio.Event()

    async def page(request):  # n bytes, n up to 1 MiB
        n = request.match_info["n"]
        if not (n.isascii() and n.isdigit()) or int(n) > 1 << 20:
            return web.Response(status=400, text="bad size")
        return web.Response(text="x" * int(n))

    async def slow(request):
        try:
            await asyncio.wait_for(release_slow.wait(), 10)
        except TimeoutError:
            pass
        return web.Response(text="late")

    async def broken(request):
        return web.Response(status=500, text="oops")

    app = web.Application()
    app.add_routes([web.get("/page/{n}", page), web.get("/slow/{n}", slow), web.get("/broken", broken)])
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    with socket.socket() as s:  # bound, then closed: connections are refused
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    # scaffold:end
    paths = [f"/page/{i * 100}" for i in range(1, 21)] + [f"/slow/{i}" for i in range(1, 4)] + ["/broken"]
    urls = [base + p for p in paths] + [f"http://127.0.0.1:{closed_port}/refused"]
    paths.append("(closed port)/refused")
    limit = asyncio.Semaphore(10)
    stats = {"now": 0, "peak": 0}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100, limit_per_host=10)) as session:
        results = await asyncio.gather(*(fetch(session, limit, u, stats) for u in urls), return_exceptions=True)
    ok = failed = 0
    for path, r in zip(paths, results):
        if isinstance(r, Exception):
            if isinstance(r, TimeoutError):
                r = "spindle: timed out after 2 s (with_timeout)"  # the C++ text
            elif isinstance(r, aiohttp.ClientConnectorError):
                r = "connection refused"
            print(f"{path}: failed: {r}")
            failed += 1
        else:
            print(f"{path}: {r}")
            ok += 1
    print(f"{ok} ok, {failed} failed, at most {stats['peak']} in flight")
    # scaffold:begin
    release_slow.set()
    await runner.cleanup()
    # scaffold:end
    return 0 if ok == 20 and failed == 5 and stats["peak"] <= 10 else 1


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
