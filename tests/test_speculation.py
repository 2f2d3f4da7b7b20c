"""Prompt-lookup speculation: guesses from the row's own text, kept only where they equal the
model's own picks (greedy replies unchanged, seeded samples unchanged), and planned from measured
costs: none where they do not pay."""
import random
import threading

import numpy as np
import pytest
from prometheus_client import REGISTRY

from rill.providers.base import ChatMessage, Finish, GenerationOptions, Piece
from rill.providers.local.row import Row
from rill.providers.local.speculation import Lately, Lookup, StepCost, plan, width

from .test_batching import assert_greedy, collect, local, scheduling, submit  # noqa: F401 (local: the fixture)

TEXT = ("The color of the harbor changes with the seasons. In summer the water is a bright, clear blue, and the "
        "neighbors gather at the center of the pier to watch the boats. In winter the harbor is quiet.")
COPY = f"Repeat this text exactly, word for word:\n\n{TEXT}"


def test_a_guess_is_what_followed_the_longest_suffix_found_last():
    lookup = Lookup([1, 2, 3, 4, 9, 2, 3, 5, 6, 7, 3])
    assert lookup.guess(3) == ([5, 6, 7], 1)  # only "3" is found again: what followed its latest
    lookup.push(5)  # "3 5" was seen: a 2-gram beats the 1-gram "5"
    assert lookup.guess(2) == ([6, 7], 2)
    lookup.push(8)
    assert lookup.guess(4) == ([], 0)  # "8" never came before


def test_a_rows_guesses_are_trusted_as_they_hold():
    lookup = Lookup([1, 2, 3])
    start, other = lookup.rate(3), lookup.rate(2)
    assert start > other > lookup.rate(1)  # before any outcome: a longer match is the likelier guess
    lookup.record(3, guessed=4, kept=4)
    assert lookup.rate(3) > start
    for _ in range(10):
        lookup.record(3, guessed=4, kept=0)
    assert lookup.rate(3) < 0.3
    assert lookup.rate(2) == other  # each n-gram length has its own record


class Guessing:
    """A row as plan() sees it: its last tokens 1 to 6 came before, followed by 7 to 14; its
    guesses after 6-grams held `held` times and missed `missed` times."""

    def __init__(self, held: float, missed: float):
        self.lookup = Lookup([*range(1, 15), *range(1, 7)])
        self.lookup.outcomes[6] = [held, missed]

    def guessing(self) -> Lookup:
        return self.lookup


def costs(fixed: float, per_token: float) -> StepCost:
    cost = StepCost()
    for _ in range(StepCost.SEEN):
        for tokens in (1, 2, 4, 8):
            cost.record(tokens, fixed + per_token * tokens)
    return cost


def packed(chosen: dict, rows: int) -> int:
    return rows + sum(len(g) for g, _ in chosen.values())


def test_guesses_go_in_where_an_extra_token_is_cheap_and_they_hold():
    row = Guessing(held=19, missed=1)  # 95 % of its guesses hold
    cheap = plan([row], lambda r: 8, lambda c: packed(c, 1), costs(fixed=10.0, per_token=0.5))
    assert cheap[row] == ([7, 8, 9, 10, 11, 12, 13, 14], 6)
    dear = plan([row], lambda r: 8, lambda c: packed(c, 1), costs(fixed=0.1, per_token=10.0))
    assert dear == {}  # a guessed token costs a whole step: never worth it
    doubtful = Guessing(held=1, missed=9)
    assert plan([doubtful], lambda r: 8, lambda c: packed(c, 1), costs(fixed=10.0, per_token=3.0)) == {}
    assert len(plan([row], lambda r: 2, lambda c: packed(c, 1), costs(10.0, 0.5))[row][0]) == 2  # the row's room


def test_padded_rows_guess_together_or_not_at_all():
    """Where every row is padded to the longest guess, one row's first guess costs every row a
    position: only worth it when the others guess too."""
    rows = [Guessing(held=9, missed=1) for _ in range(8)]
    chosen = plan(rows, lambda r: 8, lambda c: 8 * width(c), costs(fixed=40.0, per_token=1.0))
    assert set(chosen) == set(rows) and len({len(g) for g, _ in chosen.values()}) == 1


def test_a_size_seen_often_costs_what_it_took():
    cost = costs(fixed=10.0, per_token=1.0)
    assert cost.estimator()(3) == pytest.approx(13.0)  # from the fit
    for _ in range(8):
        cost.record(1, 11.0)
        cost.record(2, 20.0)  # dearer than the line says
    seconds = cost.estimator()
    assert seconds(2) / seconds(1) > 1.6  # 1.82, against 1.09 by the line


