# asyncio_spawn.py: the Python peer of process_bench (bench/process/): N
# spawn-and-wait of a program at a given concurrency with asyncio's
# create_subprocess_exec, stdio inherited as in the spindle run. Prints one
# line: "<processes per second>".
import asyncio
import sys
import time


async def main(program, total, concurrency):
    left = total

    async def worker():
        nonlocal left
        while left > 0:
            left -= 1
            p = await asyncio.create_subprocess_exec(program)
            rc = await p.wait()
            if rc != 0:
                raise SystemExit(f"{program} exited {rc}")

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return total / (time.perf_counter() - t0)


if __name__ == "__main__":
    prog, n, c = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    print(f"{asyncio.run(main(prog, n, c)):.1f}")
