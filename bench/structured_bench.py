"""Structured outputs and embeddings, in process, on both engines, in one run.

1. Decode tok/s held to a JSON Schema against free text, at c=1 and c=8, and the free rows of a
   batch where half the rows are held (the issue's bound: those rows no more than 10 % slower).
2. The mask's cost per token: llguidance (what Rill uses) against llama.cpp's own grammar sampler
   (GBNF from the same schema, applied to a token array built from the logits, as Rill's
   Python-side sampling would have to), over the same tokens.
3. Embeddings per second at batch 1 and 32.
4. With --peers (after bench/peer-env.sh): over HTTP, Rill against llama-cpp-python's server on the
   same GGUF: held decoding at c=1 and c=8 (its server runs one request at a time), and embeddings
   per second at batch 1 and 32 (its server started with --embedding).

Usage: python bench/structured_bench.py [--tokens 128] [--rounds 3] [--peers]
"""
from __future__ import annotations

import argparse
import ctypes
import json
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import requests  # noqa: E402

from bench.load_bench import PEER_VENV, start_process, start_target, wait_quiet  # noqa: E402

from rill.config import Settings  # noqa: E402
from rill.providers.base import ChatMessage, GenerationOptions, Job, OutputFormat  # noqa: E402
from rill.providers.local import LocalProvider  # noqa: E402
from rill.providers.local.grammar import Constraint, format_grammar  # noqa: E402
from tests.test_batching import collect, scheduling  # noqa: E402

STORY = {"type": "object", "properties": {"title": {"type": "string"}, "story": {"type": "string"}},
         "required": ["title", "story"], "additionalProperties": False}
# For rates: a schema no reply can finish within the tokens, so held rows write as many as free ones.
ENDLESS = {"type": "object", "properties": {"numbers": {"type": "array", "minItems": 10000,
                                                        "items": {"type": "integer", "minimum": 0, "maximum": 999}}},
           "required": ["numbers"], "additionalProperties": False}
PROMPT = "Write a long story about a river, as JSON with a title and the story."


def decode_rate(provider, rows: list[bool], tokens: int) -> tuple[float, float]:
    """Aggregate tok/s of the free rows and of the held rows, run together (rows: held or not)."""
    jobs = []
    for n, held in enumerate(rows):
        options = GenerationOptions(max_tokens=tokens, temperature=0, seed=n,
                                    output_format=OutputFormat("json_schema", ENDLESS) if held else None)
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
        constraint = Constraint(model.grammar_tokenizer, format_grammar(OutputFormat("json_schema", STORY)))
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


def http_held(url: str, model: str, c: int, tokens: int, peer: bool) -> float:
    """Aggregate tok/s of c concurrent requests held to ENDLESS (llama-cpp-python takes a schema as
    its own json_object form)."""
    fmt = {"type": "json_object", "schema": ENDLESS} if peer else {
        "type": "json_schema", "json_schema": {"name": "numbers", "schema": ENDLESS}}
    body = {"model": model, "max_tokens": tokens, "temperature": 0, "response_format": fmt}

    def one(n):
        reply = requests.post(f"{url}/v1/chat/completions", timeout=600, json={
            **body, "messages": [{"role": "user", "content": f"List numbers as JSON ({n})."}]})
        assert reply.status_code == 200, reply.text
        text = reply.json()["choices"][0]["message"]["content"]
        assert text.startswith('{"numbers"') or text.startswith('{ "numbers"'), text[:80]  # held, both
        return reply.json()["usage"]["completion_tokens"]

    started = time.perf_counter()
    with ThreadPoolExecutor(c) as pool:
        produced = sum(pool.map(one, range(c)))
    return produced / (time.perf_counter() - started)


