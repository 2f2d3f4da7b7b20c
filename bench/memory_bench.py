"""Resident memory per idle open SSE stream and per stored session, 1,000 of each, on loopback.

The server (eventlet) runs in its own process; its RSS is read from /proc before and after.
Sessions: 1,000 turns on new sessions (a 200-character message and its reply each). Idle
streams: 1,000 open /api/chat/stream connections whose reply never comes (the test suite's
scripted `hold` model), so only the stream's own state is held: socket, green threads, turn.

With `--model llamacpp|transformers`, the real model instead (rill.entry): resident memory per
finished conversation kept (its thread stored, and its KV cache kept for a follow-up turn, up to
RILL_CACHE_TOKENS), the same past a small RILL_CACHE_TOKENS (the bound: memory stops growing), and
per running stream (8 at once, the peak while they run).

Usage: python bench/memory_bench.py [--count 1000] [--model llamacpp --conversations 60]
"""
from __future__ import annotations

import argparse
import http.client
import json
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from tests.server import start_server, stop_server  # noqa: E402


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def settle(pid: int) -> float:
    time.sleep(2)
    return rss_mib(pid)


def conversations(url: str, count: int, start: int = 0) -> int:
    """`count` one-turn chats, each its own question; the tokens they leave (prompt and reply)."""
    tokens = 0
    for i in range(start, start + count):
        r = requests.post(f"{url}/v1/chat/completions", timeout=120, json={
            "model": "local/smollm2-135m-instruct", "max_tokens": 64, "temperature": 0,
            "messages": [{"role": "user", "content": f"Conversation {i}: tell me about a river you know."}]})
        r.raise_for_status()
        tokens += r.json()["usage"]["total_tokens"]
    return tokens


def peak_while(pid: int, work) -> float:
    """The highest RSS seen while `work` runs in a thread."""
    done, peak = threading.Event(), [rss_mib(pid)]

    def run():
        try:
            work()
        finally:
            done.set()

    threading.Thread(target=run).start()
    while not done.wait(0.05):
        peak.append(rss_mib(pid))
    return max(peak)


def model_case(engine: str, count: int) -> None:
    """Kept conversations with the default budget, then past a small one; then running streams."""
    from load_bench import PROMPT, run_level

    for budget in (32768, 2048):
        srv = start_server("eventlet", Path(tempfile.mkdtemp()), entry="rill.entry", RILL_ENGINE=engine,
                           RILL_CACHE_TOKENS=budget, RILL_WEIGHTS="as-is", RILL_RATE_LIMIT="1000000 per minute",
                           RILL_MAX_CONCURRENT_TURNS=100)
        pid = srv.process.pid
        try:
            conversations(srv.url, 4, start=10_000)  # warm-up: first-use allocations are not per-turn costs
            before = settle(pid)
            tokens = conversations(srv.url, count)
            after = settle(pid)
            print(f"{engine}, RILL_CACHE_TOKENS={budget}: {count} conversations ({tokens} tokens) kept: RSS "
                  f"{before:.1f} -> {after:.1f} MiB, {(after - before) * 1024 / count:.0f} KiB a conversation, "
                  f"{(after - before) * 1024 * 1024 / tokens:,.0f} bytes a token")
            if budget == 32768:
                idle = settle(pid)
                peak = peak_while(pid, lambda: run_level(srv.url, "local/smollm2-135m-instruct", 8, 1, 128))
                print(f"{engine}: 8 running streams (128 tokens, {PROMPT[:30]}...): RSS {idle:.1f} idle, peak "
                      f"{peak:.1f} MiB, {(peak - idle) * 1024 / 8:.0f} KiB a running stream")
        finally:
            stop_server(srv)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--model", choices=["llamacpp", "transformers"], help="the real model's case instead")
    parser.add_argument("--conversations", type=int, default=60)
    args = parser.parse_args()
    if args.model:
        return model_case(args.model, args.conversations)
    n = args.count
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 4 * n + 256)), hard))  # the server inherits it
    srv = start_server("eventlet", Path(tempfile.mkdtemp()), RILL_RATE_LIMIT="1000000 per minute",
                       RILL_MAX_CONCURRENT_TURNS=10 * n, RILL_KEEPALIVE_SECONDS=30)
    pid = srv.process.pid
    http_session = requests.Session()
    message = ("Rivers carry water and stories to the sea. " * 5)[:200]
    try:
        for _ in range(20):  # warm-up: first-use allocations are not per-session costs
            http_session.post(f"{srv.url}/api/chat", json={"message": message, "model": "scripted/echo"}, timeout=30)
        before = settle(pid)
        for _ in range(n):
            r = http_session.post(f"{srv.url}/api/chat", json={"message": message, "model": "scripted/echo"},
                                  timeout=30)
            r.raise_for_status()
        after = settle(pid)
        per_session = (after - before) * 1024 / n

        host, port = "127.0.0.1", int(srv.url.rsplit(":", 1)[1])
        streams = []
        for _ in range(20):  # warm-up
            c = http.client.HTTPConnection(host, port, timeout=60)
            c.request("POST", "/api/chat/stream", body=json.dumps({"message": "x", "model": "scripted/hold"}),
                      headers={"Content-Type": "application/json"})
            c.getresponse()
            streams.append(c)
        base = settle(pid)
        for _ in range(n):
            c = http.client.HTTPConnection(host, port, timeout=60)
            c.request("POST", "/api/chat/stream", body=json.dumps({"message": "x", "model": "scripted/hold"}),
                      headers={"Content-Type": "application/json"})
            response = c.getresponse()
            assert response.status == 200 and b"event: start" in response.readline() + response.readline()
            streams.append(c)
        held = settle(pid)
        health = http_session.get(f"{srv.url}/health", timeout=30).json()
        per_stream = (held - base) * 1024 / n
        for c in streams:
            c.close()
        idle = srv.wait_idle(timeout=60)
    finally:
        stop_server(srv)
    print(f"server RSS: {before:.1f} MiB before sessions, {after:.1f} after {n} sessions; "
          f"{base:.1f} before streams, {held:.1f} with {n} idle open streams")
    print(f"per stored session (2 messages): {per_session:.1f} KiB")
    print(f"per idle open SSE stream:        {per_stream:.1f} KiB")
    print(f"active turns while held: {health['active_turns']}; after closing: {idle['active_turns']}")


if __name__ == "__main__":
    main()
