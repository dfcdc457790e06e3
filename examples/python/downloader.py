# downloader.py: the Python twin of examples/downloader.cpp (aiohttp +
# aiofiles): download several files at once, at most 3 at a time, each under
# its own timeout, every body streamed to disk in pieces (a temporary renamed
# on success), every outcome reported on its own; then each file is read
# back and checked against what the server served. Lines between
# scaffold:begin and scaffold:end are the test server, not counted
# (scripts/count_lines.py).
import asyncio
import os
import tempfile

import aiofiles
import aiohttp
from aiohttp import web

SIZES = {"readme.txt": 12345, "photo.jpg": 3 << 20, "video.mp4": 6 << 20,
         "archive.tar": 4_500_000, "notes.md": 777, "slow.bin": 1000}


# scaffold:begin
def content(name, n):
    x = 2166136261
    for c in name.encode():
        x = ((x ^ c) * 16777619) & 0xFFFFFFFF
    out = bytearray(n)
    for i in range(n):
        x = (x * 1103515245 + 12345) & 0xFFFFFFFF  # a fixed LCG: the same bytes every run
        out[i] = x >> 24
    return bytes(out)
# scaffold:end


class Fnv:
    def __init__(self):
        self.h = 1469598103934665603

    def add(self, data):
        for b in data:
            self.h = ((self.h ^ b) * 1099511628211) & 0xFFFFFFFFFFFFFFFF

    def hex(self):
        return f"{self.h:016x}"


async def checksum_of_file(path):
    h, total = Fnv(), 0
    async with aiofiles.open(path, "rb") as f:
        while chunk := await f.read(1 << 20):
            h.add(chunk)
            total += len(chunk)
    return total, h.hex()


async def download(session, url, path):
    tmp = f"{path}.part"
    try:
        async with session.get(url) as res:
            if res.status != 200:
                raise RuntimeError(f"HTTP {res.status}")
            n = 0
            async with aiofiles.open(tmp, "wb") as f:
                async for chunk in res.content.iter_chunked(64 * 1024):
                    await f.write(chunk)
                    n += len(chunk)
        os.rename(tmp, path)
        return n
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


async def main():
    # scaffold:begin
    release_slow = asyncio.Event()

    async def serve_file(request):
        name = request.match_info["name"]
        if name not in SIZES:
            return web.Response(status=404, text="no such file")
        if name == "slow.bin":
            try:
                await asyncio.wait_for(release_slow.wait(), 10)
            except TimeoutError:
                pass
        return web.Response(body=content(name, SIZES[name]), content_type="application/octet-stream")

    app = web.Application()
    app.add_routes([web.get("/files/{name}", serve_file)])
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}/files/"
    # scaffold:end
    folder = tempfile.mkdtemp(prefix="spindle-downloader-")
    names = ["readme.txt", "photo.jpg", "video.mp4", "slow.bin", "archive.tar", "missing.bin", "notes.md"]
    limit = asyncio.Semaphore(3)
    in_flight = peak = 0

    async def fetch(session, name):
        nonlocal in_flight, peak
        async with limit:
            in_flight += 1
            peak = max(peak, in_flight)
            try:
                async with asyncio.timeout(3):  # the whole download: head, body and file
                    n = await download(session, base + name, os.path.join(folder, name))
            except TimeoutError:
                raise RuntimeError("spindle: timed out after 3 s (with_timeout)") from None  # the C++ text
            finally:
                in_flight -= 1
            size, digest = await checksum_of_file(os.path.join(folder, name))
            want = Fnv()
            want.add(content(name, SIZES[name]))
            matches = size == SIZES[name] and digest == want.hex()
            return f"{n} bytes, fnv1a {digest}" + (" (matches the server)" if matches else " (DIFFERS)")

    connector = aiohttp.TCPConnector(limit=10, limit_per_host=3)
    async with aiohttp.ClientSession(connector=connector) as session:
        results = await asyncio.gather(*(fetch(session, n) for n in names), return_exceptions=True)
    ok = failed = matching = 0
    for name, r in zip(names, results):
        if isinstance(r, Exception):
            print(f"{name}: failed: {r}")
            failed += 1
        else:
            print(f"{name}: ok, {r}")
            ok += 1
            matching += r.endswith("(matches the server)")
    on_disk = sorted(os.listdir(folder))
    print("on disk:", " ".join(on_disk))
    print(f"{ok} ok ({matching} matching), {failed} failed, at most {peak} at once")
    for n in on_disk:
        os.remove(os.path.join(folder, n))
    os.rmdir(folder)
    # scaffold:begin
    release_slow.set()
    await runner.cleanup()
    # scaffold:end
    return 0 if ok == 5 and matching == 5 and failed == 2 and len(on_disk) == 5 and peak <= 3 else 1


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
