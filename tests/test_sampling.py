"""The sampler against the plain full-vocabulary formula (tests/sampling_reference.py): the same
nucleus, and every draw on the token the plain walk gives for the same uniform number."""
import numpy as np
import pytest

from rill.providers.base import GenerationOptions
from rill.providers.local.decoding import Sampler
from tests import sampling_reference as reference


class Draws:
    """Stands in for the sampler's generator: hands out given uniform numbers."""

    def __init__(self, values):
        self.values = iter(values)

    def random(self) -> float:
        return next(self.values)


def lm_like(vocab: int, seed: int) -> np.ndarray:
    """Logits shaped like a language model's: a bulk, and a few far above it."""
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal(vocab).astype(np.float32) * 2
    few = min(20, vocab // 3)
    logits[rng.choice(vocab, few, replace=False)] += rng.uniform(4, 14, few).astype(np.float32)
    return logits


def nucleus_of(sampler: Sampler, logits: np.ndarray) -> np.ndarray:
    scaled = (logits - logits.max()) * np.float32(1 / sampler.temperature)
    return sampler._nucleus(scaled, np.exp(scaled))


@pytest.mark.parametrize("vocab", [49152, 1000, 300, 7])
@pytest.mark.parametrize("temperature,top_p", [(0.7, 1.0), (1.0, 0.95), (0.3, 0.5), (1.5, 0.999), (2.0, 0.9)])
@pytest.mark.parametrize("floor", ["likely first", "bins only"])
def test_draws_land_where_the_plain_walk_lands(vocab, temperature, top_p, floor):
    logits = lm_like(vocab, seed=vocab)
    sampler = Sampler(GenerationOptions(temperature=temperature, top_p=top_p))
    if floor == "bins only":  # no token is likely enough: the nucleus always comes from the bins
        sampler.FLOOR = np.float32(np.inf)
    probs = reference.nucleus(logits, temperature, top_p)
    if top_p < 1.0:
        np.testing.assert_array_equal(nucleus_of(sampler, logits),
                                      np.flatnonzero(probs))
    cumulative = np.cumsum(probs)
    draws = np.random.default_rng(1).random(100)
    sampler.generator = Draws(draws)
    for u in draws:
        token = sampler.pick(logits)
        assert probs[token] > 0  # never a token outside the nucleus
        # the plain walk's interval for this token holds the draw (to float32 rounding of the weights)
        low = cumulative[token - 1] if token else 0.0
        assert low - 1e-6 <= u * cumulative[-1] <= cumulative[token] + 1e-6, (token, reference.pick(
            logits, temperature, top_p, u))


def test_ties_go_to_the_lower_id_and_a_tiny_top_p_is_greedy():
    logits = np.zeros(5000, dtype=np.float32)
    logits[[4000, 17, 2500]] = 9.0  # three tokens tie for the top
    for top_p in (1e-6, 0.0):  # 0: refused by the API, kept greedy here
        sampler = Sampler(GenerationOptions(temperature=1.0, top_p=top_p))
        sampler.generator = Draws([0.99] * 3)
        assert [sampler.pick(logits) for _ in range(3)] == [17] * 3 == [int(logits.argmax())] * 3
    wide = Sampler(GenerationOptions(temperature=1.0, top_p=0.5))  # two of the three hold half
    np.testing.assert_array_equal(nucleus_of(wide, logits), np.flatnonzero(reference.nucleus(logits, 1.0, 0.5)))


def test_a_flat_distribution_reaches_every_token_a_masked_token_none_and_nans_are_refused():
    flat = np.zeros(1000, dtype=np.float32)
    sampler = Sampler(GenerationOptions(temperature=1.0, top_p=1.0))
    sampler.generator = Draws([0.0, 0.5, 0.9999999])
    assert [sampler.pick(flat) for _ in range(3)] == [0, 500, 999]
    masked = np.full(1000, -np.inf, dtype=np.float32)  # a grammar's mask: only three tokens may follow
    masked[[5, 600, 601]] = [0.0, 1.0, 1.0]
    for top_p in (1.0, 0.7):
        sampler = Sampler(GenerationOptions(temperature=1.0, top_p=top_p, seed=0))
        assert set(sampler.pick(masked) for _ in range(200)) == ({5, 600, 601} if top_p == 1.0 else {600, 601})
    broken = flat.copy()
    broken[3] = np.nan
    with pytest.raises(ValueError, match="inf, nan"):
        Sampler(GenerationOptions(temperature=1.0)).pick(broken)
    for top_p in (1.0, 0.9):  # a NaN temperature makes every weight NaN: refused, not a token drawn
        with pytest.raises(ValueError, match="inf, nan"):
            Sampler(GenerationOptions(temperature=float("nan"), top_p=top_p)).pick(flat)


def test_seeded_draws_follow_the_distribution():
    logits = np.array([2.0, 1.0, 0.0, -1.0], dtype=np.float32)
    sampler = Sampler(GenerationOptions(temperature=1.0, top_p=0.9, seed=3))
    counts = np.bincount([sampler.pick(logits) for _ in range(8000)], minlength=4)
    expected = reference.nucleus(logits, 1.0, 0.9)
    expected /= expected.sum()
    assert counts[3] == 0 and np.abs(counts / counts.sum() - expected).max() < 0.02  # 4 standard errors
