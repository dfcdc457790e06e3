#!/usr/bin/env python3
"""count_lines.py: the line counts of docs/guide.md "The seeds, side by side".

A counted line is a non-blank line that is not only a comment (C++: // and
/* */; Python: #), outside a scaffold region: the part of an example that
exists only so that it runs on its own and its test can check it (an embedded
server it talks to, clients that drive a server), marked the same way in both
languages by a comment line "scaffold:begin" before it and "scaffold:end"
after it (// or #, alone on its line).

  scripts/count_lines.py                 the seeds' table (run from anywhere)
  scripts/count_lines.py FILE...         one count per file
"""
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent

# (program, example name, the ctest that runs the C++ program), in the
# order of issue 42's list.
SEEDS = [
    ("scraper", "fetch_titles", "http_example_fetch_titles"),
    ("downloader", "downloader", "http_example_downloader"),
    ("JSON API server", "json_api", "http_example_json_api"),
    ("WebSocket chat", "ws_chat", "http_example_ws_chat"),
    ("TCP chat", "chat_server", "io_chat_server"),
    ("subprocess", "subprocess_pipeline", "io_example_subprocess_pipeline"),
    ("shutdown on signals", "graceful_shutdown", "io_example_graceful_shutdown"),
    ("fetch with a limit and a timeout", "fetch_many", "http_example_fetch_many"),
]


def count(path):
    python = str(path).endswith(".py")
    n = 0
    in_block = False  # inside a C++ /* */ comment
    scaffold = False
    for raw in pathlib.Path(path).read_text().splitlines():
        line = raw.strip()
        if line in ("// scaffold:begin", "# scaffold:begin"):
            scaffold = True
            continue
        if line in ("// scaffold:end", "# scaffold:end"):
            scaffold = False
            continue
        if scaffold or not line:
            continue
        if python:
            if line.startswith("#"):
                continue
        else:
            if in_block:
                if "*/" in line:
                    in_block = False
                continue
            if line.startswith("//"):
                continue
            if line.startswith("/*"):
                in_block = "*/" not in line
                continue
        n += 1
    if scaffold:
        sys.exit(f"{path}: scaffold:begin without scaffold:end")
    return n


def main(argv):
    if argv:
        for p in argv:
            print(f"{count(p):5d} {p}")
        return
    print("| program | C++ | Python | C++ lines | Python lines | ratio | ctest |")
    print("|---|---|---|---:|---:|---:|---|")
    for program, name, test in SEEDS:
        cpp = f"examples/{name}.cpp"
        py = f"examples/python/{name}.py"
        c, p = count(ROOT / cpp), count(ROOT / py)
        print(f"| {program} | `{cpp}` | `{py}` | {c} | {p} | {c / p:.2f} | `{test}` |")


if __name__ == "__main__":
    main(sys.argv[1:])
