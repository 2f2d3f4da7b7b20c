"""What sampling a token costs on the engine's thread (rill's Sampler) against the plain
full-vocabulary formula it replaced (tests/sampling_reference.py: float64 throughout, a full sort
for top_p), on the wheel model's own logits at each position of a fixed text. Greedy is an argmax
either way; every sampled row pays this between two decode steps.

Usage: python bench/sampling_bench.py [--repeats 3]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.machine import cpu_flags  # noqa: E402
from bench.timing import median_ms  # noqa: E402
from rill.providers.base import GenerationOptions  # noqa: E402
from rill.providers.local import weights, wheel_gguf_path  # noqa: E402
from rill.providers.local.decoding import Sampler  # noqa: E402
from rill.providers.local.llama_cpp import init_llama_cpp  # noqa: E402
from tests import sampling_reference as reference  # noqa: E402

SETTINGS = [(0.7, 1.0), (1.0, 1.0), (0.7, 0.95), (1.0, 0.9), (1.5, 0.99)]  # temperature, top_p


def model_logits() -> list[np.ndarray]:
    """The model's logits at each position of weights.TEXT (about 150 tokens)."""
    init_llama_cpp()  # its log to Python's logging
    probe = weights.Probe(wheel_gguf_path(), 2)
    try:
        ids = probe.vocab.encode(weights.TEXT, add_special=True)
        probe._decode([(t, i, 0, True) for i, t in enumerate(ids)])
        return [probe._logits(i).copy() for i in range(len(ids))]
    finally:
        probe.close()


def per_token(pick, rows: list[np.ndarray], repeats: int) -> float:
    """Microseconds a token: the median over `repeats` passes over every position."""

    def one_pass() -> None:
        for logits in rows:
            pick(logits)

    return median_ms(one_pass, repeats) * 1000 / len(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rows = model_logits()
    print(f"CPU flags: {' '.join(cpu_flags())}; {len(rows)} positions of the model's logits "
          f"({len(rows[0])} tokens each), medians of {args.repeats}, microseconds a token")
    print(f"{'temperature':>11} {'top_p':>6} {'Sampler':>9} {'plain':>9} {'ratio':>7}")
    rng = np.random.default_rng(0)
    for temperature, top_p in SETTINGS:
        sampler = Sampler(GenerationOptions(temperature=temperature, top_p=top_p, seed=0))
        ours = per_token(sampler.pick, rows, args.repeats)
        plain = per_token(lambda x: reference.pick(x, temperature, top_p, rng.random()), rows, args.repeats)
        print(f"{temperature:>11} {top_p:>6} {ours:>9.0f} {plain:>9.0f} {ours / plain:>6.2f}x")


if __name__ == "__main__":
    main()
