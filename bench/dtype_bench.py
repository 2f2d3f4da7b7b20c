"""The transformers engine's dtype pick on this CPU, against raw transformers in each dtype.

Raw `generate` (greedy, batch 1, 8 and 16) in float32 and in bfloat16 is the baseline; Rill's
transformers engine with RILL_DTYPE=auto (timed at load, both copies kept where each wins) runs
the same number of concurrent turns through its scheduler. Without native bf16 (AVX2 only)
bfloat16 wins alone and float32 wins batched: a pick by CPU flags loses at one end.

Usage: python bench/dtype_bench.py [--tokens 64]
"""
from __future__ import annotations

import argparse
import multiprocessing
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.machine import cpu_flags  # noqa: E402
from rill.config import Settings  # noqa: E402
from rill.providers.base import ChatMessage, Failure, Finish, GenerationOptions, Job  # noqa: E402
from rill.providers.directory import ProviderDirectory  # noqa: E402
from rill.providers.local import LocalProvider  # noqa: E402
from rill.runtime import real_threading  # noqa: E402

PROMPT = "Write a long, detailed story about a river that flows through an old city."
MODEL_DIR = Path(Settings.from_env().cache_dir) / "models" / "smollm2-135m-instruct"
BATCHES = (1, 8, 16)


@torch.inference_mode()
def raw_generate(dtype: torch.dtype, batches: tuple[int, ...], tokens: int, prompt: str = PROMPT,
                 runs: int = 2) -> dict[int, float]:
    """Aggregate tokens/s of transformers' own greedy generate, `batch` copies of the prompt, for
    each batch size: the best of `runs` (a shared machine's noise only ever slows a run down)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(MODEL_DIR))
    model = AutoModelForCausalLM.from_pretrained(str(MODEL_DIR), dtype=dtype).eval()  # SDPA, as Rill
    prompt_ids = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                               return_tensors="pt", return_dict=True)["input_ids"]
    rates = {}
    for batch in batches:
        ids = prompt_ids.repeat(batch, 1)
        options = {"do_sample": False, "attention_mask": torch.ones_like(ids), "pad_token_id": tokenizer.eos_token_id}
        model.generate(ids, max_new_tokens=4, **options)  # warm-up
        seconds = []
        for _ in range(runs):
            started = time.perf_counter()
            model.generate(ids, max_new_tokens=tokens, min_new_tokens=tokens, **options)
            seconds.append(time.perf_counter() - started)
        rates[batch] = batch * tokens / min(seconds)
    return rates


def rill_turns(provider: LocalProvider, clients: int, tokens: int) -> float:
    """Aggregate tokens/s of `clients` turns at once through the engine's scheduler."""
    jobs = [Job(provider, "m", [ChatMessage("user", PROMPT)], GenerationOptions(max_tokens=tokens, temperature=0))
            for _ in range(clients)]
    started = time.perf_counter()
    for job in jobs:
        provider.submit(job)
    produced = 0
    for job in jobs:
        while not isinstance(item := job.channel.get(timeout=600), (Finish, Failure)):
            pass
        produced += item.completion_tokens if isinstance(item, Finish) else 0
    return produced / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=64)
    args = parser.parse_args()
    # Each raw dtype in a fresh process, Rill in this one: torch used from one thread, as in the server:
    # once a second thread has used torch's OpenMP pool, libgomp's threads outnumber the cores and
    # stop spinning between parallel regions, and bfloat16's many short ones ran at half speed.
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"), max_tasks_per_child=1) as pool:
        raw = {(d, b): rate for d in (torch.float32, torch.bfloat16)
               for b, rate in pool.submit(raw_generate, d, BATCHES, args.tokens).result().items()}
    provider = LocalProvider(Settings.from_env(engine="transformers", dtype="auto"))
    directory = ProviderDirectory(f"local/{provider.model_name}")
    directory.add(provider)
    directory.open()
    while provider.state == "loading":
        time.sleep(0.1)
    assert provider.state == "ready", provider.error
    rill_turns(provider, 1, 4)  # warm-up
    rill = {b: max(rill_turns(provider, b, args.tokens) for _ in range(2)) for b in BATCHES}  # best of two too

    flags = cpu_flags()
    print(f"CPU flags: {' '.join(flags)}; {args.tokens} new tokens, greedy; Rill's pick: "
          f"{provider.model.describe()['dtype']} {({b: str(d).removeprefix('torch.') for b, d in provider.model.dtype_for.items()})}, "
          f"loaded in {provider.load_seconds:.1f} s")
    print(f"{'':34}" + "".join(f"{f'batch {b} tok/s':>16}" for b in BATCHES))
    for name, rates in (("raw transformers float32", [raw[torch.float32, b] for b in BATCHES]),
                        ("raw transformers bfloat16", [raw[torch.bfloat16, b] for b in BATCHES]),
                        ("Rill transformers engine (auto)", [rill[b] for b in BATCHES])):
        print(f"{name:34}" + "".join(f"{r:16.1f}" for r in rates))
    print("Rill / the faster raw dtype: " + ", ".join(
        f"x{rill[b] / max(raw[torch.float32, b], raw[torch.bfloat16, b]):.2f} at batch {b}" for b in BATCHES))
    # The scheduler returns and its thread ends: one still inside torch at exit aborts the interpreter.
    provider.close("the benchmark is over")
    for thread in real_threading.enumerate():
        if thread.name == f"rill-{provider.name}":
            thread.join(60)


if __name__ == "__main__":
    main()
