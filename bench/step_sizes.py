"""What a llama.cpp decode step costs by its number of tokens, on the wheel's file and its
conversions: the curve the speculation planner prices guesses on (speculation.StepCost). Each step
spreads its tokens over as many rows as a batch holds (16), each after 100 tokens of context, as a
batch of rows and their guesses does, in the engine's cache (F16, flash attention); its logits are
all read, as guesses' are.

Usage: python bench/step_sizes.py [--weights as-is,q8_0] [--sizes 1,2,3,4,8,9,16,17,24] [--repeats 9]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.context_bench import WAYS, batched  # noqa: E402
from bench.machine import cpu_flags  # noqa: E402
from rill.providers.local import wheel_gguf_path  # noqa: E402
from rill.providers.local.llama_cpp import LlamaModel  # noqa: E402
from rill.providers.local.options import LocalOptions  # noqa: E402

ROWS, CONTEXT = LocalOptions(source=None, name="bench").max_batch, 100
ENGINE = next(way for way in WAYS if way[1:] == (True, "f16"))  # the engine's default


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default="as-is,q8_0", help="as-is, or a RILL_WEIGHTS type (q4_0, q4_k_m, q8_0)")
    parser.add_argument("--sizes", default="1,2,3,4,8,9,16,17,24")
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    flags = cpu_flags()
    print(f"CPU flags: {' '.join(flags)}; a decode step by its tokens, medians of {args.repeats}, ms "
          f"(in brackets: against one token)")
    print(f"{'weights':>8}" + "".join(f"{size:>15}" for size in sizes))
    with tempfile.TemporaryDirectory() as cache:
        for kind in args.weights.split(","):
            model = LlamaModel(wheel_gguf_path(), LocalOptions(source=None, name="bench", weights=kind,
                                                               cache_dir=Path(cache)))
            model.load()
            found = {n: batched(model, ENGINE, (ROWS, CONTEXT), args.repeats, n) for n in sizes}
            model.unload()
            print(f"{kind:>8}" + "".join(f"{found[n]:8.1f} ({found[n] / found[sizes[0]]:4.1f}x)" for n in sizes))


if __name__ == "__main__":
    main()
