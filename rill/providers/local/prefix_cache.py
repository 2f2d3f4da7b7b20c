"""Prefix reuse, for both engines: a prompt starts from the longest prefix whose keys and values
are already computed (a finished conversation's, kept here, or on llama.cpp a running row's).
The tokens identify the cache: the same tokens at the same positions have the same keys and
values."""
from __future__ import annotations

from typing import Callable, NamedTuple

FINISHED = ("stop", "length", "stop_sequence")  # reasons whose cache is worth keeping for a follow-up


class Kept(NamedTuple):
    """A finished conversation: its tokens and the engine's copy of their cache (llama.cpp: the
    sequence's state; transformers: each layer's keys and values), with room for `spare` tokens
    more (transformers: where a follow-up writes its own), which the budget counts too."""
    tokens: list[int]
    state: object
    spare: int = 0


def common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def longest_prefix(candidates: list, prompt: list[int], tokens: Callable = lambda k: k.tokens) -> tuple[int, object]:
    """The candidate whose `tokens(candidate)` share the longest prefix with the prompt, and how many
    tokens of it to reuse: at most all but the prompt's last, decoded again for its logits."""
    shared, best = max(((common_prefix(tokens(k), prompt), k) for k in candidates), default=(0, None),
                       key=lambda found: found[0])
    return min(shared, len(prompt) - 1), best


class PrefixCache:
    """Finished conversations kept for follow-ups, least recently kept first, `budget` tokens in all."""

    def __init__(self, budget: int):
        self.budget = budget
        self.kept: list[Kept] = []

    def find(self, prompt: list[int]) -> tuple[int, Kept | None]:
        return longest_prefix(self.kept, prompt)

    def fits(self, tokens: list[int], spare: int = 0) -> bool:
        """Whether a conversation this long (and its room) may be kept at all (checked before copying
        its cache)."""
        return len(tokens) + spare <= self.budget

    def extended_by(self, tokens: list[int]) -> list[Kept]:
        """The kept conversations `tokens` goes on from (keep() drops them)."""
        return [k for k in self.kept if k.tokens == tokens[: len(k.tokens)]]

    def keep(self, entry: Kept) -> None:
        """`entry` as the most recent; a kept conversation it extends is dropped, then the oldest
        until the budget holds."""
        if not self.fits(entry.tokens, entry.spare):
            return
        extended = {id(k) for k in self.extended_by(entry.tokens)}
        self.kept = [k for k in self.kept if id(k) not in extended] + [entry]
        while sum(len(k.tokens) + k.spare for k in self.kept) > self.budget:
            self.kept.pop(0)

    def clear(self) -> None:
        self.kept = []


def template_closing(render: Callable[[list[dict]], str], encode: Callable[[str], list[int]]) -> list[int]:
    r"""The chat template's tokens from a reply's end-of-turn token up to the next user message's
    text (SmolLM2: `<|im_end|>\n<|im_start|>user\n`), as a follow-up's prompt holds them: what a
    finished chat's cache can take on before its next turn comes. [] where the template does not
    render a reply as it was written, or its tokens do not split where the reply ends. (The markers
    are no whitespace: some templates trim a message's content.)"""
    reply, ask = "Reply 7f3a.", "Next message 7f3a."
    try:
        text = render([{"role": "user", "content": "Hello."}, {"role": "assistant", "content": reply},
                       {"role": "user", "content": ask}])
    except Exception:  # a template that refuses this chat
        return []
    start, end = text.find(reply), text.find(ask)
    if not 0 <= start < end:
        return []
    before, upto = encode(text[: start + len(reply)]), encode(text[:end])
    return upto[len(before):] if upto[: len(before)] == before else []
