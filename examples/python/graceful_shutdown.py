# graceful_shutdown.py: the Python twin of examples/graceful_shutdown.cpp
# (asyncio): a line server that on SIGTERM or SIGINT stops accepting, lets
# the connections it has finish within a grace period of 5 s, cuts the
# rest, and exits (loop.add_signal_handler, Server.close, then waiting for
# the handlers under asyncio.timeout). The clients that drive it
# and send the signal are the test: they lie between scaffold:begin and
# scaffold:end and are not counted (scripts/count_lines.py).
import asyncio
import os
import signal


async def main():
    handlers = set()

    async def serve(reader, writer):
        handlers.add(asyncio.current_task())
        try:
            while line := await reader.readline():
                writer.write(b"done: " + line)
                await writer.drain()
        finally:
            writer.close()
            handlers.discard(asyncio.current_task())

    stop = asyncio.Event()
    caught = []
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda s=sig: (caught.append(s), stop.set()))
    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    # scaffold:begin
    async def client(i, connected):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(f"job {i}, part 1\n".encode())
        first = (await reader.readline()).decode().strip()
        connected.release()
        await closed.wait()  # the server no longer accepts: finish the work
        writer.write(f"job {i}, part 2\n".encode())
        second = (await reader.readline()).decode().strip()
        writer.close()
        return f"client {i}: {first}; {second}"

    async def idle(connected):  # one line, then nothing until the server cuts it
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"hello\n")
        await reader.readline()
        connected.release()
        try:
            line = await reader.readline()
        except ConnectionError:  # a reset
            line = b""
        writer.close()
        return "idle client: got a line" if line else "idle client: cut by the server"

    async def refused():
        try:
            _, w = await asyncio.open_connection("127.0.0.1", port)
            w.close()
            return False
        except ConnectionRefusedError:
            return True

    async def driver():
        for _ in range(4):
            await connected.acquire()
        os.kill(os.getpid(), signal.SIGTERM)
        while not await refused():  # until the listener is closed
            await asyncio.sleep(0.01)
        closed.set()

    connected, closed = asyncio.Semaphore(0), asyncio.Event()
    clients = [asyncio.create_task(client(i, connected)) for i in range(1, 4)]
    clients.append(asyncio.create_task(idle(connected)))
    driving = asyncio.create_task(driver())
    # scaffold:end
    await stop.wait()
    server.close()  # stop accepting: new connections are refused
    print(f"stopping on {signal.Signals(caught[0]).name}: no new connections, finishing the open ones")
    try:
        async with asyncio.timeout(5):
            await asyncio.gather(*handlers)
    except TimeoutError:  # the gather cancelled the rest and waited for them
        print("grace period over: the rest cut")
    # scaffold:begin
    await driving
    for line in await asyncio.gather(*clients):
        print(line)
    # scaffold:end
    print("every connection finished or cut: exit")
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
