"""What a long conversation costs llama.cpp on a CPU: a decode step, the prefill of a 25-token
follow-up (a new message and the template's markers) and of a long prompt's 512-token slice, after
64 to 2,048 tokens of context, in a
cache of the engine's shape, through llama.cpp's flash attention and through its matrix products
(what Rill's engine uses on a CPU: llama_cpp.new_context), in the same run on the wheel's model.

Usage: python bench/context_bench.py [--contexts 64,256,512,1100,2048] [--repeats 10]
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


def timings(model: LlamaModel, flash: bool, contexts: list[int], repeats: int) -> dict[int, tuple[float, ...]]:
    """{context: (decode step ms, follow-up prefill ms, prompt slice ms)}, medians."""
    options = LocalOptions(source=None, name="bench")  # the engine's cache: its cells, its sequences
    ctx = new_context(model.handle, max(options.cache_tokens, max(contexts) + 64), options.max_batch, 512,
                      model.threads, flash=flash)
    batch, memory = C.llama_batch_init(SLICE, 0, 1), C.llama_get_memory(ctx)
    out, position = {}, 0
    try:
        for context in contexts:
            while position < context:  # the conversation so far
                n = min(SLICE, context - position)
                for i in range(n):
                    put_token(batch, i, 100 + (position + i) % 1000, position + i, 0, False)
                batch.n_tokens = n
                C.llama_decode(ctx, batch)
                position += n

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contexts", default="64,256,512,1100,2048")
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    contexts = [int(c) for c in args.contexts.split(",")]
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


if __name__ == "__main__":
    main()
