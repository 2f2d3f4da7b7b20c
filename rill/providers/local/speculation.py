"""Prompt-lookup speculation: a row's next tokens guessed from its own text, checked in the same
forward pass as its next token.

A reply often repeats its prompt (an edited text, refactored code, a quoted name): when the row's
last few tokens appeared before, the tokens that followed them there are a guess at what comes
next. The guesses go into the step after the row's token; each position's logits pick a token as
they always do, and a guess is kept while it equals the pick, so greedy replies are the same tokens
and sampled ones come from the same distribution (a guess is a point mass: sampling from the
model and keeping the guess only when the sample equals it is rejection sampling). No draft model.

Guessing is not free: every guessed token costs compute in the step, a lot on a CPU where a step's
cost grows with its tokens. So each step's guesses are planned against what is measured: each
row's acceptance (per n-gram length) and the step's cost for its number of tokens; a guess goes in
only while it raises the step's expected tokens per second. Where guesses rarely hold (plain chat)
or extra tokens cost nearly a full step (big batches), none go in.
"""
from __future__ import annotations

import bisect
import collections
import itertools
import statistics
from typing import Callable

# Suffix lengths looked up, the longest (the surest guess) first. A reply that copies (an edited
# text, code) runs 6 tokens and more along its source; plain chat repeats 3 or so now and then (a
# name, a phrase), where the next token holds about half the time (SmolLM2 on the load benchmark's
# tasks: after a match of 6 or more the next token held in 97-100% of cases, after 3 to 5 in 50-75%).
NGRAMS = (6, 3, 2, 1)
MOST = 8  # guessed tokens per row and step
# (kept, missed) before a row has any, by n-gram length: a long match is likelier to go on (a copy);
# a single token seen before says little.
PRIOR = {6: (3.0, 1.0), 3: (2.0, 1.0), 2: (1.0, 1.0), 1: (1.0, 2.0)}
FORGET = 0.9  # older outcomes weigh less: a reply that stops copying stops guessing soon
# Guesses go in only where they are expected to give this much more than none: a smaller gain is
# within what a step's measured cost moves by (at 16 rows one guess can gain 4% at best, and a 17th
# token cost 1.03-1.14x a 16-token step from one run to the next), and a few rows' first guesses,
# made on the prior alone, then cost more than they give.
MARGIN = 1.05


class Lately:
    """What guesses after each n-gram length did in a batch's rows lately, which a new row starts
    from (weighed as PRIOR is), not from PRIOR alone: a row finds out whether its guesses hold only
    by guessing, which costs, so where guesses cost much (a second token in a Q4_1 or Q8_0 step can
    cost a whole step on a CPU) a copy's rows would rarely start. On a server that edits text copies
    hold; on a chat server guesses rarely do."""

    def __init__(self):
        self.outcomes = {n: list(PRIOR[n]) for n in NGRAMS}

    def prior(self) -> dict[int, list[float]]:
        return {n: [kept * sum(PRIOR[n]) / (kept + missed), missed * sum(PRIOR[n]) / (kept + missed)]
                for n, (kept, missed) in self.outcomes.items()}

    def record(self, n: int, guessed: int, kept: int) -> None:
        outcome = self.outcomes[n]
        outcome[0] = outcome[0] * FORGET + kept
        outcome[1] = outcome[1] * FORGET + (kept < guessed)


class Lookup(Lately):
    """A row's tokens (prompt and reply) with each n-gram's latest position, for guesses, and what
    its own guesses did (from what the batch's did lately, `lately`)."""

    def __init__(self, tokens: list[int], lately: Lately | None = None):
        self.tokens: list[int] = []
        self.after: dict[tuple[int, ...], int] = {}  # n-gram -> where the token that followed it is
        self.lately = lately
        self.outcomes = (lately or Lately()).prior()
        for token in tokens:
            self.push(token)

    def push(self, token: int) -> None:
        tokens, end = self.tokens, len(self.tokens)
        for n in NGRAMS:
            if end >= n:
                self.after[tuple(tokens[end - n:])] = end
        tokens.append(token)

    def guess(self, most: int) -> tuple[list[int], int]:
        """The tokens that followed the latest earlier occurrence of the longest suffix found, and
        that suffix's length (0: none found)."""
        for n in NGRAMS:
            at = self.after.get(tuple(self.tokens[-n:])) if len(self.tokens) >= n else None
            if at is not None:
                return self.tokens[at: at + most], n
        return [], 0

    def rate(self, n: int) -> float:
        """How often a guess after an n-gram holds, given the one before it held."""
        kept, missed = self.outcomes[n]
        return kept / (kept + missed)

    def record(self, n: int, guessed: int, kept: int) -> None:
        super().record(n, guessed, kept)
        if self.lately:
            self.lately.record(n, guessed, kept)


