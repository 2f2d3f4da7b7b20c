"""Greedy replies with each KV cache type (RILL_KV_CACHE) to one fixed set of prompts: how many
loop (the reply ends in a run of text repeated three times or more), how many run to the token
limit, how many JSON replies (response_format json_object) parse, and how many replies are the
F16 cache's word for word. Perplexity alone did not tell the cache types apart (PERFORMANCE.md,
"Long conversations on llama.cpp"): this is what a user reads.

Usage: python bench/kv_quality.py [--kv-caches f16,bf16,q8_0] [--tokens 200]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.server import start_server, stop_server  # noqa: E402

MODEL = "local/smollm2-135m-instruct"
CHAT = [
    "Hello! How are you today?", "What is the capital of France?", "Explain photosynthesis in two sentences.",
    "Write a short poem about the sea.", "Give me three tips for sleeping better.",
    "What is the difference between a virus and a bacterium?", "Summarize the plot of Romeo and Juliet.",
    "Write a Python function that reverses a string.", "How do I boil an egg?", "Tell me a joke about cats.",
    "What are the primary colors?", "Translate 'good morning' into Spanish and French.",
    "Why is the sky blue?", "List five fruits that are red.", "Write a haiku about autumn.",
    "What does a CPU do?", "Describe a sunset to someone who has never seen one.",
    "Write a long story about a river that flows through an old city.", "How many legs does a spider have?",
    "What should I pack for a weekend camping trip?", "Explain what a black hole is to a child.",
    "Write an email asking my manager for a day off.", "What is 12 times 7?", "Name three famous painters.",
    "Give me a recipe for pancakes.", "What is the tallest mountain in the world?",
    "Write a dialogue between a teacher and a student.", "How does a bicycle work?",
    "What are the benefits of drinking water?", "Describe your ideal holiday.",
]
JSON = [
    "Describe a person as JSON.", "Give a book as JSON with a title, an author and a year.",
    "List three animals as JSON.", "Describe a city as JSON.", "Give today's weather as JSON.",
    "Describe a car as JSON with its make, model and color.", "Give a recipe as JSON.",
    "Describe a movie as JSON.", "List two planets as JSON with their sizes.", "Describe a dog as JSON.",
]


def loops(text: str) -> bool:
    """The reply ends in some run of 4 to 200 characters said three times in a row."""
    for period in range(4, min(200, len(text) // 3) + 1):
        if text[-period:] == text[-2 * period:-period] == text[-3 * period:-2 * period]:
            return True
    return False


def replies(kv: str, tokens: int) -> list[dict]:
    server = start_server("eventlet", Path(tempfile.mkdtemp(prefix="rill-kv-quality-")), entry="rill.entry",
                          RILL_ENGINE="llamacpp", RILL_KV_CACHE=kv)
    try:
        out = []
        for prompt, as_json in [(p, False) for p in CHAT] + [(p, True) for p in JSON]:
            body = {"model": MODEL, "messages": [{"role": "user", "content": prompt}], "max_tokens": tokens,
                    "temperature": 0}
            if as_json:
                body["response_format"] = {"type": "json_object"}
            reply = requests.post(f"{server.url}/v1/chat/completions", json=body, timeout=300).json()["choices"][0]
            out.append({"text": reply["message"]["content"] or "", "length": reply["finish_reason"] == "length",
                        "json": as_json})
        return out
    finally:
        stop_server(server)


def parses(text: str) -> bool:
    try:
        json.loads(text)
        return True
    except ValueError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kv-caches", default="f16,bf16,q8_0")
    parser.add_argument("--tokens", type=int, default=200)
    args = parser.parse_args()
    results = {kv: replies(kv, args.tokens) for kv in args.kv_caches.split(",")}
    first = next(iter(results.values()))
    print(f"{len(CHAT)} chat prompts and {len(JSON)} JSON prompts, greedy, at most {args.tokens} tokens a reply")
    print(f"{'cache':>6}{'loop':>6}{'limit':>7}{'JSON parses':>13}{'chars':>8}{'same as ' + args.kv_caches.split(',')[0]:>12}")
    for kv, out in results.items():
        chat = [r for r in out if not r["json"]]
        print(f"{kv:>6}{sum(loops(r['text']) for r in out):6}{sum(r['length'] for r in out):7}"
              f"{sum(parses(r['text']) for r in out if r['json']):9}/{len(JSON):<3}"
              f"{sum(len(r['text']) for r in chat) / len(chat):8.0f}"
              f"{sum(a['text'] == b['text'] for a, b in zip(out, first)):12}")
    for n, prompt in enumerate(CHAT + JSON):
        looped = [kv for kv, out in results.items() if loops(out[n]["text"])]
        if looped:
            print(f"  loops with {', '.join(looped)}: {prompt!r}")


if __name__ == "__main__":
    main()
