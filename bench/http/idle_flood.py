#!/usr/bin/env python3
"""idle_flood.py: a flood of idle keep-alive connections against a server
whose process may hold 1,024 descriptors (ulimit -n 1024, a common
default), then one new client (docs/http.md "Server", connection limit).

  bench/http/idle_flood.py SERVER_BINARY [CONNS] [WORKERS]

SERVER_BINARY takes `PORT WORKERS` and prints its port first, as
http_server_hello does (defaults: 1100 connections, 2 workers). Each
connection sends one GET, reads the answer and stays open. Then a new
client sends a GET; printed: how long it waited for its answer (at most
10 s), and how many of the flood's connections the server closed. The
flood's side raises its own limit to the hard one.
"""
import resource
import socket
import subprocess
import sys
import time


def main():
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    server, conns = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 1100
    workers = sys.argv[3] if len(sys.argv) > 3 else "2"
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    proc = subprocess.Popen(["bash", "-c", 'ulimit -n 1024; exec "$0" 0 "$1"', server, workers],
                            stdout=subprocess.PIPE, text=True)
    try:
        port = int(proc.stdout.readline())
        socks = []
        for _ in range(conns):
            try:
                s = socket.create_connection(("127.0.0.1", port), timeout=5)
                s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                if not s.recv(4096):
                    break
                socks.append(s)
            except OSError:
                break  # the server took no more (its accept is out of descriptors)
        print(f"flood: {len(socks)} of {conns} connections answered and held")
        t0 = time.monotonic()
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            s.settimeout(10)
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            status = s.recv(4096).split(b"\r\n")[0].decode()
            print(f"new client: {status} after {time.monotonic() - t0:.2f} s")
        except OSError as e:
            print(f"new client: no answer after {time.monotonic() - t0:.2f} s ({e})")
        closed = 0
        for s in socks:
            s.setblocking(False)
            try:
                if s.recv(1) == b"":
                    closed += 1
            except BlockingIOError:
                pass
            except OSError:
                closed += 1
        print(f"flood: {closed} of its connections closed by the server")
    finally:
        proc.terminate()
        proc.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
