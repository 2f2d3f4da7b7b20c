"""Whether llama.cpp gives a token the same logits whatever else its step holds: guesses after it
(speculation), other conversations' tokens beside it (batching), or its prompt split where a cached
prefix ends. Largest absolute difference to the token decoded on its own (0: bit for bit), through
flash attention with a BF16, a Q8_0 and an F16 cache (the engine's default), and through the matrix
products (F16), on the wheel's model.

Run it with another build of llama-cpp-python first on PYTHONPATH to compare builds, e.g. one made
with CMAKE_ARGS=-DGGML_LLAMAFILE=OFF (pip install --target DIR --no-deps the wheel).

Usage: python bench/logit_invariance.py
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import llama_cpp as C  # noqa: E402

from bench.context_bench import WAYS  # noqa: E402
from rill.providers.local import wheel_gguf_path  # noqa: E402
from rill.providers.local.llama_cpp import LlamaModel, decode, new_context, put_token  # noqa: E402
from rill.providers.local.options import LocalOptions  # noqa: E402

PROMPT = [100 + (i * 37) % 3000 for i in range(400)]
LENGTHS = (300, 120, 40)  # three conversations in the cache


def logits_of(ctx, batch, n_vocab: int, entries: list[tuple[int, int, int]], want: int) -> np.ndarray:
    """Logits of entry `want` of one step of (token, position, sequence) entries."""
    for n, (token, position, seq) in enumerate(entries):
        put_token(batch, n, token, position, seq, n == want)
    batch.n_tokens = len(entries)
    decode(ctx, batch)
    return np.ctypeslib.as_array(C.llama_get_logits_ith(ctx, want), shape=(n_vocab,)).copy()


def prefilled(ctx, batch, n_vocab: int, prompt: list[int], splits: list[int]) -> np.ndarray:
    """Sequence 0 emptied, then `prompt` prefilled into it in steps ending at `splits`: its last
    token's logits."""
    C.llama_memory_seq_rm(C.llama_get_memory(ctx), 0, 0, -1)
    start = 0
    for end in splits:
        logits = logits_of(ctx, batch, n_vocab, [(prompt[i], i, 0) for i in range(start, end)], end - start - 1)
        start = end
    return logits


def differences(model: LlamaModel, flash: bool, kv: str) -> dict[str, float]:
    n_vocab = C.llama_vocab_n_tokens(C.llama_model_get_vocab(model.handle))
    ctx = new_context(model.handle, 4096, len(LENGTHS), 512, model.threads, flash=flash, kv=kv)
    batch, memory = C.llama_batch_init(512, 0, 1), C.llama_get_memory(ctx)

    def step(entries: list[tuple[int, int, int]], want: int) -> np.ndarray:
        return logits_of(ctx, batch, n_vocab, entries, want)

    def conversations() -> None:
        """Each sequence holds its prompt only, the next token's cells dropped."""
        for seq, length in enumerate(LENGTHS):
            C.llama_memory_seq_rm(memory, seq, length, -1)

    try:
        for seq, length in enumerate(LENGTHS):
            step([(PROMPT[i] + seq, i, seq) for i in range(length)], length - 1)
        token, at = (555, LENGTHS[0], 0), LENGTHS[0]
        guesses = [(600 + j, at + 1 + j, 0) for j in range(8)]
        beside = [(777, LENGTHS[1], 1), (888, LENGTHS[2], 2)]
        alone = step([token], 0)
        conversations()
        found = {}
        for name, entries, want in (("8 guesses after it", [token, *guesses], 0),
                                    ("2 rows beside it", [beside[0], token, beside[1]], 1),
                                    ("both", [beside[0], token, *guesses, beside[1]], 1)):
            found[name] = float(np.abs(step(entries, want) - alone).max())
            conversations()
        whole = prefilled(ctx, batch, n_vocab, PROMPT, [400])
        for name, splits in (("prompt 375 + 25", [375, 400]), ("prompt 399 + 1", [399, 400])):
            found[name] = float(np.abs(prefilled(ctx, batch, n_vocab, PROMPT, splits) - whole).max())
        return found
    finally:
        C.llama_batch_free(batch)
        C.llama_free(ctx)


def main() -> None:
    model = LlamaModel(wheel_gguf_path(), LocalOptions(source=None, name="bench"))
    model.load()
    print(f"llama_cpp: {C.__file__}; largest |logit difference| to the token's own step (0: identical)")
    for name, flash, kv in WAYS:
        found = differences(model, flash, kv)
        print(f"{name:15}" + "".join(f"{k}: {v:.3g}   " for k, v in found.items()))


if __name__ == "__main__":
    main()
