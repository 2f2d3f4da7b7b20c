"""Turn 1 against turn 20 of the load benchmark's chat in the model alone: the prefill step that
gives each its first token, 22 new tokens after 40 of context and 19 after 1,100 (and a 25-token
follow-up after 1,100), on the wheel's model with the engine's F16 cache. Each shape has a context
of its own in one process, and their steps alternate: this machine's speed moves between two levels
over minutes, which puts runs of one shape after the other as much as 1.3x apart.

Usage: python bench/turn_bench.py [--steps 15] [--runs 1]
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import llama_cpp as C  # noqa: E402

from bench.context_bench import SLICE, engine_context, prefill, step_ms  # noqa: E402
from bench.machine import cpu_flags  # noqa: E402
from rill.providers.local import wheel_gguf_path  # noqa: E402
from rill.providers.local.llama_cpp import LlamaModel  # noqa: E402
from rill.providers.local.options import LocalOptions  # noqa: E402

SHAPES = ((40, 22), (1100, 19), (1100, 25))  # (context, new tokens): turn 1, turn 20, context_bench's follow-up


def run(model: LlamaModel, steps: int) -> list[float]:
    """Median ms of each shape's step, the shapes' steps alternating."""
    contexts = []
    try:
        for context, _ in SHAPES:
            ctx = engine_context(model, ("flash, F16", True, "f16"), context + SLICE)
            batch = C.llama_batch_init(SLICE, 0, 1)
            contexts.append((ctx, batch))
            prefill(ctx, batch, 0, 0, context)
        times: list[list[float]] = [[] for _ in SHAPES]
        for _ in range(steps):
            for (context, new), (ctx, batch), out in zip(SHAPES, contexts, times):
                out.append(step_ms(ctx, batch, context, new))
        return [statistics.median(out) for out in times]
    finally:
        for ctx, batch in contexts:
            C.llama_batch_free(batch)
            C.llama_free(ctx)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    model = LlamaModel(wheel_gguf_path(), LocalOptions(source=None, name="bench"))
    model.load()
    print(f"CPU flags: {' '.join(cpu_flags())}; {model.threads} threads; medians of {args.steps} steps, ms")
    print("".join(f"{f'{new} after {context}':>14}" for context, new in SHAPES) + f"{'turn 20 / turn 1':>18}")
    for _ in range(args.runs):
        medians = run(model, args.steps)
        print("".join(f"{m:14.1f}" for m in medians) + f"{medians[1] / medians[0]:18.2f}")


if __name__ == "__main__":
    main()
