"""Turning logits into text, one row at a time: sampling and detokenizing."""
from __future__ import annotations

import numpy as np

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
    cores llama.cpp decodes on). A sampled token is picked on the engine's thread between steps,
    once a row: over a 49k vocabulary the plain formula, a running sum over it all and for top_p a
    sort, took 0.3 ms a token and 4.9 with top_p, so neither runs over it whole here (0.08 and
    0.10-0.19: bench/sampling_bench.py)."""

    BLOCK = 256  # tokens a block: the draw finds its block, then its token within it
    BINS_PER_OCTAVE, LAST_BIN = 4, 255  # the nucleus' bins by weight; the last holds all under 2**-63
    FLOOR = np.float32(2.0**-10)  # the weight (the likeliest's is 1) above which the nucleus is looked for first

    def __init__(self, options: GenerationOptions):
        self.temperature = options.temperature
        self.top_p = options.top_p
        self.seed = options.seed
        self.generator = None  # made with the first sampled token

    def pick(self, logits) -> int:
        if self.temperature < 1e-4:  # 0, or so close that logits / temperature overflows
            return int(logits.argmax())
        if self.generator is None:
            self.generator = np.random.default_rng(self.seed)
        logits = np.asarray(logits, dtype=np.float32)
        top = logits.max()
        if not (np.isfinite(top) and np.isfinite(self.temperature)):  # NaN logits or a NaN temperature
            raise ValueError("probability tensor contains either inf, nan or element < 0")
        scaled = (logits - top) * np.float32(1 / self.temperature)  # 0 for the likeliest, below for the rest
        weights = np.exp(scaled)
        if self.top_p >= 1.0:
            return self._draw(weights)
        tokens = self._nucleus(scaled, weights)
        return int(tokens[self._draw(weights[tokens])])

    def _nucleus(self, scaled: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """The likeliest tokens whose probability adds up to top_p (the likeliest always; ties go
        to the lower id, as a stable sort's), in id order. Most often they are all within FLOOR of
        the likeliest: those few are sorted and, where they hold the mass, that is all. Else tokens
        are binned by weight, BINS_PER_OCTAVE bins to a halving: the bins above the one where the
        running mass reaches top_p are kept whole, only that one is sorted, and the rest dropped."""
        goal = self.top_p * weights.sum(dtype=np.float64)
        likely = np.flatnonzero(weights >= self.FLOOR)
        probs = weights[likely].astype(np.float64)
        if probs.sum() >= goal:  # else not worth sorting: they cannot hold the mass
            kept, reached = self._ranked(likely, probs, 0.0, goal)
            if reached >= goal:  # (the sums may round apart)
                return np.sort(kept)
        bins = np.minimum(-scaled * np.float32(self.BINS_PER_OCTAVE / np.log(2)), self.LAST_BIN).astype(np.intp)
        running = np.cumsum(np.bincount(bins, weights=weights, minlength=self.LAST_BIN + 1))
        edge = int(np.searchsorted(running, goal, side="left"))  # goal <= the total: a bin of the last's at most
        inside = np.flatnonzero(bins == edge)
        kept, _ = self._ranked(inside, weights[inside].astype(np.float64), running[edge - 1] if edge else 0.0, goal)
        return np.sort(np.concatenate([np.flatnonzero(bins < edge), kept]))

    @staticmethod
    def _ranked(tokens: np.ndarray, probs: np.ndarray, before: float, goal: float) -> tuple[np.ndarray, float]:
        """Of `tokens` (`before`: the mass of all tokens likelier than them), those the nucleus
        keeps, and the mass they all reach."""
        order = np.argsort(-probs, kind="stable")
        ranked = probs[order]
        running = before + np.cumsum(ranked)
        keep = running - ranked < goal
        keep[0] |= before == 0  # the likeliest token always stays, however small top_p is
        return tokens[order[keep]], running[-1]

    def _draw(self, weights: np.ndarray) -> int:
        """An index drawn in proportion to its weight: the block whose running sum passes the draw,
        then the index within that block's running sum."""
        weights = weights.astype(np.float64)  # finite, the likeliest's 1 among them (pick's check)
        running = np.cumsum(np.add.reduceat(weights, np.arange(0, len(weights), self.BLOCK)))
        target = self.generator.random() * running[-1]
        block = min(int(np.searchsorted(running, target, side="right")), len(running) - 1)
        start = block * self.BLOCK
        within = weights[start: start + self.BLOCK]
        index = int(np.searchsorted(np.cumsum(within), target - (running[block - 1] if block else 0.0), side="right"))
        if index == len(within):  # past the block's end by rounding: its last token that can be drawn
            index = int(np.flatnonzero(within)[-1])
        return start + index