def test_sizes_measured_apart_compare_as_the_steps_slow_down():
    """Every step slows as the rows' contexts grow: a size measured early is not cheaper for it."""
    cost = StepCost()
    for _ in range(StepCost.SEEN):
        cost.record(16, 0.040)
        cost.record(17, 0.044)  # 1.1x
    for i in range(100):
        cost.record(16, 0.040 + 0.0002 * i)  # to 0.060
    seconds = cost.estimator()
    assert seconds(17) / seconds(16) > 1.05


def test_a_bigger_step_is_tried_until_its_cost_is_known_and_again_after_a_while():
    cost = StepCost()
    for _ in range(5):
        cost.record(8, 0.05)
    rows = [Guessing(held=1, missed=9) for _ in range(8)]  # unlikely guesses
    for _ in range(StepCost.SEEN):
        chosen = plan(rows, lambda r: 8, lambda c: packed(c, 8), cost)
        assert packed(chosen, 8) == 9  # one guess, so the cost of a bigger step gets measured
        cost.record(9, 0.075)  # dear: 1.5x for one more token
    assert plan(rows, lambda r: 8, lambda c: packed(c, 8), cost) == {}  # known now, and not worth it
    for _ in range(StepCost.AGAIN):
        cost.record(8, 0.05)
    assert packed(plan(rows, lambda r: 8, lambda c: packed(c, 8), cost), 8) == 9  # measured again
    cost.record(9, 0.051)
    assert plan(rows, lambda r: 8, lambda c: packed(c, 8), cost) == {}  # the median still says dear


def test_only_a_guess_after_a_long_match_is_tried_on_trust():
    """Where no guess pays, one is tried now and then to learn whether it would hold: on plain chat
    a guess after a few tokens seen before often does not (on the wheel's Q4_1 a second token costs
    nearly a step). A copy runs 6 tokens and more along its source at once."""
    cost = StepCost()
    for _ in range(64):
        cost.record(1, 7.5)  # one size only: a guess has not been tried lately
    cost.record(2, 14.5)
    for _ in range(63):
        cost.record(1, 7.5)
    for tokens, found in (([5, 6, 1, 2, 3, 7, 8, 3], ([7, 8, 3], 1)),  # only the last token came before
                          ([9, 1, 2, 3, 4, 5, 7, 1, 2, 3, 4, 5], ([7, 1, 2, 3, 4, 5], 3))):  # five did
        weak = Guessing(held=1, missed=9)
        weak.lookup = Lookup(tokens)
        assert weak.lookup.guess(8) == found
        assert plan([weak], lambda r: 8, lambda c: packed(c, 1), cost) == {}
    sure = Guessing(held=1, missed=9)
    assert plan([sure], lambda r: 8, lambda c: packed(c, 1), cost)[sure][0][0] == 7  # tried


def test_a_likely_long_guess_is_tried_where_a_second_token_costs_a_whole_step():
    """A repacked matmul takes rows in tiles: on a CPU a second token can cost a whole step and a
    ninth little more than the eighth. A likely guess is tried at its length, not only one token."""
    cost = StepCost()
    for _ in range(StepCost.SEEN):
        cost.record(1, 7.5)
        cost.record(2, 14.5)
    likely, doubtful = Guessing(held=19, missed=1), Guessing(held=1, missed=9)
    assert plan([doubtful], lambda r: 8, lambda c: packed(c, 1), cost) == {}  # nothing to learn
    for _ in range(StepCost.SEEN):
        chosen = plan([likely], lambda r: 8, lambda c: packed(c, 1), cost)
        assert chosen[likely] == ([7, 8, 9, 10, 11, 12, 13, 14], 6)  # 9 tokens: what would they cost?
        cost.record(9, 30.0)
    assert len(plan([likely], lambda r: 8, lambda c: packed(c, 1), cost)[likely][0]) == 8  # they pay
    assert plan([doubtful], lambda r: 8, lambda c: packed(c, 1), cost) == {}


def test_a_size_not_measured_costs_at_least_the_measured_size_below_it():
    cost = costs(fixed=1.0, per_token=1.0)  # small steps: 2 to 9
    for _ in range(StepCost.SEEN):
        cost.record(16, 30.0)  # 16 rows cost more than the small steps' line says (17)
    assert cost.estimator()(16) == pytest.approx(30.0)
    assert cost.estimator()(18) > 30.0


