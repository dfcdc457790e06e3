# fetch_titles.py: the Python twin of examples/fetch_titles.cpp (asyncio +
# aiohttp): a scraper class that fetches pages with bounded concurrency and
# prints each page's <title> (its first 60 characters). Lines between
# scaffold:begin and scaffold:end are the test server, not counted
# (scripts/count_lines.py).
import asyncio
import re

import aiohttp
from aiohttp import web

TITLE = re.compile(r"<title>(.*?)</title>", re.IGNORECASE | re.DOTALL)


class Scraper:
    def __init__(self, session, concurrency):
        self.session = session
        self.limit = asyncio.Semaphore(concurrency)
        self.busy = self.peak = 0

    async def scrape(self, urls):
        return await asyncio.gather(*(self.one(u) for u in urls))

    async def one(self, url):
        async with self.limit:
            self.busy += 1
            self.peak = max(self.peak, self.busy)
            try:
                async with asyncio.timeout(5):
                    async with self.session.get(url) as res:
                        if res.status != 200:
                            return f"HTTP {res.status}"
                        m = TITLE.search(await res.text())
                        return m.group(1)[:60] if m else "(no title)"
            except aiohttp.ClientError as e:
                return f"failed: {e}"
            except TimeoutError:  # one slow site fails alone, not the whole gather
                return "failed: spindle: timed out after 5 s (with_timeout)"  # the C++ text
            finally:
                self.busy -= 1


async def main():
    # scaffold:begin
    release_slow = asyncio.Event()  # lets /page/14's handler end before shutdown

    async def page(request):
        await asyncio.sleep(0.005)  # so that requests overlap
        n = request.match_info["n"]
        if n == "14":  # over the 5 s timeout
            try:
                await asyncio.wait_for(release_slow.wait(), 10)
            except TimeoutError:
                pass
        if n == "7":
            return web.Response(text="<html><body>untitled</body></html>", content_type="text/html")
        if n == "13":  # Python's re does not recurse per character: fine here
            return web.Response(text="<title>Page 13 " + "~" * 100000 + "</title>", content_type="text/html")
        return web.Response(text=f"<html><head><TITLE>Page {n}</TITLE></head></html>", content_type="text/html")

    app = web.Application()
    app.add_routes([web.get("/page/{n}", page)])
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    # scaffold:end
    paths = [f"/page/{i}" for i in range(1, 15)] + ["/missing"]
    async with aiohttp.ClientSession() as session:
        scraper = Scraper(session, 4)
        titles = await scraper.scrape([base + p for p in paths])
    for path, title in zip(paths, titles):
        print(f"{path}: {title}")
    print(f"at most {scraper.peak} requests at once")
    # scaffold:begin
    release_slow.set()
    await runner.cleanup()
    # scaffold:end
    return 0 if scraper.peak <= 4 else 1


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
