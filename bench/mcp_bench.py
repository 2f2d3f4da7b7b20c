"""Turns that run an MCP tool, against turns that run none: the time a turn takes, and how long
/livez answers meanwhile (the event loop must not wait on tools), at a given concurrency, in one
async mode. The tool is tests/mcp_tools.py's `add` over stdio; the model the scripted one.

    .venv/bin/python bench/mcp_bench.py [--mode eventlet|threading] [--turns 20]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.server import ROOT, start_server, stop_server  # noqa: E402


def run(server, turns: int, body: dict) -> tuple[list[float], list[float]]:
    """(each turn's seconds, /livez seconds while they ran)."""
    took, livez, done = [], [], threading.Event()

    def probe():
        while not done.is_set():
            started = time.perf_counter()
            requests.get(f"{server.url}/livez", timeout=5)
            livez.append(time.perf_counter() - started)
            time.sleep(0.02)

    def turn():
        started = time.perf_counter()
        r = requests.post(f"{server.url}/api/chat", json=body, timeout=120)
        r.raise_for_status()
        took.append(time.perf_counter() - started)

    prober = threading.Thread(target=probe)
    prober.start()
    workers = [threading.Thread(target=turn) for _ in range(turns)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    done.set()
    prober.join()
    return took, livez


def figures(name: str, took: list[float], livez: list[float]) -> None:
    ordered = sorted(livez)
    print(f"  {name:<14} turn p50 {statistics.median(took) * 1000:7.1f} ms   /livez p50 "
          f"{statistics.median(ordered) * 1000:5.1f} ms  p99 {ordered[int(len(ordered) * 0.99)] * 1000:5.1f} ms  "
          f"max {ordered[-1] * 1000:5.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", default="eventlet", choices=["eventlet", "threading"])
    parser.add_argument("--turns", type=int, default=20)
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="rill-mcp-bench-"))
    config = scratch / "mcp.json"
    config.write_text(json.dumps({"mcpServers": {"t": {"command": sys.executable, "args": ["-m", "tests.mcp_tools"],
                                                      "cwd": str(ROOT)}}}))
    server = start_server(args.mode, scratch, RILL_MCP_CONFIG=config, RILL_MAX_CONCURRENT_TURNS=64)
    try:
        tool = {"message": 't_add {"a": 2, "b": 3}', "model": "scripted/call", "mcp_servers": ["t"], "max_tokens": 8}
        plain = {"message": "two words", "model": "scripted/echo", "max_tokens": 8}
        run(server, 2, tool)  # the server starts
        print(f"{args.turns} turns at once, {args.mode}:")
        figures("no tool", *run(server, args.turns, plain))
        figures("MCP t_add", *run(server, args.turns, tool))
    finally:
        stop_server(server)


if __name__ == "__main__":
    main()
