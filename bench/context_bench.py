"""What a long conversation costs llama.cpp on a CPU: a decode step, the prefill of a 25-token
follow-up (a new message and the template's markers) and of a long prompt's 512-token slice,
after 64 to 2,048 tokens of context, in a cache of the engine's shape, through llama.cpp's flash
attention (what Rill's engine uses: llama_cpp.new_context) and through its matrix products, in the
same run on the wheel's model; and a decode step of several rows, each after its own conversation:
the products read every row's cells for every query, flash attention skips other conversations'
cells.

Usage: python bench/context_bench.py [--contexts 64,256,512,1100,2048] [--rows 8x200,8x1100,16x200,16x600]
       [--repeats 10]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import llama_cpp as C  # noqa: E402

from rill.providers.local import wheel_gguf_path  # noqa: E402
from rill.providers.local.llama_cpp import LlamaModel, new_context, put_token  # noqa: E402
from rill.providers.local.options import LocalOptions  # noqa: E402

FOLLOW_UP = 25
SLICE = 512  # the engine's prefill step alone (LlamaBatch.PREFILL_ALONE)


def engine_context(model: LlamaModel, flash: bool, cells: int):
    """A context of the engine's shape: its cells (at least `cells`), its sequences."""
    options = LocalOptions(source=None, name="bench")
    return new_context(model.handle, max(options.cache_tokens, cells), options.max_batch, SLICE, model.threads,
                       flash=flash)


def prefill(ctx, batch, seq: int, start: int, end: int) -> None:
    """Sequence `seq`'s conversation from position `start` to `end`, in slices."""
    while start < end:
        n = min(SLICE, end - start)
        for i in range(n):
            put_token(batch, i, 100 + (start + i + 7 * seq) % 1000, start + i, seq, False)
        batch.n_tokens = n
        C.llama_decode(ctx, batch)
        start += n


def timings(model: LlamaModel, flash: bool, contexts: list[int], repeats: int) -> dict[int, tuple[float, ...]]:
    """{context: (decode step ms, follow-up prefill ms, prompt slice ms)}, medians."""
    ctx = engine_context(model, flash, max(contexts) + SLICE)
    batch, memory = C.llama_batch_init(SLICE, 0, 1), C.llama_get_memory(ctx)
    out, position = {}, 0
    try:
        for context in contexts:
            prefill(ctx, batch, 0, position, context)  # the conversation so far
            position = context

            def timed(tokens: int) -> float:
                for i in range(tokens):
                    put_token(batch, i, 500 + i, position + i, 0, i == tokens - 1)
                batch.n_tokens = tokens
                started = time.perf_counter()
                C.llama_decode(ctx, batch)
                seconds = time.perf_counter() - started
                C.llama_memory_seq_rm(memory, 0, position, -1)  # back to the conversation alone
                return seconds * 1000

            out[context] = (statistics.median(timed(1) for _ in range(repeats)),
                            statistics.median(timed(FOLLOW_UP) for _ in range(max(3, repeats // 3))),
                            statistics.median(timed(SLICE) for _ in range(max(1, repeats // 5))))
    finally:
        C.llama_batch_free(batch)
        C.llama_free(ctx)
    return out


def batched(model: LlamaModel, flash: bool, shape: tuple[int, int], repeats: int) -> float:
    """Median ms of a decode step of `rows` rows, each after `context` tokens of its own."""
    rows, context = shape
    ctx = engine_context(model, flash, rows * (context + 1))
    batch, memory = C.llama_batch_init(SLICE, 0, 1), C.llama_get_memory(ctx)
    try:
        for seq in range(rows):
            prefill(ctx, batch, seq, 0, context)

        def timed() -> float:
            for seq in range(rows):
                put_token(batch, seq, 500 + seq, context, seq, True)
            batch.n_tokens = rows
            started = time.perf_counter()
            C.llama_decode(ctx, batch)
            seconds = time.perf_counter() - started
            for seq in range(rows):
                C.llama_memory_seq_rm(memory, seq, context, -1)
            return seconds * 1000

        timed()
        return statistics.median(timed() for _ in range(repeats))
    finally:
        C.llama_batch_free(batch)
        C.llama_free(ctx)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contexts", default="64,256,512,1100,2048")
    parser.add_argument("--rows", default="8x200,8x1100,16x200,16x600", help="ROWSxCONTEXT decode steps")
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    contexts = [int(c) for c in args.contexts.split(",")]
    shapes = [tuple(int(n) for n in shape.split("x")) for shape in args.rows.split(",") if shape]
    model = LlamaModel(wheel_gguf_path(), LocalOptions(source=None, name="bench"))
    model.load()
    flash = timings(model, True, contexts, args.repeats)
    products = timings(model, False, contexts, args.repeats)
    flags = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f" {f}" in Path("/proc/cpuinfo").read_text()]
    print(f"CPU flags: {' '.join(flags)}; {model.threads} threads; {model.describe()['dtype']}; medians")
    print(f"{'context':>8}{'decode, flash':>15}{'decode, products':>18}{'ratio':>7}"
          f"{f'{FOLLOW_UP} tokens, flash':>19}{f'{FOLLOW_UP} tokens, products':>22}{'ratio':>7}"
          f"{f'{SLICE} tokens, flash':>18}{f'{SLICE} tokens, products':>21}{'ratio':>7}")
    for context in contexts:
        (fd, fp, fs), (pd, pp, ps) = flash[context], products[context]
        print(f"{context:8}{fd:13.1f}ms{pd:16.1f}ms{pd / fd:7.2f}{fp:17.1f}ms{pp:20.1f}ms{pp / fp:7.2f}"
              f"{fs:16.0f}ms{ps:19.0f}ms{ps / fs:7.2f}")
    print(f"\n{'rows':>5}{'context each':>14}{'step, flash':>13}{'step, products':>16}{'ratio':>7}")
    for shape in shapes:
        step_flash, step_products = batched(model, True, shape, args.repeats), batched(model, False, shape, args.repeats)
        print(f"{shape[0]:5}{shape[1]:14}{step_flash:11.1f}ms{step_products:14.1f}ms{step_products / step_flash:7.2f}")


if __name__ == "__main__":
    main()
