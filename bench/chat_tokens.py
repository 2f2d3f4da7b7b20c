"""What tokenizing a long chat costs the llama.cpp engine at each turn (in its own thread, before
the turn's first step): the whole rendered chat tokenized at once, against LlamaModel.chat_tokens,
which tokenizes each piece between end-of-turn tokens once and keeps it; the wheel's model.

Usage: python bench/chat_tokens.py [--turns 20] [--repeats 50]
"""
from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.machine import cpu_flags  # noqa: E402
from bench.timing import median_ms  # noqa: E402
from rill.providers.local import wheel_gguf_path  # noqa: E402
from rill.providers.local.llama_cpp import LlamaModel  # noqa: E402
from rill.providers.local.options import LocalOptions  # noqa: E402

REPLY = "Rivers carry sediment from the mountains to the sea, shaping valleys and deltas along the way. " * 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()
    model = LlamaModel(wheel_gguf_path(), LocalOptions(source=None, name="bench"))
    model.load()
    earlier = [{"role": "system", "content": "You are a helpful assistant."}]
    for n in range(args.turns - 1):
        earlier += [{"role": "user", "content": f"Tell me one more thing about rivers (number {n + 1})."},
                    {"role": "assistant", "content": REPLY}]
    numbers = itertools.count()

    def chat() -> list[dict]:  # the last turn, a new message each time
        return earlier + [{"role": "user", "content": f"And one more thing, number {next(numbers)}?"}]

    ids = model.chat_tokens(chat())
    whole = median_ms(lambda: model.tokenizer.encode(model._render(chat(), None)), args.repeats)
    by_pieces = median_ms(lambda: model.chat_tokens(chat()), args.repeats)
    print(f"CPU flags: {cpu_flags()}")
    print(f"turn {args.turns} of a chat, {len(ids)} tokens, template and tokens (medians of {args.repeats}):")
    print(f"  the whole text tokenized: {whole:.2f} ms")
    print(f"  by its pieces, the earlier turns' kept: {by_pieces:.3f} ms ({by_pieces / whole:.2f}x)")


if __name__ == "__main__":
    main()
