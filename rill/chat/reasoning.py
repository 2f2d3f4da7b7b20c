"""Splitting a model's `<think>...</think>` out of its answer, as the text streams."""
from __future__ import annotations

from ..providers.tags import TagSplitter


class Unsplit:
    """No tags configured: every piece is answer text."""

    def feed(self, text: str) -> list[tuple[str, str]]:
        return [("token", text)] if text else []

    def flush(self) -> list[tuple[str, str]]:
        return []


def reasoning_splitter(tags: str) -> TagSplitter | Unsplit:
    """`tags`: "open,close", e.g. "<think>,</think>"; empty: nothing is split. Its feed(piece) and
    flush() give [(kind, text)]: kind "reasoning" or "token", texts never empty."""
    parts = [t.strip() for t in tags.split(",")] if tags.strip() else []
    if parts and (len(parts) != 2 or not all(parts)):
        raise SystemExit(f"RILL_REASONING_TAGS={tags!r}: give the opening and closing tag, e.g. <think>,</think>")
    return TagSplitter(*parts, inside="reasoning", outside="token", marks=False) if parts else Unsplit()