class StepCost:
    """Seconds a step takes for its number of tokens: the median of its last 16 steps for a size seen
    SEEN times (one slow moment on a shared machine moves a median of three no more than a fast
    one), else `fixed + per_token * tokens` fitted to the last 64 steps (a step's cost is not
    linear: a second position per row changes the attention's path, and a repacked matmul takes
    rows in tiles, so 17 tokens can cost 1.1x 16). A size seen fewer times, or not for AGAIN steps,
    is `unmeasured`: plans try it, so that its cost is measured, not assumed, and measured again
    as it drifts with what else the machine runs. Every step's cost also grows with its rows'
    contexts: sizes are kept at one `pace`, which runs of steps of one size move to their ratio to
    that size's first median, so a size measured a hundred steps back compares with the one every
    step has (at 16 rows a 16-token step went from 46 to 58 ms in 128 steps while a 17-token one
    measured early stayed at 45)."""

    SEEN = 3
    AGAIN = 256
    PACE = 0.2  # how far a step in a run of one size moves the pace to its ratio to that size's first median

    def __init__(self):
        self.steps: collections.deque[tuple[int, float]] = collections.deque(maxlen=64)
        self.sums = (0, 0, 0.0, 0.0)  # over self.steps: tokens, tokens², seconds, tokens x seconds
        self.count = 0  # steps recorded
        self.recent: dict[int, collections.deque[float]] = {}  # tokens -> its last 16 steps' seconds
        self.median: dict[int, float] = {}  # tokens -> their median, once SEEN
        self.last: dict[int, int] = {}  # tokens -> the count when last recorded
        self.fit: tuple[float, float] | None = None
        self.stale = False  # the last 64 steps were all of one size: no guess has been tried lately
        self.pace = 1.0  # how much slower than when first measured (and than the line) steps run now
        self.first: dict[int, float] = {}  # tokens -> its first median: the pace's measure

    def record(self, tokens: int, seconds: float) -> None:
        if tokens in self.first and self.steps and self.steps[-1][0] == tokens:  # a run of one size
            self.pace += self.PACE * (seconds / self.first[tokens] - self.pace)
        seconds /= self.pace
        self.count += 1
        self.last[tokens] = self.count
        recent = self.recent.setdefault(tokens, collections.deque(maxlen=16))
        recent.append(seconds)
        if len(recent) >= self.SEEN:
            self.median[tokens] = statistics.median(recent)
            self.first.setdefault(tokens, self.median[tokens])
        if len(self.steps) == self.steps.maxlen:
            self._add(*self.steps[0], -1)
        self.steps.append((tokens, seconds))
        self._add(tokens, seconds, 1)
        n, (t, tt, s, ts) = len(self.steps), self.sums
        spread = n * tt - t * t  # n² times the sizes' variance: an exact integer
        self.stale = spread == 0
        per_token = (n * ts - t * s) / spread if spread else 0.0
        if per_token > 0:  # otherwise the timings say nothing yet
            self.fit = (max(0.0, (s - per_token * t) / n), per_token)

    def _add(self, tokens: int, seconds: float, sign: int) -> None:
        """The line's sums over the last 64 steps, kept as steps come and go (refitted from all 64
        each step, they were a fifth of the engine's Python between two decode calls at c=1, profiled)."""
        t, tt, s, ts = self.sums
        self.sums = (t + sign * tokens, tt + sign * tokens * tokens, s + sign * seconds, ts + sign * tokens * seconds)

    def unmeasured(self, tokens: int) -> bool:
        """Worth a step of this size to measure it; or any bigger step, where none was tried lately
        (a row's guesses hold or not only when tried: a copy's rows start from the prior)."""
        return self.stale or tokens not in self.median or self.count - self.last[tokens] >= self.AGAIN

    def estimator(self, hopeful: bool = False) -> Callable[[int], float]:
        """seconds(tokens), for one plan: a measured size's median; between two measured sizes, the
        line between their medians; above the largest, its median plus the fitted cost of the tokens
        above it (the line alone, fitted through small steps too, put 18 tokens below a measured 16),
        or, `hopeful`, its median alone (a step costs no less than a smaller one: the least it can
        cost, for trials); else the line. Before any line a token is taken to cost half a one-token
        step (a plan compares costs: the unit does not matter)."""
        fixed, per_token = self.fit or (0.5, 0.5)
        measured = sorted(self.median.items()) if self.fit else []
        measured = list(zip((t for t, _ in measured), itertools.accumulate((m for _, m in measured), max)))
        sizes = [t for t, _ in measured]

        def seconds(tokens: int) -> float:
            above = bisect.bisect_left(sizes, tokens)
            if above < len(sizes) and sizes[above] == tokens:
                return measured[above][1]
            if above == 0:
                return fixed + per_token * tokens
            size, median = measured[above - 1]
            if above == len(sizes):
                return median + (0.0 if hopeful else per_token) * (tokens - size)
            bigger, dearer = measured[above]
            return median + (dearer - median) * (tokens - size) / (bigger - size)

        return seconds


