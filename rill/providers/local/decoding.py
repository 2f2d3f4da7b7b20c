"""Turning logits into text, one row at a time: sampling and detokenizing."""
from __future__ import annotations

from ..base import GenerationOptions


class IncrementalDecoder:
    """Turns token ids into text pieces, holding back bytes of an unfinished character."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.prefix = 0  # start of the window decoded for context
        self.read = 0  # end of what has been emitted

    def push(self, token_id: int) -> str:
        self.ids.append(token_id)
        decode = self.tokenizer.decode
        before = decode(self.ids[self.prefix : self.read], skip_special_tokens=True)
        after = decode(self.ids[self.prefix :], skip_special_tokens=True)
        if after.endswith("\ufffd") or len(after) <= len(before):
            return ""
        self.prefix, self.read = self.read, len(self.ids)
        return after[len(before) :]


class Sampler:
    """Greedy at temperature 0, otherwise temperature + nucleus (top_p) sampling, on a numpy array
    (both engines hand their logits over as one: numpy's argmax over a vocabulary takes a tenth of
    torch's, and it never wakes torch's OpenMP pool, whose threads spin after each use and take the
    cores llama.cpp decodes on)."""

    def __init__(self, options: GenerationOptions):
        self.temperature = options.temperature
        self.top_p = options.top_p
        self.seed = options.seed
        self.generator = None  # made with the first sampled token

    def pick(self, logits) -> int:
        import numpy as np

        if self.temperature < 1e-4:  # 0, or so close that logits / temperature overflows
            return int(logits.argmax())
        if self.generator is None:
            self.generator = np.random.default_rng(self.seed)
        scaled = logits.astype(np.float64) / self.temperature
        probs = np.exp(scaled - scaled.max())
        probs /= probs.sum()
        if self.top_p < 1.0:
            order = np.argsort(-probs, kind="stable")  # ties as argmax breaks them
            sorted_probs = probs[order]
            keep = np.cumsum(sorted_probs) - sorted_probs < self.top_p
            keep[0] = True  # the likeliest token always stays, however small top_p is
            probs = np.zeros_like(probs)
            probs[order[keep]] = sorted_probs[keep]
        cumulative = np.cumsum(probs)
        if not np.isfinite(cumulative[-1]) or cumulative[-1] <= 0:
            raise ValueError("probability tensor contains either inf, nan or element < 0")
        index = int(np.searchsorted(cumulative, self.generator.random() * cumulative[-1], side="right"))
        return min(index, len(probs) - 1)
