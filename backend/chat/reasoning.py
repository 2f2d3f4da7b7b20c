"""Splitting a model's `<think>...</think>` out of its answer, as the text streams.

A tag may arrive split across pieces (`<thi` + `nk>`), so text that could be the start of the
tag being looked for is held back until the next piece says whether it is.
"""
from __future__ import annotations


class ReasoningSplitter:
    def __init__(self, tags: str):
        """`tags`: "open,close", e.g. "<think>,</think>"; empty: nothing is split."""
        parts = [t.strip() for t in tags.split(",")] if tags.strip() else []
        if parts and (len(parts) != 2 or not all(parts)):
            raise SystemExit(f"RILL_REASONING_TAGS={tags!r}: give the opening and closing tag, e.g. <think>,</think>")
        self.open, self.close = parts if parts else ("", "")
        self.thinking = False
        self.held = ""

    def feed(self, text: str) -> list[tuple[str, str]]:
        """[(kind, text)] for this piece: kind "reasoning" or "token"; empty texts left out."""
        if not self.open:
            return [("token", text)] if text else []
        out = []
        text = self.held + text
        self.held = ""
        while text:
            tag = self.close if self.thinking else self.open
            kind = "reasoning" if self.thinking else "token"
            at = text.find(tag)
            if at >= 0:
                out.append((kind, text[:at]))
                text = text[at + len(tag):]
                self.thinking = not self.thinking
                continue
            keep = next((n for n in range(min(len(tag) - 1, len(text)), 0, -1) if tag.startswith(text[-n:])), 0)
            out.append((kind, text[:len(text) - keep]))
            self.held = text[len(text) - keep:]
            break
        return [(kind, part) for kind, part in out if part]

    def flush(self) -> list[tuple[str, str]]:
        """The end of the reply: what was held back is what it looked like."""
        held, self.held = self.held, ""
        return [("reasoning" if self.thinking else "token", held)] if held else []
