"""Splitting a model's `<think>...</think>` out of its answer, as the text streams."""
from __future__ import annotations

from ..providers.tags import TagSplitter

KINDS = {"inside": "reasoning", "outside": "token"}


class ReasoningSplitter:
    def __init__(self, tags: str):
        """`tags`: "open,close", e.g. "<think>,</think>"; empty: nothing is split."""
        parts = [t.strip() for t in tags.split(",")] if tags.strip() else []
        if parts and (len(parts) != 2 or not all(parts)):
            raise SystemExit(f"RILL_REASONING_TAGS={tags!r}: give the opening and closing tag, e.g. <think>,</think>")
        self.tags = TagSplitter(*parts) if parts else None

    def feed(self, text: str) -> list[tuple[str, str]]:
        """[(kind, text)] for this piece: kind "reasoning" or "token"; empty texts left out."""
        if self.tags is None:
            return [("token", text)] if text else []
        return [(KINDS[kind], part) for kind, part in self.tags.feed(text) if part]

    def flush(self) -> list[tuple[str, str]]:
        return [(KINDS[kind], part) for kind, part in self.tags.flush()] if self.tags else []
