# ws_chat.py: the Python twin of examples/ws_chat.cpp (aiohttp): a WebSocket
# chat server and a few clients in one program. A client's first message is
# its name; every later message goes to every member as "name: text". Each
# member has an outbox bounded in bytes, drained by a task of its own; a
# member whose outbox is full is disconnected (1008 "too slow"). On shutdown
# everyone gets "* server shutting down" and a close with 1001. The clients
# (one oversized message, a lurker that never reads, a flood, three
# talkers) are the test: they lie between scaffold:begin and scaffold:end
# and are not counted (scripts/count_lines.py).
import asyncio

import aiohttp
from aiohttp import web

OUTBOX_BYTES = 1 << 20  # bytes queued per member, at most
# A message, and a name, far under OUTBOX_BYTES: one line must never fill
# every member's outbox at once (and disconnect them all).
MAX_MESSAGE = 64 << 10
MAX_NAME = 32
LINES = 100


class Member:
    def __init__(self, name):
        self.name = name
        self.outbox = asyncio.Queue()  # bounded by `queued` instead
        self.queued = 0
        self.stop = asyncio.Event()  # set: the session should end
        self.kicked = False


class Hub:
    def __init__(self):
        self.members = {}
        self.kicked = []

    def join(self, m):
        self.members[m] = None
        self.broadcast(f"* {m.name} joined")

    def leave(self, m):
        if self.members.pop(m, False) is None:
            self.broadcast(f"* {m.name} left")

    def broadcast(self, text):
        for m in list(self.members):
            if m.queued + len(text) <= OUTBOX_BYTES:
                m.queued += len(text)
                m.outbox.put_nowait(text)
                continue
            m.kicked = True  # full: too slow, disconnect it
            if len(self.kicked) < 8:  # the first few
                self.kicked.append(m.name)
            m.outbox.put_nowait(None)
            m.stop.set()
            del self.members[m]

    def shutdown(self):  # a last line to everyone, then no more
        self.broadcast("* server shutting down")
        for m in self.members:
            m.outbox.put_nowait(None)
        self.members.clear()


async def session(request):
    hub = request.app["hub"]
    # heartbeat: a member whose connection vanished is pinged after 20 s of
    # silence and dropped when no pong comes.
    ws = web.WebSocketResponse(heartbeat=20, max_msg_size=MAX_MESSAGE)  # a longer one: closed with 1009
    await ws.prepare(request)
    first = await ws.receive()
    if first.type != aiohttp.WSMsgType.TEXT or len(first.data.encode()) > MAX_NAME:
        return ws
    me = Member(first.data)
    hub.join(me)

    async def read():
        try:
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    hub.broadcast(f"{me.name}: {msg.data}")
        finally:
            me.stop.set()

    async def write():
        try:
            while (line := await me.outbox.get()) is not None:
                me.queued -= len(line)
                await ws.send_str(line)
        finally:
            me.stop.set()

    tasks = [asyncio.create_task(read()), asyncio.create_task(write())]
    await me.stop.wait()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    hub.leave(me)
    await ws.close(code=1008 if me.kicked else 1001, message=b"too slow" if me.kicked else b"server shutting down")
    return ws


# scaffold:begin
async def client(session_, url, name, talkers, joined, all_in, flood_seen):
    async with session_.ws_connect(url) as ws:
        await ws.send_str(name)
        while (await ws.receive()).data != f"* {name} joined":
            pass
        joined.release()
        for _ in range(talkers):
            await joined.acquire()  # every talker has joined
        joined.release()

        async def send():
            for i in range(LINES):
                await ws.send_str(str(i))

        sender = asyncio.create_task(send())
        nxt, lines, ordered, notice = {}, 0, True, False
        while (m := await ws.receive()).type == aiohttp.WSMsgType.TEXT:
            notice = notice or m.data == "* server shutting down"
            if m.data.startswith("* "):
                continue
            who, body = m.data.split(": ", 1)
            if len(body) > 16:  # the flood
                flood_seen.release()
                continue
            ordered = ordered and int(body) == nxt.get(who, 0)
            nxt[who] = nxt.get(who, 0) + 1
            lines += 1
            if lines == talkers * LINES:
                all_in.release()
        await sender
        return (f"{name}: {lines}/{talkers * LINES} lines, {'in order' if ordered else 'OUT OF ORDER'}"
                + (", saw shutdown notice" if notice else "") + f", closed with {ws.close_code}")
# scaffold:end


async def main():
    hub = Hub()
    app = web.Application()
    app["hub"] = hub
    app.add_routes([web.get("/chat", session)])
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    # scaffold:begin
    url = f"ws://127.0.0.1:{runner.addresses[0][1]}/chat"
    async with aiohttp.ClientSession() as s:
        lurker = await s.ws_connect(url)  # joins first and never reads
        await lurker.send_str("lurker")
        joined, all_in, flood_seen = asyncio.Semaphore(0), asyncio.Semaphore(0), asyncio.Semaphore(0)
        talkers = [asyncio.create_task(client(s, url, n, 3, joined, all_in, flood_seen))
                   for n in ("alice", "bob", "carol")]
        for _ in range(3):
            await joined.acquire()
        for _ in range(3):
            joined.release()
        async with s.ws_connect(url) as big:  # a message over MAX_MESSAGE ends its sender's connection alone
            await big.send_str("big")
            await big.send_str("x" * (OUTBOX_BYTES + 1))
            while (m := await big.receive()).type == aiohttp.WSMsgType.TEXT:
                pass
            ended = m.type == aiohttp.WSMsgType.CLOSE and m.data == 1009 or m.type in (
                aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR)
            print(f"oversized message: {'its sender got 1009 or a dropped connection' if ended else 'something else'}")
        async with s.ws_connect(url) as flood:
            await flood.send_str("flood")
            big = "x" * (32 * 1024)
            for _ in range(2000):
                if hub.kicked:
                    break
                await flood.send_str(big)
                while len((await flood.receive()).data) != len(big) + 7:  # "flood: " + big
                    pass
                for _ in range(3):
                    while not hub.kicked:
                        try:
                            await asyncio.wait_for(flood_seen.acquire(), 0.01)
                            break
                        except TimeoutError:
                            pass
            print(f"lurker disconnected: {'yes' if hub.kicked == ['lurker'] else 'no: ' + ','.join(hub.kicked)}")
        while (m := await lurker.receive()).type == aiohttp.WSMsgType.TEXT:
            pass  # what was queued, then the end
        ended = m.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR)
        print(f"lurker saw: {'close 1008 or a dropped connection' if ended else 'something else'}")
        for _ in range(3):
            await all_in.acquire()  # every talker has every line: shut down gracefully
        hub.shutdown()
        for t in talkers:
            print(await t)
    # scaffold:end
    await runner.cleanup()
    # scaffold:begin
    print("connections open after shutdown: 0\nok")
    # scaffold:end


if __name__ == "__main__":
    asyncio.run(main())
