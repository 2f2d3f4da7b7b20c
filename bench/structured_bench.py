"""Structured outputs and embeddings, in process, on both engines, in one run.

1. Decode tok/s held to a JSON Schema against free text, at c=1 and c=8, and the free rows of a
   batch where half the rows are held (the issue's bound: those rows no more than 10 % slower).
2. The mask's cost per token: llguidance (what Rill uses) against llama.cpp's own grammar sampler
   (GBNF from the same schema, applied to a token array built from the logits, as Rill's
   Python-side sampling would have to), over the same tokens.
3. Embeddings per second at batch 1 and 32.

Usage: python bench/structured_bench.py [--tokens 128] [--rounds 3]
"""
from __future__ import annotations

import argparse
import ctypes
import json
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from rill.config import Settings  # noqa: E402
from rill.providers.base import ChatMessage, GenerationOptions, Job, OutputFormat  # noqa: E402
from rill.providers.local import LocalProvider  # noqa: E402
from rill.providers.local.grammar import Constraint  # noqa: E402
from tests.test_batching import collect, scheduling  # noqa: E402

STORY = {"type": "object", "properties": {"title": {"type": "string"}, "story": {"type": "string"}},
         "required": ["title", "story"], "additionalProperties": False}
PROMPT = "Write a long story about a river, as JSON with a title and the story."


def decode_rate(provider, rows: list[bool], tokens: int) -> tuple[float, float]:
    """Aggregate tok/s of the free rows and of the held rows, run together (rows: held or not)."""
    jobs = []
    for n, held in enumerate(rows):
        options = GenerationOptions(max_tokens=tokens, temperature=0, seed=n,
                                    output_format=OutputFormat("json_schema", STORY) if held else None)
        jobs.append((held, Job(provider, "m", [ChatMessage("user", f"{PROMPT} ({n})")], options)))
    started = time.perf_counter()
    for _, job in jobs:
        provider.submit(job)
    done = {True: 0, False: 0}
    for held, job in jobs:
        _, finish = collect(job, timeout=600)
        done[held] += finish.completion_tokens
    elapsed = time.perf_counter() - started
    return done[False] / elapsed, done[True] / elapsed


def mask_costs(provider, rounds: int) -> tuple[float, float | None]:
    """Median ms per token to mask the logits: llguidance, and llama.cpp's grammar (llama.cpp only)."""
    model = provider.model
    options = GenerationOptions(max_tokens=96, temperature=0, output_format=OutputFormat("json_schema", STORY))
    text = "".join(i for i in provider.stream("m", [ChatMessage("user", PROMPT)], options, threading.Event())
                   if isinstance(i, str))
    tokens = model.tokenizer.encode(text)
    logits = np.random.default_rng(0).standard_normal(model.n_vocab).astype(np.float32)
    ours, theirs = [], []
    for _ in range(rounds):
        constraint = Constraint(model.grammar_tokenizer, OutputFormat("json_schema", STORY))
        started = time.perf_counter()
        for token in tokens:
            constraint.mask(logits if model.engine == "llama.cpp" else __import__("torch").from_numpy(logits))
            constraint.take(token)
        ours.append((time.perf_counter() - started) * 1000 / len(tokens))
        if model.engine == "llama.cpp":
            theirs.append(llama_grammar_cost(model, tokens, logits))
    return statistics.median(ours), statistics.median(theirs) if theirs else None


def llama_grammar_cost(model, tokens: list[int], logits: np.ndarray) -> float:
    import llama_cpp as C
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    sampler = C.llama_sampler_init_grammar(model.vocab, json_schema_to_gbnf(json.dumps(STORY)).encode(), b"root")
    data = np.zeros(model.n_vocab, dtype=[("id", np.int32), ("logit", np.float32), ("p", np.float32)])
    started = time.perf_counter()
    for token in tokens:
        data["id"] = np.arange(model.n_vocab)
        data["logit"] = logits
        array = C.llama_token_data_array(data.ctypes.data_as(ctypes.POINTER(C.llama_token_data)), model.n_vocab, -1,
                                         False)
        C.llama_sampler_apply(sampler, ctypes.byref(array))
        C.llama_sampler_accept(sampler, token)
    elapsed = (time.perf_counter() - started) * 1000 / len(tokens)
    C.llama_sampler_free(sampler)
    return elapsed


def embedding_rates(provider, rounds: int) -> dict:
    texts = [f"Sentence number {n} is about rivers, cities and the weather today." for n in range(32)]
    out = {}
    for size in (1, 32):
        rates = []
        for _ in range(rounds):
            started = time.perf_counter()
            for start in range(0, 32, size):
                provider.embed("m", texts[start:start + size])
            rates.append(32 / (time.perf_counter() - started))
        out[size] = statistics.median(rates)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    flags = sorted({f for line in open("/proc/cpuinfo") if line.startswith("flags") for f in line.split()
                    if f.startswith(("avx", "amx", "fma", "f16c"))})
    print(f"CPU flags: {' '.join(flags)}; medians of {args.rounds} rounds; {args.tokens} tokens a row, greedy")
    for engine in ("llamacpp", "transformers"):
        provider = LocalProvider(Settings.from_env(engine=engine, context_tokens=1024, max_batch=8))
        provider.load()
        ours, theirs = mask_costs(provider, args.rounds)
        print(f"\n{engine}: mask per token llguidance {ours:.3f} ms"
              + (f", llama.cpp grammar {theirs:.3f} ms ({theirs / ours:.1f}x)" if theirs else ""))
        with scheduling(provider):
            for c in (1, 8):
                free = statistics.median(decode_rate(provider, [False] * c, args.tokens)[0] for _ in range(args.rounds))
                held = statistics.median(decode_rate(provider, [True] * c, args.tokens)[1] for _ in range(args.rounds))
                print(f"  c={c}: free {free:.1f} tok/s, held to the schema {held:.1f} tok/s ({held / free:.2f}x)")
            mixed = [decode_rate(provider, [False, True] * 4, args.tokens) for _ in range(args.rounds)]
            alone = [decode_rate(provider, [False] * 8, args.tokens)[0] / 2 for _ in range(args.rounds)]
            free_mixed, free_alone = statistics.median(m[0] for m in mixed), statistics.median(alone)
            print(f"  4 free rows beside 4 held: {free_mixed:.1f} tok/s; 4 of 8 free rows: {free_alone:.1f} tok/s "
                  f"({free_mixed / free_alone:.2f}x)")
        rates = embedding_rates(provider, args.rounds)
        print(f"  embeddings: batch 1 {rates[1]:.1f}/s, batch 32 {rates[32]:.1f}/s")


if __name__ == "__main__":
    main()
