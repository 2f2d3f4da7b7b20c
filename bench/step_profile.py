"""What a local engine's decode step spends its time on: the model call against the rest (Rill's
scheduling, sampling, detokenizing, stop strings), at batch 1, 8 and 16, on each engine.

Everything runs on this one thread, as in the server (see providers/local/transformers.py: a second thread on torch's
OpenMP pool halves bfloat16's speed). The step is timed without the web server around it, so the
difference to a load_bench figure is what serving costs.

Usage: python bench/step_profile.py [--steps 50] [--engines llamacpp,transformers]
"""
from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.machine import cpu_flags  # noqa: E402
from rill.config import Settings  # noqa: E402
from rill.providers.base import ChatMessage, GenerationOptions  # noqa: E402
from rill.providers.local import LocalProvider  # noqa: E402
from rill.providers.local.row import Row  # noqa: E402


class ModelClock:
    """Seconds spent inside the model call: llama_decode, or the transformers forward pass."""

    def __init__(self, provider: LocalProvider):
        self.seconds = 0.0
        self.undo = lambda: None
        if provider.model.engine == "llama.cpp":
            from rill.providers.local import llama_cpp as llama_model

            decode = llama_model.C.llama_decode
            self.undo = lambda: setattr(llama_model.C, "llama_decode", decode)

            def timed(ctx, batch):
                started = time.perf_counter()
                try:
                    return decode(ctx, batch)
                finally:
                    self.seconds += time.perf_counter() - started

            llama_model.C.llama_decode = timed
        else:
            for copy in provider.model.copies.values():
                copy.register_forward_pre_hook(lambda *_: setattr(self, "started", time.perf_counter()))
                copy.register_forward_hook(lambda *_: setattr(self, "seconds", self.seconds + time.perf_counter()
                                                                - self.started))


def profile(engine: str, rows: int, steps: int) -> tuple[float, float, str]:
    provider = LocalProvider(Settings.from_env(engine=engine))
    provider.load()
    assert provider.state == "ready", provider.error
    clock = ModelClock(provider)
    batch = provider.model.new_batch(16)
    options = GenerationOptions(temperature=0, max_tokens=steps + 16)
    batch.add([Row(provider.model, provider.encode_prompt([ChatMessage("user", f"Reader {n}: tell me a long story.")],
                                                          options)[0], options, threading.Event(), lambda item: None)
               for n in range(rows)])
    for _ in range(8):  # prefill and settle
        batch.step()
    clock.seconds, started = 0.0, time.perf_counter()
    for _ in range(steps):
        batch.step()
    wall = time.perf_counter() - started
    dtype = provider.model.describe()["dtype"]
    batch.close()
    clock.undo()
    return wall / steps, clock.seconds / steps, dtype


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--engines", default="llamacpp,transformers")
    args = parser.parse_args()
    flags = cpu_flags()
    print(f"CPU flags: {' '.join(flags)}; {args.steps} decode steps after 8 to settle")
    print(f"{'engine':14}{'dtype':19}{'rows':>5}{'step ms':>9}{'model ms':>10}{'rest ms':>9}{'rest':>7}")
    for engine in args.engines.split(","):
        for rows in (1, 8, 16):
            step, model, dtype = profile(engine, rows, args.steps)
            print(f"{engine:14}{dtype:19}{rows:5}{step * 1000:9.1f}{model * 1000:10.1f}{(step - model) * 1000:9.2f}"
                  f"{(step - model) / step:7.1%}")


if __name__ == "__main__":
    main()
