"""Stop strings: where a reply must end, found across the pieces it streams in."""
from __future__ import annotations


class StopMatcher:
    """Cuts the reply before a stop string, holding back text that may be the start of one."""

    def __init__(self, stops: tuple[str, ...]):
        self.stops = [s for s in stops if s]
        self.held = ""
        self.matched: str | None = None

    def push(self, piece: str) -> tuple[str, bool]:
        """(text safe to send now, whether a stop string was reached)"""
        self.held += piece
        hits = sorted((self.held.index(s), s) for s in self.stops if s in self.held)
        if hits:
            (at, self.matched), = hits[:1]
            out, self.held = self.held[:at], ""
            return out, True
        keep = max((k for s in self.stops for k in range(1, min(len(s), len(self.held) + 1))
                    if self.held.endswith(s[:k])), default=0)
        out, self.held = self.held[: len(self.held) - keep], self.held[len(self.held) - keep :]
        return out, False

    def flush(self) -> str:
        out, self.held = self.held, ""
        return out