def test_a_new_row_starts_from_what_its_batchs_guesses_did_lately():
    copying, chatting = Lately(), Lately()
    for _ in range(10):
        copying.record(3, guessed=8, kept=8)
        chatting.record(3, guessed=8, kept=0)
    alone = Lookup([1, 2, 3]).rate(3)
    assert Lookup([1, 2, 3], copying).rate(3) > 0.9 > alone > 0.1 > Lookup([1, 2, 3], chatting).rate(3)
    row, missed_before = Lookup([1, 2, 3], copying), copying.outcomes[3][1]
    row.record(3, guessed=4, kept=0)  # its own outcomes count, and count for the batch
    assert row.rate(3) < Lookup([1, 2, 3], copying).rate(3) and copying.outcomes[3][1] > missed_before


def test_the_line_is_fitted_to_the_last_64_steps():
    """The fit's sums are kept as steps come and go: the same line as one fitted afresh."""
    rng, cost = random.Random(7), StepCost()
    for _ in range(1000):
        cost.record(rng.choice([1, 2, 3, 8, 9, 16, 17, 24]), rng.uniform(0.005, 0.09))
        steps = list(cost.steps)
        mean_t = sum(t for t, _ in steps) / len(steps)
        mean_s = sum(s for _, s in steps) / len(steps)
        spread = sum((t - mean_t) ** 2 for t, _ in steps)
        slope = sum((t - mean_t) * (s - mean_s) for t, s in steps) / spread if spread else 0.0
        if slope > 0:
            assert cost.fit == pytest.approx((max(0.0, mean_s - slope * mean_t), slope), rel=1e-9, abs=1e-12)
    for _ in range(64):
        cost.record(1, 0.007)
    assert cost.stale


def test_one_slow_step_does_not_make_its_size_dear():
    cost = costs(fixed=10.0, per_token=1.0)
    for seconds in (12.0, 24.0, 12.0):  # a noisy moment doubles one of them
        cost.record(2, seconds)
    assert cost.estimator()(2) == pytest.approx(12.0)


class Vocabulary:
    def decode(self, ids, skip_special_tokens=True):
        return "".join(chr(ord("a") + i) for i in ids)


class Letters:
    """Just enough of a model for a Row: ten tokens, a to j; token 9 ends a reply."""

    tokenizer = Vocabulary()
    stop_ids = {9}
    grammar_tokenizer = None
    layers = 1


def picks(*tokens: int) -> list[np.ndarray]:
    """Logits whose greedy pick is each token in turn."""
    return [np.eye(10, dtype=np.float32)[t] * 5 for t in tokens]


def test_take_keeps_guesses_while_they_equal_the_picks():
    out = []
    row = Row(Letters(), [0, 1], GenerationOptions(temperature=0, max_tokens=20), threading.Event(), out.append)
    row.guessing()
    held = row.take([2, 3, 4], 3, lambda i: (picks(2, 3, 7, 8)[i], None))
    assert held == 2 and row.last_token == 7 and row.produced == 3
    assert [p.text for p in out if isinstance(p, Piece)] == ["cdh"]  # a step's text is one piece, one write
    held = row.take([], 0, lambda i: (picks(9)[i], None))  # no guesses: one pick, here the end
    assert held == 0 and isinstance(out[-1], Finish) and out[-1].reason == "stop"


def test_take_stops_at_the_cap_and_a_row_has_no_room_past_it():
    out = []
    row = Row(Letters(), [0], GenerationOptions(temperature=0, max_tokens=2), threading.Event(), out.append)
    row.guessing()
    assert row.room_to_guess(context_tokens=100) == 1
    assert row.take([2, 3], 3, lambda i: (picks(2, 3, 4)[i], None)) == 1
    assert row.done and out[-1].reason == "length" and out[-1].completion_tokens == 2
    hidden = Row(Letters(), [0], GenerationOptions(max_tokens=50, hidden_states=True), threading.Event(), out.append)
    assert hidden.room_to_guess(context_tokens=100) == 0  # its last token's states come from a step of its own


def test_sampled_picks_are_the_same_with_and_without_guesses():
    """A guess is kept only when the sample equals it, one draw per position: with a seed the reply
    is the same as without guesses, so its distribution is the model's."""
    rng = np.random.default_rng(0)
    logits = [rng.normal(size=10).astype(np.float32) for _ in range(40)]
    for vector in logits:
        vector[9] = -20  # no early end
    plain_out, guessed_out = [], []
    options = GenerationOptions(temperature=1.0, max_tokens=40, seed=3)
    plain = Row(Letters(), [0], options, threading.Event(), plain_out.append)
    for vector in logits:
        if not plain.done:
            plain.accept(vector, None)
    guessed = Row(Letters(), [0], options, threading.Event(), guessed_out.append)
    guessed.guessing()
    position, kept, sampled = 0, 0, plain.decoder.ids
    while not guessed.done:  # two right guesses (the plain reply's) and a random third
        guess = sampled[position: position + 2] + [int(rng.integers(0, 9))]
        held = guessed.take(guess, 1, lambda i: (logits[position + i], None))
        position, kept = position + held + 1, kept + held
    text = lambda out: "".join(p.text for p in out if isinstance(p, Piece))  # noqa: E731
    assert text(guessed_out) == text(plain_out) and guessed_out[-1] == plain_out[-1]
    assert kept > 0


