"""Showing a reply as it streams.

In a terminal, Markdown is rendered with rich: a block is printed once, for good, as soon as the
next one starts (so nothing is redrawn into repeated lines), and only the block being written is
live. Anywhere else (a pipe, a file) the text is written as it comes, with no escape codes.
"""
from __future__ import annotations

import json
import sys

from markdown_it import MarkdownIt
from rich.console import Console
from rich.live import Live
from rich.markdown import Markdown
from rich.segment import Segment


class Block:
    """A rendered block without the blank lines rich puts above some elements (lists), since
    blocks are printed one by one with one blank line between; `tail` keeps only the last lines
    that fit on the screen (the live block: a live area taller than the terminal scrolls, and its
    redraws leave copies behind)."""

    def __init__(self, markdown: str, tail: bool = False):
        self.markdown = Markdown(markdown)
        self.tail = tail

    def __rich_console__(self, console, options):
        lines = console.render_lines(self.markdown, options, pad=False)
        while lines and not "".join(segment.text for segment in lines[0]).strip():
            lines.pop(0)
        if self.tail:
            lines = lines[-max(1, console.size.height - 1):]
        for line in lines:
            yield from line
            yield Segment.line()


PARSER = MarkdownIt().enable("strikethrough").enable("table")  # rich's


def block_starts(text: str) -> list[int]:
    """The line numbers where the top-level Markdown blocks of `text` start."""
    return [token.map[0] for token in PARSER.parse(text) if token.level == 0 and token.map and token.nesting >= 0]


class MarkdownView:
    def __init__(self, console: Console):
        self.console = console
        self.pending = ""  # the text of the block being written (and any after it, not yet split)
        self.printed = False
        self.live: Live | None = None

    def add(self, piece: str) -> None:
        self.pending += piece
        starts = block_starts(self.pending)
        if len(starts) > 1:  # every block but the last one is finished
            lines = self.pending.splitlines(keepends=True)
            cut = sum(len(line) for line in lines[: starts[-1]])
            self._print(self.pending[:cut])
            self.pending = self.pending[cut:]
        if self.live is None:
            self.live = Live(console=self.console, auto_refresh=False, transient=True)
            self.live.start()
        self.live.update(Block(self.pending, tail=True), refresh=True)

    def _print(self, block: str) -> None:
        if not block.strip():
            return
        if self.printed:
            self.console.print()
        self.console.print(Block(block))
        self.printed = True

    def note(self, text: str) -> None:
        """A line about the reply (stopped, resuming, stats), above the live block."""
        self.console.print(text, style="dim", markup=False, highlight=False)

    def end(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None
        self._print(self.pending)
        self.pending = ""
        self.printed = False


class PlainView:
    """The text as it comes; notes go to stderr, so a pipe gets the reply only."""

    def __init__(self, out=None):
        self.out = out or sys.stdout
        self.last = "\n"

    def add(self, piece: str) -> None:
        self.out.write(piece)
        self.out.flush()
        self.last = piece[-1:] or self.last

    def note(self, text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    def end(self) -> None:
        if self.last != "\n":
            self.out.write("\n")
            self.out.flush()
        self.last = "\n"


def view_for(console: Console):
    """Markdown in a terminal, plain text anywhere else."""
    return MarkdownView(console) if console.is_terminal else PlainView()


def tool_step(step) -> str:
    """A tool call Rill runs (backends.ToolStep), in one line or a few: `→ name {arguments}` when
    it is called, `← name: result` (cut) when it answered."""
    if step.kind == "result":
        text = step.content.strip()
        lines = text.splitlines()
        shown = "\n  ".join(lines[:5])[:400]
        more = len(text) - len(shown.replace("\n  ", "\n"))
        cut = f" … ({more:,} more characters)" if more > 0 else ""
        return f"← {step.name}{' failed' if step.is_error else ''}: {shown}{cut}"
    try:
        arguments = json.dumps(json.loads(step.arguments or "{}"), ensure_ascii=False)
    except ValueError:
        arguments = step.arguments
    return f"→ {step.name} {arguments[:200]}{'…' if len(arguments) > 200 else ''}"
