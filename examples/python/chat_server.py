# chat_server.py: the Python twin of examples/chat_server.cpp (asyncio): a
# line-based chat server with graceful shutdown.
#
#   chat_server.py PORT [WORKERS]
#
# Prints the port on the first line of stdout. A client's first line is its
# name; every later line goes to every other client as "name: line". Joins
# and leaves are announced; a newcomer is greeted. An outbox holds at most
# 256 KiB of text: a line for a member whose outbox is full is dropped for
# that member. SIGTERM or SIGINT: stop accepting, tell everyone, let the clients
# finish for a grace period (CHAT_GRACE_MS, default 5000), cut the rest,
# print a summary and exit 0. WORKERS is accepted and ignored (asyncio runs
# on one thread).
import asyncio
import os
import signal
import sys

OUTBOX_BYTES = 256 << 10  # bytes queued per client, at most
MAX_LINE = 4096  # longer lines end the connection


class Outbox(asyncio.Queue):  # bounded by `size` (bytes queued) instead of a count
    def __init__(self):
        super().__init__()
        self.size = 0

    def offer(self, text):  # queues text, unless the outbox would pass OUTBOX_BYTES
        if self.size + len(text) > OUTBOX_BYTES:
            return False
        self.size += len(text)
        self.put_nowait(text)
        return True


class Hub:
    def __init__(self):
        self.members = {}  # outbox -> name
        self.dropped = 0

    def broadcast(self, text, exclude=None):
        for outbox in self.members:
            if outbox is not exclude and not outbox.offer(text):
                self.dropped += 1


async def serve(hub, reader, writer):
    try:
        name = await reader.readline()
    except (ConnectionError, ValueError):
        return
    if not name.endswith(b"\n") or len(name) > 256:
        return  # gone (or a name too long) before joining
    name = name.rstrip(b"\r\n")
    outbox = Outbox()
    hub.broadcast(b"* " + name + b" joined\n")
    hub.members[outbox] = name
    outbox.offer(b"* welcome " + name + b", %d others here\n" % (len(hub.members) - 1))

    async def drain():
        while (text := await outbox.get()) is not None:
            outbox.size -= len(text)
            writer.write(text)
            await writer.drain()

    draining = asyncio.create_task(drain())
    try:
        while (line := await reader.readline()).endswith(b"\n"):
            hub.broadcast(name + b": " + line, exclude=outbox)
    except (ConnectionError, ValueError):
        pass  # reset, or a line over MAX_LINE: the client leaves
    finally:
        del hub.members[outbox]
        hub.broadcast(b"* " + name + b" left\n")
        try:
            await outbox.put(None)  # the writer drains what is queued, then ends
            await draining
        except ConnectionError:
            pass
        finally:
            draining.cancel()


async def chat(port):
    hub, conns, signals = Hub(), set(), asyncio.Queue()
    clients = 0
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, signals.put_nowait, sig)

    async def on_connect(reader, writer):
        nonlocal clients
        clients += 1
        conns.add(asyncio.current_task())
        try:
            await serve(hub, reader, writer)
        finally:
            writer.close()
            conns.discard(asyncio.current_task())

    server = await asyncio.start_server(on_connect, "127.0.0.1", port, limit=MAX_LINE)
    print(server.sockets[0].getsockname()[1], flush=True)
    sig = await signals.get()
    server.close()  # stop accepting: new connections are refused
    hub.broadcast(b"* server shutting down\n")
    pending = set(conns)
    if pending:
        _, pending = await asyncio.wait(pending, timeout=int(os.environ.get("CHAT_GRACE_MS", 5000)) / 1000)
    for t in pending:
        t.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    cut = ", the rest cut after the grace period" if pending else ""
    print(f"stopped on {signal.Signals(sig).name}: {clients} clients served{cut}")
    if hub.dropped:
        print(f"{hub.dropped} lines dropped for slow clients")
    return 0


def main(argv):
    try:
        port = int(argv[1])
        workers = int(argv[2]) if len(argv) == 3 else 1
        if len(argv) > 3 or not 0 <= port <= 65535 or not 1 <= workers <= 1024:
            raise ValueError
    except (IndexError, ValueError):
        print(f"usage: {argv[0]} PORT [WORKERS]", file=sys.stderr)
        return 2
    return asyncio.run(chat(port))


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