def width(chosen: dict) -> int:
    """Positions per row in a step where every row is padded to the longest guess: its last token and
    that guess."""
    return 1 + max((len(g) for g, _ in chosen.values()), default=0)


def plan(rows: list, room: Callable, tokens: Callable[[dict], int], cost: StepCost) -> dict:
    """Each row's guesses for this step ({row: (tokens, n)}, rows without any left out): of the
    guesses at least so likely to hold, for every such threshold, the set with the most expected
    tokens per second, where that is MARGIN above none (a set, not guess by guess: where rows are
    padded to the longest, the first guess costs every row a position and the others' then cost
    nothing). Where none is, a trial, so that what is not known gets measured: the likeliest guess
    after the longest match (NGRAMS[0]: a copy has them at once; on plain chat a trial after a
    3-token match failed about half the time, and its 8 guesses cost 4 steps on Q4_1), at the
    length that would pay most if a step above the largest size measured cost no more than that
    size, where the step's size is not measured yet (a copy's long guesses on a CPU whose second
    token costs a whole step, but whose tenth costs little more); else one guess, if a step of its
    size has not been measured lately.
    `room(row)`: how many a row may take; `tokens(plan)`: the step's tokens with that plan."""
    candidates = []
    for row in rows:
        lookup = row.guessing()
        guess, n = lookup.guess(min(MOST, room(row)))
        rate = lookup.rate(n) if guess else 0.0
        candidates += [(rate ** (i + 1), row, guess, n) for i in range(len(guess))]
    candidates.sort(key=lambda c: -c[0])  # a row's guesses stay in order: each is less likely
    best = fastest(candidates, len(rows), tokens, cost.estimator())
    sure = [c for c in candidates if c[3] == NGRAMS[0]]
    if best or not sure or not cost.steps:
        return best
    _, row, guess, n = sure[0]
    long = fastest([c for c in candidates if c[1] is row], len(rows), tokens, cost.estimator(hopeful=True))
    if long and tokens(long) not in cost.median:
        return long
    one = {row: (guess[:1], n)}
    return one if cost.unmeasured(tokens(one)) else {}


def fastest(candidates: list, rows: int, tokens: Callable[[dict], int], seconds: Callable) -> dict:
    """Of the candidates (likeliest first), the leading set with the most expected tokens per second
    by `seconds`, where that is MARGIN above none ({} if none is)."""
    chosen: dict = {}
    expected = float(rows)
    best, best_speed = chosen, rows / seconds(tokens(chosen)) * MARGIN
    for gain, row, guess, n in candidates:
        chosen = {**chosen, row: (guess[: len(chosen.get(row, ((), 0))[0]) + 1], n)}
        expected += gain
        if (speed := expected / seconds(tokens(chosen))) > best_speed:
            best, best_speed = chosen, speed
    return best
