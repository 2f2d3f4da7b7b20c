"""What a long conversation costs llama.cpp on a CPU: a decode step, the prefill of a 25-token
follow-up (a new message and the template's markers) and of a long prompt's 512-token slice,
after 64 to 2,048 tokens of context, in a cache of the engine's shape, four ways in the same run
on the wheel's model: flash attention over a BF16 cache, a Q8_0 one, an F16 one (the engine's
default, tiled from 16 queries of one conversation over 512 cells in Rill's build:
llama_cpp.KV_TYPES), and the matrix products (F16); and a decode step of several rows, each after
its own conversation, laid out as decoding them together leaves it (a row's cells one in every few):
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

from bench.machine import cpu_flags  # noqa: E402
from rill.providers.local import wheel_gguf_path  # noqa: E402
from rill.providers.local.llama_cpp import LlamaModel, decode, new_context, put_token  # noqa: E402
from rill.providers.local.options import LocalOptions  # noqa: E402

FOLLOW_UP = 25
SLICE = 512  # the engine's prefill step alone (LlamaBatch.PREFILL_ALONE)


# (name, flash attention, the KV cache's type): the ways llama.cpp can attend on a CPU; logit_invariance.py too
WAYS = (("flash, BF16", True, "bf16"), ("flash, Q8_0", True, "q8_0"), ("flash, F16", True, "f16"),
        ("products, F16", False, "f16"))


def engine_context(model: LlamaModel, way: tuple, cells: int):
    """A context of the engine's shape (its cells, at least `cells`; its sequences), attending `way`."""
    options = LocalOptions(source=None, name="bench")
    _, flash, kv = way
    return new_context(model.handle, max(options.cache_tokens, cells), options.max_batch, SLICE, model.threads,
                       flash=flash, kv=kv)


def prefill(ctx, batch, seq: int, start: int, end: int) -> None:
    """Sequence `seq`'s conversation from position `start` to `end`, in slices."""
    while start < end:
        n = min(SLICE, end - start)
        for i in range(n):
            put_token(batch, i, 100 + (start + i + 7 * seq) % 1000, start + i, seq, False)
        batch.n_tokens = n
        decode(ctx, batch)
        start += n


def step_ms(ctx, batch, context: int, tokens: int) -> float:
    """A step of `tokens` new tokens after sequence 0's `context` (the last one's logits read), in ms;
    the sequence is cut back to its context after it."""
    for i in range(tokens):
        put_token(batch, i, 500 + i, context + i, 0, i == tokens - 1)
    batch.n_tokens = tokens
    started = time.perf_counter()
    decode(ctx, batch)
    seconds = time.perf_counter() - started
    C.llama_memory_seq_rm(C.llama_get_memory(ctx), 0, context, -1)
    return seconds * 1000


def timings(model: LlamaModel, way: tuple, contexts: list[int], repeats: int) -> dict[int, tuple[float, ...]]:
    """{context: (decode step ms, follow-up prefill ms, prompt slice ms)}, medians: of as many follow-ups
    as steps (a third as many put one follow-up after 1,100 tokens at 1.03x and 2.0x one after 40)."""
    ctx = engine_context(model, way, max(contexts) + SLICE)
    batch = C.llama_batch_init(SLICE, 0, 1)
    out, position = {}, 0
    try:
        for context in contexts:
            prefill(ctx, batch, 0, position, context)  # the conversation so far
            position = context
            out[context] = tuple(statistics.median(step_ms(ctx, batch, context, tokens) for _ in range(n))
                                 for tokens, n in ((1, repeats), (FOLLOW_UP, repeats), (SLICE, max(1, repeats // 5))))
    finally:
        C.llama_batch_free(batch)
        C.llama_free(ctx)
    return out


def interleaved(ctx, batch, rows: int, context: int) -> None:
    """Sequences 0 to rows-1, `context` tokens each, position by position (every row's token at one
    position, then the next), as rows decoding together fill the cache: a row's cells lie one in
    every `rows`, not side by side as a prompt's do."""
    entries = [(position, seq) for position in range(context) for seq in range(rows)]
    for start in range(0, len(entries), SLICE):
        part = entries[start:start + SLICE]
        for i, (position, seq) in enumerate(part):
            put_token(batch, i, 100 + (position + 7 * seq) % 1000, position, seq, False)
        batch.n_tokens = len(part)
        decode(ctx, batch)


def batched(model: LlamaModel, way: tuple, shape: tuple[int, int], repeats: int, tokens: int = 0) -> float:
    """Median ms of a decode step of `rows` rows, each after `context` tokens of its own; of `tokens`
    tokens spread over them where given (a row's guesses are its next positions: step_sizes.py)."""
    rows, context = shape
    tokens = tokens or rows
    ctx = engine_context(model, way, rows * (context + 1) + tokens)
    batch, memory = C.llama_batch_init(SLICE, 0, 1), C.llama_get_memory(ctx)
    try:
        interleaved(ctx, batch, rows, context)

        def timed() -> float:
            for i in range(tokens):
                put_token(batch, i, 500 + i, context + i // rows, i % rows, True)
            batch.n_tokens = tokens
            started = time.perf_counter()
            decode(ctx, batch, f"{tokens} tokens over {rows} rows")
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
    found = {way: timings(model, way, contexts, args.repeats) for way in WAYS}
    flags = cpu_flags()
    print(f"CPU flags: {' '.join(flags)}; {model.threads} threads; {model.describe()['dtype']}; medians, ms "
          f"(in brackets: against {WAYS[0][0]})")
    for n, what in enumerate(("a decode step", f"a {FOLLOW_UP}-token follow-up", f"a {SLICE}-token prompt slice")):
        print(f"\n{what}:\n{'context':>8}" + "".join(f"{way[0]:>24}" for way in WAYS))
        for context in contexts:
            first = found[WAYS[0]][context][n]
            print(f"{context:8}" + "".join(f"{found[way][context][n]:14.1f} ({found[way][context][n] / first:5.2f}x)"
                                           for way in WAYS))
    print(f"\na decode step of several rows:\n{'rows':>5}{'context each':>14}"
          + "".join(f"{way[0]:>24}" for way in WAYS))
    for shape in shapes:
        steps = [batched(model, way, shape, args.repeats) for way in WAYS]
        print(f"{shape[0]:5}{shape[1]:14}" + "".join(f"{step:14.1f} ({step / steps[0]:5.2f}x)" for step in steps))


if __name__ == "__main__":
    main()
