"""Turning logits into text, one row at a time: sampling and detokenizing."""
from __future__ import annotations

import torch

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
    """Greedy at temperature 0, otherwise temperature + nucleus (top_p) sampling."""

    def __init__(self, options: GenerationOptions):
        self.temperature = options.temperature
        self.top_p = options.top_p
        self.generator = torch.Generator()
        if options.seed is not None:
            self.generator.manual_seed(options.seed)
        else:
            self.generator.seed()

    def pick(self, logits) -> int:
        """`logits`: a torch tensor, or a numpy array (llama.cpp's). Greedy picks stay off torch's
        OpenMP pool, whose threads spin after each use and take the cores llama.cpp decodes on."""
        if self.temperature < 1e-4:  # 0, or so close that logits / temperature overflows
            return int(logits.argmax())
        logits = torch.as_tensor(logits)
        probs = torch.softmax(logits.float() / self.temperature, dim=-1)
        if self.top_p < 1.0:
            sorted_probs, order = probs.sort(descending=True, stable=True)  # ties as argmax breaks them
            keep = sorted_probs.cumsum(-1) - sorted_probs < self.top_p
            keep[0] = True  # the likeliest token always stays, however small top_p is
            probs = torch.zeros_like(probs).scatter(0, order[keep], sorted_probs[keep])
        return int(torch.multinomial(probs, 1, generator=self.generator))
