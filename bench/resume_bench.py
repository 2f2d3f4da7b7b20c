"""Resumable turns: how fast a reconnecting reader gets its first event, what a finished turn
costs to keep, and thread writes per second on SQLite against PostgreSQL.

1. Reconnect: 300 GETs of /api/chat/turns/<id>/events with a random Last-Event-ID on finished
   turns, timed from the request to the first replayed event; the peer figure in the same run is
   the first event of a new turn (POST /api/chat/stream) on the same server.
2. Replay: a finished turn of 2,000 pieces (the scripted long model) read whole from its start, as
   a reload or a second tab after it ended does, 30 times: the time to the last byte and the
   server's CPU per replay (its events go out in one write: PERFORMANCE.md, "Serving cost per token").
3. Memory: RSS of the server before and after 1,000 finished turns (retained; 40 tokens each,
   the scripted echo model), per turn and per event.
4. Thread writes (in process): 8 writers add question + reply pairs to their own threads, SQLite
   (WAL, on disk) against PostgreSQL (Debian's, on loopback).

Usage: python bench/resume_bench.py [--turns 1000] [--reconnects 300] [--appends 500]
"""
from __future__ import annotations

import argparse
import http.client
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.memory_bench import settle  # noqa: E402
from bench.serve_cost import clock_ticks  # noqa: E402
from bench.together import all_at_once  # noqa: E402
from rill.conversations.store import ThreadStore, sqlite_url  # noqa: E402
from deploy.cluster import start_postgres  # noqa: E402
from tests.server import free_port, start_server, stop_server  # noqa: E402

WORDS = " ".join(f"word{n}" for n in range(40))


def first_event_ms(port: int, method: str, path: str, body: dict | None = None, headers: dict | None = None) -> float:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    started = time.perf_counter()
    conn.request(method, path, body=json.dumps(body) if body else None,
                 headers={"Content-Type": "application/json", **(headers or {})})
    response = conn.getresponse()
    line = response.fp.readline()
    while line and not line.startswith(b"data:"):
        line = response.fp.readline()
    elapsed = (time.perf_counter() - started) * 1000
    conn.close()
    return elapsed


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def reconnects(srv, port: int, count: int) -> None:
    turns = []
    for _ in range(20):
        r = json.loads(http_post(port, "/api/chat", {"message": WORDS, "model": "scripted/echo"}))
        turns.append(r["turn_id"])
    fresh = [first_event_ms(port, "POST", "/api/chat/stream", {"message": "a b", "model": "scripted/echo"})
             for _ in range(count)]
    resumed = [first_event_ms(port, "GET", f"/api/chat/turns/{random.choice(turns)}/events",
                              headers={"Last-Event-ID": str(random.randint(0, 39))}) for _ in range(count)]
    print(f"reconnect -> first replayed event: p50 {statistics.median(resumed):.2f} ms, "
          f"p99 {percentile(resumed, 99):.2f} ms ({count} reconnects)")
    print(f"peer, a new turn's first event:    p50 {statistics.median(fresh):.2f} ms, "
          f"p99 {percentile(fresh, 99):.2f} ms; ratio resume/new at p50 "
          f"{statistics.median(resumed) / statistics.median(fresh):.2f}x")


def replays(srv, port: int, pieces: int = 2000, count: int = 30) -> None:
    turn = json.loads(http_post(port, "/api/chat", {"message": str(pieces), "model": "scripted/long",
                                                    "max_tokens": 2 * pieces}))["turn_id"]
    stat = Path(f"/proc/{srv.process.pid}/stat")
    seconds, cpu_before = [], sum(clock_ticks(stat))
    for _ in range(count):
        started = time.perf_counter()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.request("GET", f"/api/chat/turns/{turn}/events")
        events = conn.getresponse().read().count(b"\n\n")
        conn.close()
        seconds.append(time.perf_counter() - started)
    cpu = (sum(clock_ticks(stat)) - cpu_before) / count
    print(f"replay of a finished turn ({events:,} events) from its start: p50 {statistics.median(seconds) * 1000:.1f} ms, "
          f"server CPU {cpu * 1000:.1f} ms a replay ({count} replays)")


def http_post(port: int, path: str, body: dict) -> bytes:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
    data = conn.getresponse().read()
    conn.close()
    return data


def retained_memory(srv, port: int, count: int) -> None:
    before = settle(srv.process.pid)
    for _ in range(count):
        http_post(port, "/api/chat", {"message": WORDS, "model": "scripted/echo"})
    after = settle(srv.process.pid)
    per_turn = (after - before) * 1024 / count
    print(f"memory per retained finished turn: {per_turn:.1f} KiB ({per_turn * 1024 / 42:.0f} B per event; "
          f"{count} turns of 42 events, session rows included; RSS {before:.0f} -> {after:.0f} MiB)")


def pairs_per_second(store: ThreadStore, writers: int, per_writer: int) -> float:
    threads = [store.create_thread(f"user{w}")["id"] for w in range(writers)]
    def write(w: int) -> None:
        parent = None
        for n in range(per_writer):
            question = store.add_message(f"user{w}", threads[w], parent, "user",
                                         [{"type": "text", "text": f"question {n}"}])
            parent = store.add_message(f"user{w}", threads[w], question["id"], "assistant",
                                       [{"type": "text", "text": WORDS}])["id"]

    return writers * per_writer / all_at_once(write, writers)


def thread_writes(per_writer: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp).chmod(0o755)  # as root, PostgreSQL runs as its own user and makes its data inside
        store = ThreadStore(sqlite_url(Path(tmp) / "threads.db"))
        sqlite = pairs_per_second(store, 8, per_writer)
        store.close()
        postgres, url = start_postgres(free_port(), Path(tmp) / "pg")
        try:
            store = ThreadStore(url)
            postgresql = pairs_per_second(store, 8, per_writer)
            store.close()
        finally:
            postgres.terminate()
            postgres.wait(30)
    print(f"thread writes/s, 8 writers (a question and its reply each, two transactions): SQLite {sqlite:,.0f}, "
          f"PostgreSQL {postgresql:,.0f} (SQLite at {sqlite / postgresql:.2f}x PostgreSQL)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=1000)
    parser.add_argument("--reconnects", type=int, default=300)
    parser.add_argument("--appends", type=int, default=500, help="question and reply pairs per writer")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as logs:
        srv = start_server("eventlet", Path(logs), RILL_RATE_LIMIT="1000000 per minute")
        port = int(srv.url.rsplit(":", 1)[1])
        try:
            reconnects(srv, port, args.reconnects)
            replays(srv, port)
            retained_memory(srv, port, args.turns)
        finally:
            stop_server(srv)
    thread_writes(args.appends)


if __name__ == "__main__":
    main()
