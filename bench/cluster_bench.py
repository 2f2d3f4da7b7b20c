"""Several workers against one: what nginx + Redis add to a stream, and 64 streams at once.

Same run, same machine, the real local model (llama.cpp engine), greedy:
1. one worker with the embedded stores (SQLite sessions, in-memory turn logs), requested directly;
2. two workers on one redis-server behind nginx (deploy/nginx.conf), requested through nginx.
Sequential requests (c=1) give TTFT and tokens/s per stream for each, and their ratio; then 64
concurrent streams through nginx: TTFT p50/p99 and errors.

Usage: python bench/cluster_bench.py [--requests 8] [--tokens 64] [--streams 64]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.load_bench import PROMPT, one_request, run_level, user  # noqa: E402
from deploy.cluster import render_nginx, start_nginx, wait_healthy  # noqa: E402
from tests.redis_server import RedisServer  # noqa: E402
from tests.server import free_port, start_server, stop_server  # noqa: E402

MODEL = "local/smollm2-135m-instruct"
ENV = {"RILL_MAX_CONCURRENT_TURNS": "64", "RILL_KEEPALIVE_SECONDS": "15"}


def sequential(url: str, count: int, tokens: int) -> dict:
    one_request(url, MODEL, user(PROMPT), tokens)  # warm-up
    runs = [one_request(url, MODEL, user(PROMPT), tokens) for _ in range(count)]
    ok = [r for r in runs if "error" not in r]
    return {"ttft_ms": statistics.median(r["ttft"] * 1000 for r in ok),
            "tok_s": statistics.median((r["tokens"] - 1) / (r["seconds"] - r["ttft"]) for r in ok),
            "errors": len(runs) - len(ok)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--streams", type=int, default=64)
    args = parser.parse_args()
    logs = Path(tempfile.mkdtemp(prefix="rill-cluster-bench-"))

    single = start_server("eventlet", logs, entry="rill.entry", **ENV)
    try:
        alone = sequential(single.url, args.requests, args.tokens)
    finally:
        stop_server(single)

    redis_server = RedisServer(logs)
    workers = [start_server("eventlet", logs, entry="rill.entry", RILL_REDIS_URL=redis_server.url, **ENV) for _ in range(2)]
    port = free_port()
    nginx = start_nginx(render_nginx(logs / "nginx", f"127.0.0.1:{port}", [w.url.rsplit(":", 1)[1] for w in workers]))
    front = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(front, nginx, seconds=10)
        through = sequential(front, args.requests, args.tokens)
        many = run_level(front, MODEL, args.streams, 1, args.tokens // 2)
    finally:
        nginx.terminate()
        for worker in workers:
            stop_server(worker)
        redis_server.stop()

    print(f"c=1, {args.requests} requests of {args.tokens} tokens each (median):")
    print(f"  one worker, embedded stores:   TTFT {alone['ttft_ms']:.1f} ms, {alone['tok_s']:.1f} tok/s, "
          f"errors {alone['errors']}")
    print(f"  nginx + 2 workers + Redis:     TTFT {through['ttft_ms']:.1f} ms, {through['tok_s']:.1f} tok/s, "
          f"errors {through['errors']}")
    print(f"  added TTFT {through['ttft_ms'] - alone['ttft_ms']:+.1f} ms; tokens/s "
          f"x{through['tok_s'] / alone['tok_s']:.3f}")
    print(f"{args.streams} concurrent streams through nginx ({args.tokens // 2} tokens each): TTFT p50 "
          f"{many['ttft_p50']:.0f} ms, p99 {many['ttft_p99']:.0f} ms, aggregate {many['aggregate_tps']:.0f} tok/s, "
          f"errors {many['errors']} {many['error_sample']}")
    print(f"logs in {logs}")


if __name__ == "__main__":
    main()
