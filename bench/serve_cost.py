"""What serving costs a token: the server's CPU time (HTTP, the turn's event log, SSE, the socket;
user and system) per streamed token, beside the model's (its engine thread and the math library's
workers it started, known by their name), on /v1/chat/completions with the local model, read from
/proc while clients stream. Speculation is off: one token a piece, so a token's cost is a piece's.

On 2 cores llama.cpp decodes on both, so whatever serving spends per token is taken from the
decode step it runs beside: this is the figure to cut for c=1 (see PERFORMANCE.md).

Usage: python bench/serve_cost.py [--levels 1,16] [--tokens 128] [--rounds 3] [--engine llamacpp]
                                  [--modes eventlet,threading]
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
TICKS = os.sysconf("SC_CLK_TCK")


def clock_ticks(stat: Path) -> tuple[float, float]:
    """A process's or thread's user and system CPU seconds from its /proc stat file (10 ms ticks),
    threads that ended included for a process."""
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / TICKS, int(fields[12]) / TICKS


def cpu_seconds(pid: int) -> tuple[float, float, float]:
    """The process's CPU seconds serving (every thread's but the model's, the ones gone included),
    of it in the kernel, and the model's (its engine thread and the math library's workers it
    started, which carry its name, rill-<provider>). Live threads are read to the nanosecond
    (schedstat), threads gone by their share of the process's clock ticks (10 ms each)."""

    def on_cpu(task: Path) -> float:
        return int((task / "schedstat").read_text().split()[0]) / 1e9

    user, system = clock_ticks(Path(f"/proc/{pid}/stat"))
    gone, serving, model = user + system, 0.0, 0.0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            task_user, task_system = clock_ticks(task / "stat")
            seconds = on_cpu(task)
            if (task / "comm").read_text().startswith("rill-"):
                system -= task_system
                model += seconds
            else:
                serving += seconds
            gone -= task_user + task_system
        except FileNotFoundError:  # a request's thread that ended meanwhile
            continue
    return serving + max(gone, 0.0), system, model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", default="1,16")
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--engine", default="llamacpp", choices=["llamacpp", "transformers"])
    parser.add_argument("--modes", default="eventlet,threading")
    args = parser.parse_args()
    print(f"{args.engine}, {args.tokens} new tokens, {args.rounds} rounds a level; CPU per streamed token:")
    print(f"{'mode':>10}{'conc':>5}{'serving us':>12}{'of it system':>14}{'model us':>10}{'tok/s total':>13}")
    for mode in args.modes.split(","):
        measure(mode, args)


def measure(mode: str, args: argparse.Namespace) -> None:
    server = start_server(mode, Path(tempfile.mkdtemp(prefix="rill-serve-cost-")), entry="rill.entry",
                          RILL_ENGINE=args.engine, RILL_SPECULATE="off", RILL_RATE_LIMIT="1000000 per minute",
                          RILL_MAX_CONCURRENT_TURNS="1000")
    try:
        one_request(server.url, MODEL, user(PROMPT), 8)  # warm-up
        for clients in (int(c) for c in args.levels.split(",")):
            wait_quiet()
            before, tokens, rates = cpu_seconds(server.process.pid), 0, []
            for _ in range(args.rounds):
                result = run_level(server.url, MODEL, clients, 1, args.tokens)
                tokens += result["tokens"]
                rates.append(result["aggregate_tps"])
            serving, system, model = ((a - b) / tokens * 1e6 for a, b in zip(cpu_seconds(server.process.pid), before))
            print(f"{mode:>10}{clients:5}{serving:12.0f}{system:14.0f}{model:10.0f}"
                  f"{sorted(rates)[len(rates) // 2]:13.1f}")
    finally:
        stop_server(server)


if __name__ == "__main__":
    main()