def reply(local, text: str, speculate: bool, **options) -> tuple[str, Finish, int]:  # noqa: F811
    """A reply in a batch of its own; how many guesses held."""
    local.model.speculate = speculate
    try:
        out = []
        row = Row(local.model, local.encode_prompt([ChatMessage("user", text)], GenerationOptions())[0],
                  GenerationOptions(**options), threading.Event(), out.append)
        batch, held = local.model.new_batch(1), 0
        batch.add([row])
        while not row.done:
            batch.step()
            held += batch.guesses[1]
        batch.close()
        assert (batch.cost.count > 0) == speculate  # steps are timed only where guesses are planned
        return "".join(p.text for p in out if isinstance(p, Piece)), out[-1], held
    finally:
        local.model.speculate = True


@pytest.mark.slow
def test_a_copying_reply_is_guessed_and_unchanged(local, monkeypatch):  # noqa: F811
    """Whether guesses pay depends on this machine's step costs (a few noisy steps of two tokens
    can turn them off for a short reply; bench/load_bench.py measures what they give): here they
    are said to be nearly free, so the copy is guessed, and the reply must still be the model's."""
    monkeypatch.setattr(StepCost, "estimator", lambda self, hopeful=False: lambda tokens: 1.0 + 0.01 * tokens)
    plain, plain_end, _ = reply(local, COPY, False, temperature=0, max_tokens=64)
    guessed, end, held = reply(local, COPY, True, temperature=0, max_tokens=64)
    assert held > 16  # most of a copy is guessed right
    assert end.completion_tokens == plain_end.completion_tokens
    assert_greedy(local, COPY, guessed, plain)


@pytest.mark.slow
def test_a_seeded_sample_is_unchanged_by_guessing(local):  # noqa: F811
    for seed in (1, 2):
        plain = reply(local, COPY, False, temperature=0.8, max_tokens=48, seed=seed)
        guessed = reply(local, COPY, True, temperature=0.8, max_tokens=48, seed=seed)
        assert guessed[:2] == plain[:2]


@pytest.mark.slow
def test_guesses_that_all_fail_change_nothing(local, monkeypatch):  # noqa: F811
    """Every row guesses four tokens no reply writes, every step: their cells are dropped
    (llama.cpp) or masked and then dropped from the cache mid-reply (transformers), and the reply
    is the one without guesses, greedy and sampled."""
    from rill.providers.local import speculation

    monkeypatch.setattr(speculation, "plan", lambda rows, room, tokens, cost: {row: ([0, 1, 2, 3], 1) for row in rows})
    compacted, compact = [], None
    if local.model.engine == "transformers":
        from rill.providers.local.transformers import HFBatch

        compact = HFBatch._compact
        monkeypatch.setattr(HFBatch, "_compact", lambda batch, rows: compacted.append(rows) or compact(batch, rows))
    for options in ({"temperature": 0}, {"temperature": 1.0, "seed": 5}):
        plain = reply(local, COPY, False, max_tokens=48, **options)
        guessed = reply(local, COPY, True, max_tokens=48, **options)
        assert guessed[:2] == plain[:2] and guessed[2] == 0
    assert compact is None or compacted


@pytest.mark.slow
def test_batched_turns_guess_apart_and_the_metrics_count_it(local, monkeypatch):  # noqa: F811
    """Whether guesses pay in a batch of two depends on this machine's step costs: here they are
    said to be nearly free, so the copying row guesses."""
    monkeypatch.setattr(StepCost, "estimator", lambda self, hopeful=False: lambda tokens: 1.0 + 0.01 * tokens)
    label = local.scheduler.label
    before = REGISTRY.get_sample_value("rill_spec_decode_num_accepted_tokens_total", {"model": label}) or 0
    with scheduling(local) as jobs:
        copying = submit(jobs, local, COPY, temperature=0, max_tokens=48)
        chatting = submit(jobs, local, "Write a haiku about rivers.", temperature=0, max_tokens=48)
        copied, chatted = collect(copying)[0], collect(chatting)[0]
    assert TEXT[:40] in copied and chatted and TEXT[:40] not in chatted
    drafted = REGISTRY.get_sample_value("rill_spec_decode_num_draft_tokens_total", {"model": label})
    accepted = REGISTRY.get_sample_value("rill_spec_decode_num_accepted_tokens_total", {"model": label})
    assert accepted - before > 8 and drafted >= accepted
