#!/usr/bin/env python3
"""idle_conns_smaps.py: where a spindle server's resident memory lies
(bench/http/idle_conns.sh runs it before and after the idle connections).

    idle_conns_smaps.py PID [h2]  ->  one line of key=value (KiB unless named)

Reads /proc/PID/smaps, /proc/PID/pagemap and /proc/PID/mem (root, or the
server's own user with ptrace access):
  stack_kb, stack_slots, touched_slots, pages_hist: fiber stacks. A stack
    slot is found by its guard page (pagemap bit 58, a MADV_GUARD_INSTALL
    guard region; runtime/src/stack_pool.cpp puts one below each stack of
    a slab): the pages above a guard, as many as the commonest distance
    between neighbouring guards less one (the kernel merges a slab with
    the anonymous mappings beside it, malloc's arenas among them, so what
    follows a mapping's last guard is not all stack). A resident page
    (bit 63, or swapped: bit 62) counts. pages_hist: resident pages per
    touched slot, as pages:slots.
  heap_kb: resident pages of the anonymous writable mappings outside the
    stacks and guards ([heap], malloc's per-thread arenas, the threads'
    own stacks). other_kb: Rss of anonymous mappings that are not
    writable.
  file_kb: Rss of file-backed mappings.
  read_bufs, read_buf_stride: copies of idle_conns's request line
    ("GET / HTTP/1.1\\r\\nHost: 127.0.0.1") found in heap memory outside
    the stacks, and the median distance between neighbours: each idle
    connection's read buffer (a flat_buffer) still holds the request it
    last read, so this counts those buffers; the distance is a buffer's
    malloc chunk plus whatever else the connection allocated between two
    buffers. With h2 (idle_conns.sh MODE=h2) the bytes sought are
    idle_conns's HTTP/2 request header block (its hand-written HPACK,
    "\x82\x84\x86\x01\x09127.0.0.1") instead: the buffers that still
    hold the connection's last bytes read.
  scratch_bufs: copies of the response's body ("Hello, World!") in that
    memory (the connection's kept response scratch string, and others).
No guard marks (a kernel before 6.14, or a pool that fell back to
PROT_NONE pages): stack_slots=0 and every anonymous mapping is heap_kb.
"""
import re
import struct
import sys

PAGE = 4096
GUARD = 1 << 58
PRESENT = 1 << 63
SWAPPED = 1 << 62
REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1"
H2_REQUEST = b"\x82\x84\x86\x01\x09127.0.0.1"
BODY = b"Hello, World!"


def mappings(pid):
    out = []
    cur = None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            m = re.match(r"^([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ (\d+)\s*(.*)$", line)
            if m:
                cur = {"lo": int(m.group(1), 16), "hi": int(m.group(2), 16), "perms": m.group(3),
                       "inode": int(m.group(4)), "name": m.group(5).strip(), "rss": 0}
                out.append(cur)
            elif line.startswith("Rss:") and cur is not None:
                cur["rss"] = int(line.split()[1])
    return out


def main():
    pid = int(sys.argv[1])
    needle = H2_REQUEST if sys.argv[2:] == ["h2"] else REQUEST
    maps = mappings(pid)
    file_kb = other_kb = 0
    anon = []  # (lo, pagemap words) of the anonymous writable mappings
    with open(f"/proc/{pid}/pagemap", "rb") as pm:
        for m in maps:
            is_anon = m["inode"] == 0 and (m["name"] == "" or m["name"] in ("[heap]", "[stack]")
                                           or m["name"].startswith("[anon"))
            if not is_anon:
                file_kb += m["rss"]
            elif "rw" not in m["perms"]:
                other_kb += m["rss"]
            else:
                pm.seek(m["lo"] // PAGE * 8)
                raw = pm.read((m["hi"] - m["lo"]) // PAGE * 8)
                anon.append((m["lo"], struct.unpack(f"{len(raw) // 8}Q", raw)))
    # A slab's stacks lie a guard and a stack apart, so the commonest gap
    # between neighbouring guards is the stride; the stack is the pages
    # above a guard up to the stride (the kernel merges a slab with
    # neighbouring anonymous mappings, malloc's arenas among them, so a
    # mapping's last guard is followed by more than a stack).
    gaps = {}
    for _, words in anon:
        g = [i for i, w in enumerate(words) if w & GUARD]
        for a, b in zip(g, g[1:]):
            gaps[b - a] = gaps.get(b - a, 0) + 1
    stride = max(gaps, key=gaps.get) if gaps else 0
    stack_kb = heap_kb = slots = touched = 0
    hist = {}
    heap_runs = []  # (address, pages) of resident pages outside the stacks
    for lo, words in anon:
        in_stack = [False] * len(words)
        for i, w in enumerate(words):
            if not w & GUARD:
                continue
            slots += 1
            n = 0
            for j in range(i + 1, min(i + stride, len(words))):
                if words[j] & GUARD:
                    break
                in_stack[j] = True
                n += bool(words[j] & (PRESENT | SWAPPED))
            stack_kb += n * PAGE // 1024
            if n:
                touched += 1
                hist[n] = hist.get(n, 0) + 1
        run = None
        for i, w in enumerate(words):
            # A guard is a swap-style entry: pagemap marks it swapped too.
            heap = not in_stack[i] and not w & GUARD and bool(w & (PRESENT | SWAPPED))
            heap_kb += heap * PAGE // 1024
            if heap and run is not None and run[0] + run[1] * PAGE == lo + i * PAGE:
                run[1] += 1
            elif heap:
                run = [lo + i * PAGE, 1]
                heap_runs.append(run)
    reqs, bodies = [], 0
    try:
        with open(f"/proc/{pid}/mem", "rb") as mem:
            for addr, pages in heap_runs:
                try:
                    mem.seek(addr)
                    data = mem.read(pages * PAGE)
                except OSError:
                    continue
                reqs += [addr + x.start() for x in re.finditer(re.escape(needle), data)]
                bodies += data.count(BODY)
    except OSError:
        pass
    reqs.sort()
    dist = sorted(b - a for a, b in zip(reqs, reqs[1:]))
    buf_stride = dist[len(dist) // 2] if dist else 0
    print(f"stack_kb={stack_kb} stack_slots={slots} touched_slots={touched} "
          f"pages_hist={','.join(f'{k}:{v}' for k, v in sorted(hist.items())) or '-'} "
          f"heap_kb={heap_kb} other_kb={other_kb} file_kb={file_kb} read_bufs={len(reqs)} "
          f"read_buf_stride={buf_stride} scratch_bufs={bodies}")


if __name__ == "__main__":
    main()
