"""Temperature and nucleus (top_p) sampling written the plain way, over the whole vocabulary in
float64 with a full sort: what rill's Sampler must match (tests/test_sampling.py) and is timed
against (bench/sampling_bench.py)."""
import numpy as np


def nucleus(logits: np.ndarray, temperature: float, top_p: float) -> np.ndarray:
    """Each token's probability after temperature and top_p (zero outside the nucleus), not
    renormalized: a draw is taken against their sum."""
    scaled = logits.astype(np.float64) / temperature
    probs = np.exp(scaled - scaled.max())
    probs /= probs.sum()
    if top_p < 1.0:
        order = np.argsort(-probs, kind="stable")  # ties go to the lower id
        ranked = probs[order]
        keep = np.cumsum(ranked) - ranked < top_p
        keep[0] = True
        kept = np.zeros_like(probs)
        kept[order[keep]] = ranked[keep]
        probs = kept
    return probs


def pick(logits: np.ndarray, temperature: float, top_p: float, u: float) -> int:
    """The token a uniform draw `u` in [0, 1) lands on, walking the vocabulary in id order."""
    cumulative = np.cumsum(nucleus(logits, temperature, top_p))
    return min(int(np.searchsorted(cumulative, u * cumulative[-1], side="right")), len(cumulative) - 1)
