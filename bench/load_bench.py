"""Many users at once: Rill (SSE route and /v1/chat/completions) beside the strongest peer on the
same model, `transformers serve --continuous-batching`, in one run.

For each concurrency level, that many clients start together and each streams `--requests`
replies of `--tokens` new tokens, greedy. Printed per level and target: TTFT p50/p99,
inter-token latency p50, tokens/s per stream and in aggregate, errors; then Rill / peer ratios.
The peer runs from its own environment (bench/peer-env.sh makes it), never the app's.

Usage: python bench/load_bench.py [--levels 1,4,8,16] [--tokens 128] [--requests 2] [--no-peer]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from backend.config import Settings  # noqa: E402
from tests.server import free_port, start_server, stop_server  # noqa: E402
from tests.sse import SSEStream  # noqa: E402

PROMPT = "Write a long, detailed story about a river that flows through an old city."
PEER = ROOT / ".venv-peer" / "bin" / "transformers"
MODEL_DIR = Path(Settings.from_env().cache_dir) / "models" / "smollm2-135m-instruct"


def one_request(url: str, kind: str, model: str, tokens: int) -> dict:
    """Stream one reply; returns timings measured here, at the client."""
    if kind == "sse":
        path, body = "/api/chat/stream", {"message": PROMPT, "temperature": 0, "max_tokens": tokens}
    else:
        path, body = "/v1/chat/completions", {"model": model, "messages": [{"role": "user", "content": PROMPT}],
                                              "stream": True, "temperature": 0, "max_tokens": tokens}
    started = time.perf_counter()
    arrivals, count, error = [], None, None
    try:
        stream = SSEStream(url + path, body, timeout=300)
        if stream.response.status != 200:
            return {"error": f"HTTP {stream.response.status}"}
        for event in stream:
            if event.data == "[DONE]":
                break
            data = event.json()
            if "error" in data:
                error = data["error"]
                break
            if kind == "sse":
                if event.type == "token":
                    arrivals.append(event.arrived)
                elif event.type == "done":
                    count = data["tokens"]
            else:
                for choice in data.get("choices") or []:
                    if (choice.get("delta") or {}).get("content"):
                        arrivals.append(event.arrived)
        stream.close()
    except Exception as exc:  # counted, not raised: the table reports errors
        return {"error": repr(exc)}
    if error or not arrivals:
        return {"error": str(error or "no tokens")}
    ended = arrivals[-1]
    return {"ttft": arrivals[0] - started, "gaps": [b - a for a, b in zip(arrivals, arrivals[1:])],
            "tokens": count or len(arrivals), "seconds": ended - started}


def run_level(url: str, kind: str, model: str, clients: int, per_client: int, tokens: int) -> dict:
    results, barrier = [], threading.Barrier(clients)

    def client():
        barrier.wait()
        for _ in range(per_client):
            results.append(one_request(url, kind, model, tokens))

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    ok = [r for r in results if "error" not in r]
    ttfts = sorted(r["ttft"] * 1000 for r in ok)
    gaps = [g * 1000 for r in ok for g in r["gaps"]]
    pct = lambda xs, p: xs[min(len(xs) - 1, int(p * len(xs)))] if xs else float("nan")  # noqa: E731
    return {
        "ttft_p50": pct(ttfts, 0.5), "ttft_p99": pct(ttfts, 0.99),
        "itl_p50": statistics.median(gaps) if gaps else float("nan"),
        "stream_tps": statistics.median(r["tokens"] / r["seconds"] for r in ok) if ok else 0.0,
        "aggregate_tps": sum(r["tokens"] for r in ok) / wall,
        "errors": len(results) - len(ok),
        "error_sample": next((r["error"] for r in results if "error" in r), ""),
    }


def start_peer(log_dir: Path):
    """transformers serve --continuous-batching on the same weights, bfloat16 like Rill."""
    port = free_port()
    log = open(log_dir / "peer.log", "wb")
    process = subprocess.Popen(
        [str(PEER), "serve", "--continuous-batching",
         "--host", "127.0.0.1", "--port", str(port), "--dtype", "bfloat16"],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        if process.poll() is not None:
            raise RuntimeError(f"peer exited: {(log_dir / 'peer.log').read_text()[-2000:]}")
        try:
            requests.get(url + "/v1/models", timeout=2)
            break
        except requests.ConnectionError:
            time.sleep(0.5)
    one_request(url, "openai", str(MODEL_DIR), 4)  # the first request loads the model
    return process, url


def main() -> None:
    parser = argparse.ArgumentParser(description="Rill vs transformers serve under concurrent load")
    parser.add_argument("--levels", default="1,4,8,16")
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--requests", type=int, default=2, help="requests per client per level")
    parser.add_argument("--no-peer", action="store_true")
    args = parser.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    log_dir = Path(tempfile.mkdtemp(prefix="rill-bench-"))

    rill = start_server("eventlet", log_dir, entry="app", RILL_RATE_LIMIT="1000000 per minute",
                        RILL_MAX_CONCURRENT_TURNS=1000)
    peer = None
    try:
        one_request(rill.url, "sse", "", 8)  # warm-up
        table = {}
        for level in levels:
            table[("rill-sse", level)] = run_level(rill.url, "sse", "", level, args.requests, args.tokens)
            table[("rill-v1", level)] = run_level(rill.url, "openai", "local/smollm2-135m-instruct", level,
                                                  args.requests, args.tokens)
        stop_server(rill)
        rill = None
        if not args.no_peer:
            if not PEER.exists():
                sys.exit("no peer environment: run bench/peer-env.sh first (or pass --no-peer)")
            peer, peer_url = start_peer(log_dir)
            for level in levels:
                table[("peer-v1", level)] = run_level(peer_url, "openai", str(MODEL_DIR), level, args.requests,
                                                      args.tokens)
    finally:
        if rill:
            stop_server(rill)
        if peer:
            peer.terminate()
            peer.wait(30)

    targets = sorted({t for t, _ in table}, key=["rill-sse", "rill-v1", "peer-v1"].index)
    print(f"{args.tokens} new tokens, greedy, {args.requests} requests per client; logs in {log_dir}")
    print(f"{'target':10}{'conc':>5}{'TTFT p50':>10}{'TTFT p99':>10}{'ITL p50':>9}{'tok/s/stream':>14}"
          f"{'tok/s total':>13}{'errors':>8}")
    for level in levels:
        for target in targets:
            r = table[(target, level)]
            print(f"{target:10}{level:5}{r['ttft_p50']:10.0f}{r['ttft_p99']:10.0f}{r['itl_p50']:9.1f}"
                  f"{r['stream_tps']:14.1f}{r['aggregate_tps']:13.1f}{r['errors']:8}"
                  + (f"  ({r['error_sample'][:60]})" if r["errors"] else ""))
    if "peer-v1" in targets:
        print("\nRill / peer (same model, same load; > 1 means Rill is higher):")
        for level in levels:
            peer_r = table[("peer-v1", level)]
            for target in ("rill-sse", "rill-v1"):
                r = table[(target, level)]
                print(f"  c={level:<3} {target:9} aggregate tok/s x{r['aggregate_tps'] / max(peer_r['aggregate_tps'], 1e-9):.2f}"
                      f"   TTFT p50 x{r['ttft_p50'] / max(peer_r['ttft_p50'], 1e-9):.2f}")
    print(json.dumps({f"{t}@{c}": {k: round(v, 1) if isinstance(v, float) else v for k, v in r.items()}
                      for (t, c), r in table.items()}), file=open(log_dir / "results.json", "w"))


if __name__ == "__main__":
    main()
