"""What serving costs a token: CPU time of the server's main thread (HTTP, the turn's event log,
SSE, the socket) per streamed piece of text, beside its other threads' (the model's and its math
library's workers), on /v1/chat/completions with the local model, read from /proc while clients
stream.

On 2 cores llama.cpp decodes on both, so whatever the main thread spends per token is taken from
the decode step it runs beside: this is the figure to cut for c=1 (see README, Performance).

Usage: python bench/serve_cost.py [--levels 1,8] [--tokens 128] [--rounds 3] [--engine llamacpp]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from load_bench import PROMPT, one_request, run_level, user, wait_quiet  # noqa: E402
from tests.server import start_server, stop_server  # noqa: E402

MODEL = "local/smollm2-135m-instruct"


def thread_seconds(pid: int) -> tuple[float, float]:
    """CPU seconds (user + system) of the process's main thread, and of all its other threads."""
    main = others = 0.0
    for task in Path(f"/proc/{pid}/task").iterdir():
        fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        seconds = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        if task.name == str(pid):
            main += seconds
        else:
            others += seconds
    return main, others


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", default="1,8")
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--engine", default="llamacpp", choices=["llamacpp", "transformers"])
    args = parser.parse_args()
    server = start_server("eventlet", Path(tempfile.mkdtemp(prefix="rill-serve-cost-")), entry="rill.entry",
                          RILL_ENGINE=args.engine, RILL_RATE_LIMIT="1000000 per minute",
                          RILL_MAX_CONCURRENT_TURNS="1000")
    try:
        one_request(server.url, MODEL, user(PROMPT), 8)  # warm-up
        print(f"{args.engine}, {args.tokens} new tokens, {args.rounds} rounds a level; CPU per streamed piece (a token, or a few bytes of one):")
        print(f"{'conc':>5}{'main thread us':>16}{'other threads us':>18}{'tok/s total':>13}")
        for clients in (int(c) for c in args.levels.split(",")):
            wait_quiet()
            before, tokens, rates = thread_seconds(server.process.pid), 0, []
            for _ in range(args.rounds):
                result = run_level(server.url, MODEL, clients, 1, args.tokens)
                tokens += result["pieces"]
                rates.append(result["aggregate_tps"])
            after = thread_seconds(server.process.pid)
            main, others = (a - b for a, b in zip(after, before))
            print(f"{clients:5}{main / tokens * 1e6:16.0f}{others / tokens * 1e6:18.0f}"
                  f"{sorted(rates)[len(rates) // 2]:13.1f}")
    finally:
        stop_server(server)


if __name__ == "__main__":
    main()
