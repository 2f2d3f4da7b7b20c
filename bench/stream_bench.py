"""TTFT, inter-token latency and tokens/s: the raw engine vs POST /api/chat/stream.

Same model, prompt and length, greedy, in one run; the server runs in its own process on
loopback. Usage: python bench/stream_bench.py [--runs 5] [--tokens 128] [--mode eventlet]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rill.config import Settings  # noqa: E402
from rill.providers.base import ChatMessage, Finish, GenerationOptions  # noqa: E402
from rill.providers.local import LocalProvider  # noqa: E402
from tests.server import start_server, stop_server  # noqa: E402
from tests.sse import SSEStream  # noqa: E402

PROMPT = "Write a detailed story about a river that flows through a city."


def measure(times: list[float], started: float, tokens: int) -> dict:
    """times: arrival of each text piece; tokens: completion tokens the model reported."""
    gaps = [b - a for a, b in zip(times, times[1:])]
    return {
        "ttft_ms": (times[0] - started) * 1000,
        "itl_ms": statistics.median(gaps) * 1000,
        "tok_s": (tokens - 1) / (times[-1] - times[0]),  # decode rate after the first token
        "tokens": tokens,
    }


def run_raw(provider: LocalProvider, max_tokens: int) -> dict:
    options = GenerationOptions(max_tokens=max_tokens, temperature=0)
    started = time.perf_counter()
    times, finish = [], None
    for item in provider.stream("m", [ChatMessage("user", PROMPT)], options, threading.Event()):
        if isinstance(item, Finish):
            finish = item
        elif isinstance(item, str):
            times.append(time.perf_counter())
    return measure(times, started, finish.completion_tokens)


def run_server(url: str, max_tokens: int) -> dict:
    started = time.perf_counter()
    stream = SSEStream(f"{url}/api/chat/stream", {"message": PROMPT, "temperature": 0, "max_tokens": max_tokens})
    times, done = [], None
    for event in stream:
        if event.type == "token":
            times.append(event.arrived)
        elif event.type == "done":
            done = event.json()
    stream.close()
    return measure(times, started, done["tokens"])


def median_of(runs: list[dict]) -> dict:
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--mode", default="eventlet", choices=["eventlet", "threading"])
    args = parser.parse_args()

    provider = LocalProvider(Settings.from_env())
    provider.load()
    server = start_server(args.mode, Path(tempfile.mkdtemp()), entry="rill.entry")
    try:
        run_raw(provider, 8), run_server(server.url, 8)  # warm-up
        raw, http = [], []
        for _ in range(args.runs):  # interleaved, so drift hits both alike
            raw.append(run_raw(provider, args.tokens))
            http.append(run_server(server.url, args.tokens))
    finally:
        stop_server(server)
    r, h = median_of(raw), median_of(http)
    print(f"model {provider.model_name} ({provider.model.describe()}), {args.tokens} new tokens, greedy, "
          f"median of {args.runs} runs, server in {args.mode} mode")
    print(f"{'':22}{'raw engine':>12}{'SSE route':>12}{'ratio':>10}")
    for key, label in (("ttft_ms", "TTFT ms"), ("itl_ms", "inter-token ms"), ("tok_s", "tokens/s")):
        print(f"{label:22}{r[key]:12.1f}{h[key]:12.1f}{h[key] / r[key]:10.3f}")
    print(f"TTFT overhead: {h['ttft_ms'] - r['ttft_ms']:+.1f} ms (target <= 20 ms)")
    print(f"tokens/s ratio: {h['tok_s'] / r['tok_s']:.3f} x raw (target >= 0.95)")


if __name__ == "__main__":
    main()
