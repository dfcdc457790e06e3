# subprocess_pipeline.py: the Python twin of examples/subprocess_pipeline.cpp
# (asyncio's create_subprocess_exec): feed `sort` from one task while reading
# its output, then eight commands with at most three alive at once.
import asyncio


async def main():
    # 1. feed sort, read its output
    sort = await asyncio.create_subprocess_exec(
        "sort", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)

    async def feed():
        for w in ("pear", "apple", "fig", "banana", "cherry"):
            sort.stdin.write(f"{w}\n".encode())
            await sort.stdin.drain()
        sort.stdin.close()  # end of input: sort starts writing

    feeder = asyncio.create_task(feed())
    words = []
    while line := await sort.stdout.readline():
        words.append(line.decode().rstrip("\n"))
    await feeder
    code = await sort.wait()
    print(f"sorted: {' '.join(words)} (exit {code})")

    # 2. eight commands, at most three at once
    limit = asyncio.Semaphore(3)
    running = peak = 0

    async def job(i):
        nonlocal running, peak
        async with limit:
            running += 1
            peak = max(peak, running)
            p = await asyncio.create_subprocess_exec(
                "sh", "-c", f"read x; sleep 0.05; echo job {i}: $x",
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            try:
                out, _ = await asyncio.wait_for(p.communicate(f"{i * i}\n".encode()), 10)
            except TimeoutError:
                p.kill()  # a hung child is killed
                raise
            running -= 1
            return out.decode()

    for out in await asyncio.gather(*(job(i) for i in range(1, 9))):
        print(out, end="")
    print(f"8 commands, at most {peak} at once")
    return 0 if code == 0 and peak <= 3 else 1


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
