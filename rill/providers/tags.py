"""Finding a pair of tags (`<think>`/`</think>`, `<tool_call>`/`</tool_call>`) in text that streams.

A tag may arrive cut across pieces (`<thi` + `nk>`), so text that could be the start of the tag
being looked for is held back until the next piece says whether it is.
"""
from __future__ import annotations


class TagSplitter:
    def __init__(self, open_tag: str, close_tag: str, inside: str = "inside", outside: str = "outside",
                 marks: bool = True):
        """`inside` and `outside` name the kinds of text; `marks`: whether the tags are told too."""
        self.open, self.close = open_tag, close_tag
        self.names = {True: inside, False: outside}
        self.marks = marks
        self.inside = False
        self.held = ""

    def feed(self, text: str) -> list[tuple[str, str]]:
        """[(kind, text)] in order: kind "outside" or "inside" with non-empty text, or (with
        `marks`) "open" or "close" (text "") where a tag was."""
        tag = self.close if self.inside else self.open
        if not self.held and tag[0] not in text:  # most pieces: no tag here, nor the start of one
            return [(self.names[self.inside], text)] if text else []
        out = []
        text = self.held + text
        self.held = ""
        while text:
            tag = self.close if self.inside else self.open
            kind = self.names[self.inside]
            at = text.find(tag)
            if at >= 0:
                out += [(kind, text[:at]), ("close" if self.inside else "open", "")]
                text = text[at + len(tag):]
                self.inside = not self.inside
                continue
            keep = next((n for n in range(min(len(tag) - 1, len(text)), 0, -1) if tag.startswith(text[-n:])), 0)
            out.append((kind, text[:len(text) - keep]))
            self.held = text[len(text) - keep:]
            break
        return [(kind, part) for kind, part in out if part or (self.marks and kind in ("open", "close"))]

    def flush(self) -> list[tuple[str, str]]:
        """The end of the text: what was held back is what it looked like."""
        held, self.held = self.held, ""
        return [(self.names[self.inside], held)] if held else []