def http_embeddings(url: str, model: str, size: int) -> float:
    texts = [f"Sentence number {n} is about rivers, cities and the weather today." for n in range(32)]
    started = time.perf_counter()
    for start in range(0, 32, size):
        reply = requests.post(f"{url}/v1/embeddings", json={"model": model, "input": texts[start:start + size]},
                              timeout=600)
        assert reply.status_code == 200, reply.text
    return 32 / (time.perf_counter() - started)


def peers(rounds: int, tokens: int) -> None:
    """Rill's llama.cpp engine and llama-cpp-python's server, alternating, on the same GGUF."""
    from rill.providers.local.choice import wheel_gguf_path
    from tests.server import free_port

    logs = Path(tempfile.mkdtemp(prefix="structured-bench-"))
    figures: dict[str, dict[str, list]] = {}
    for _ in range(rounds):
        for name in ("rill-llamacpp", "llama-cpp-python"):
            url, model, stop = start_target(name, logs)
            try:
                row = figures.setdefault(name, {})
                for c in (1, 8):
                    row.setdefault(f"held c={c}", []).append(http_held(url, model, c, tokens, name != "rill-llamacpp"))
                if name == "rill-llamacpp":
                    for size in (1, 32):
                        row.setdefault(f"emb b={size}", []).append(http_embeddings(url, model, size))
            finally:
                stop()
            wait_quiet()
        port = free_port()  # llama-cpp-python embeds only in a server started for it
        url, stop = start_process("llama-cpp-python-embedding", [
            str(PEER_VENV / "python"), "-m", "llama_cpp.server", "--model", str(wheel_gguf_path()), "--host",
            "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--embedding", "true"], logs, port)
        try:
            for size in (1, 32):
                figures["llama-cpp-python"].setdefault(f"emb b={size}", []).append(http_embeddings(url, "m", size))
        finally:
            stop()
        wait_quiet()
    rill, peer = ({k: statistics.median(v) for k, v in figures[n].items()} for n in ("rill-llamacpp", "llama-cpp-python"))
    print(f"\nOver HTTP, same GGUF, medians of {rounds} alternating rounds:")
    for key in ("held c=1", "held c=8", "emb b=1", "emb b=32"):
        unit = "tok/s" if key.startswith("held") else "inputs/s"
        print(f"  {key}: Rill {rill[key]:.1f} {unit}, llama-cpp-python {peer[key]:.1f} {unit} "
              f"({rill[key] / peer[key]:.2f}x)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--peers", action="store_true", help="also against llama-cpp-python's server (peer-env.sh)")
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
            decode_rate(provider, [False, True], 8)  # warm: the first steps after a load cost more
            for c in (1, 8):
                free = statistics.median(decode_rate(provider, [False] * c, args.tokens)[0] for _ in range(args.rounds))
                held = statistics.median(decode_rate(provider, [True] * c, args.tokens)[1] for _ in range(args.rounds))
                print(f"  c={c}: free {free:.1f} tok/s, held to the schema {held:.1f} tok/s ({held / free:.2f}x)")
            mixed = [decode_rate(provider, [False, True] * 4, args.tokens) for _ in range(args.rounds)]
            alone = [decode_rate(provider, [False] * 8, args.tokens)[0] / 2 for _ in range(args.rounds)]
            free_mixed, free_alone = statistics.median(m[0] for m in mixed), statistics.median(alone)
            step_ms = 1000 * 8 / statistics.median(alone) / 2  # a step of 8 rows, free
            print(f"  4 free rows beside 4 held: {free_mixed:.1f} tok/s; 4 of 8 free rows: {free_alone:.1f} tok/s "
                  f"({free_mixed / free_alone:.2f}x); 4 rows' masks are {4 * ours / step_ms:.1%} of a step")
        rates = embedding_rates(provider, args.rounds)
        print(f"  embeddings: batch 1 {rates[1]:.1f}/s, batch 32 {rates[32]:.1f}/s")
        provider.close("done")
    if args.peers:
        peers(args.rounds, args.tokens)


if __name__ == "__main__":
    main()
