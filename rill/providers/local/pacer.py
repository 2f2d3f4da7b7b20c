"""How much of a long prompt a batch prefills per step while other rows stream."""
from __future__ import annotations

import collections


class PrefillPacer:
    """Sizes the prompt slices a batch prefills while other rows stream, so running streams never
    stall: a step that carries a slice should take at most STALL times a plain decode step. Costs
    differ by machine and engine and grow with the prompt's cache (attention), so the pacer fits
    `extra = fixed + per_token * size` to the recent steps and sizes slices from the fit. When the
    fixed cost alone breaks the bound, shrinking cannot help: a slice then carries a quarter of its
    fixed cost's worth of tokens, so steps stay near the bound and the long prompt still advances."""

    STALL = 2.0

    def __init__(self, most: int):
        self.most = most  # RILL_PREFILL_CHUNK: never more than this per step
        self.size = min(most, 8)
        self.decode_seconds: float | None = None  # a step without prompt tokens, averaged
        self.steps: collections.deque[tuple[int, float]] = collections.deque(maxlen=32)  # (tokens, seconds over decode)
        self.fit: tuple[float, float] | None = None  # (fixed seconds, seconds per token)

    def budget(self) -> int:
        return self.size

    def record(self, seconds: float, prompt_tokens: int) -> None:
        if prompt_tokens == 0:
            old = self.decode_seconds
            self.decode_seconds = seconds if old is None else 0.8 * old + 0.2 * seconds
            return
        if self.decode_seconds is None:
            return
        self.steps.append((prompt_tokens, seconds - self.decode_seconds))
        self.fit = self._fit() or self.fit  # a run of equal sizes keeps the last fit
        if self.fit is None:  # one size seen so far: step towards the bound to learn more
            over = seconds > self.STALL * self.decode_seconds and self.size > 1
            self.size = int(self.size * 0.7) if over else int(self.size * 1.25) + 1
        else:
            fixed, per_token = self.fit
            room = (self.STALL - 1) * self.decode_seconds - fixed
            self.size = int(max(room, fixed / 4) / per_token)
        self.size = max(1, min(self.most, self.size))

    def _fit(self) -> tuple[float, float] | None:
        """Least squares over the recent steps; None while they cannot tell fixed from per-token."""
        n = len(self.steps)
        mean_k = sum(k for k, _ in self.steps) / n
        mean_e = sum(e for _, e in self.steps) / n
        var = sum((k - mean_k) ** 2 for k, _ in self.steps)
        if var == 0:
            return None
        per_token = sum((k - mean_k) * (e - mean_e) for k, e in self.steps) / var
        if per_token <= 0:  # noise: timings this close say nothing yet
            return None
        return max(0.0, mean_e - per_token * mean_k), per_token
