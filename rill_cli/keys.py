"""The keyboard in a conversation: Ctrl-C stops the reply it follows, whenever after Enter it is
pressed, but never in the middle of drawing it."""
from __future__ import annotations

import contextlib
import os
import signal
import sys
import termios


class ReplyKeys:
    """Held for a whole `ask` or `chat`. A Ctrl-C pressed right after Enter, before the reply began,
    lands in one of three places, and each stops that reply before it is sent: the line editor's
    type-ahead (keys read together with the Enter: see LineReader), the terminal's input while it
    was still raw (the same), or a signal (`pressed`).

    While a reply streams, a Ctrl-C that lands while the live block is being drawn is held until
    the drawing is done (half a frame would stay on the screen), and keys are not echoed (a `^C` or
    type-ahead would land inside the live block). Type-ahead still reaches the next prompt."""

    def __init__(self):
        self.entered = False  # a question was entered and its reply has not begun
        self.drawing = False
        self.pressed = False  # a Ctrl-C held back, not acted on yet
        self.saved_tty = None  # the terminal's settings before a reply made it quiet

    def __enter__(self):
        self.previous = signal.signal(signal.SIGINT, self._interrupt)
        return self

    def __exit__(self, *exc):
        signal.signal(signal.SIGINT, self.previous)

    def _interrupt(self, signum, frame):
        if self.entered or self.drawing:
            self.pressed = True
        else:
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def reply(self):
        """While one reply streams. A Ctrl-C pressed since its Enter stops it before it starts."""
        self.saved_tty = None
        if sys.stdin.isatty():
            self.saved_tty = termios.tcgetattr(sys.stdin)
            quiet = termios.tcgetattr(sys.stdin)
            quiet[3] &= ~termios.ECHO
            termios.tcsetattr(sys.stdin, termios.TCSANOW, quiet)
        try:
            self.entered = False  # first: a signal from here on raises at once
            if self.pressed:
                self.pressed = False
                raise KeyboardInterrupt
            yield
        finally:
            if self.saved_tty is not None:
                termios.tcsetattr(sys.stdin, termios.TCSANOW, self.saved_tty)

    def confirm(self, question: str) -> bool:
        """A yes or no typed while a reply waits (a tool call that asks first), echoed; the end of
        the input is a no. Ctrl-C stops the reply, as anywhere in it."""
        quiet = termios.tcgetattr(sys.stdin) if self.saved_tty is not None else None
        if quiet is not None:
            termios.tcsetattr(sys.stdin, termios.TCSANOW, self.saved_tty)
        try:
            sys.stderr.write(question)
            sys.stderr.flush()
            answer = sys.stdin.readline()
        finally:
            if quiet is not None:
                termios.tcsetattr(sys.stdin, termios.TCSANOW, quiet)
        return answer.strip().lower() in ("y", "yes")

    @contextlib.contextmanager
    def draw(self):
        self.drawing = True
        try:
            yield
        finally:
            self.drawing = False
        if self.pressed:
            self.pressed = False
            raise KeyboardInterrupt


class LineReader:
    """prompt_toolkit's line editor (history kept across runs). Keys that arrive with the Enter
    are kept by prompt_toolkit as type-ahead for the next prompt, and keys typed in the moment before
    it gives the terminal back wait unread in the terminal's input: a Ctrl-C among either is the
    user stopping the reply about to start, so it goes to `keys.pressed`; the rest still reaches
    the next prompt."""

    def __init__(self, history_file: str, keys: ReplyKeys):
        from prompt_toolkit import PromptSession
        from prompt_toolkit.history import FileHistory

        self.session = PromptSession(history=FileHistory(history_file))
        self.keys = keys

    def __call__(self) -> str:
        from prompt_toolkit.input.typeahead import get_typeahead, store_typeahead
        from prompt_toolkit.keys import Keys

        # In the editor the terminal is raw: Ctrl-C is a key there, not a signal; a signal that comes
        # after the Enter finds `entered` already set.
        self.keys.pressed, self.keys.entered = False, True
        line = self.session.prompt("› ")
        ahead = get_typeahead(self.session.input) + self._unread()
        stops = [n for n, key in enumerate(ahead) if key.key == Keys.ControlC]
        if stops:
            self.keys.pressed = True
            ahead = ahead[stops[-1] + 1:]
        store_typeahead(self.session.input, ahead)
        return line

    @staticmethod
    def _unread() -> list:
        """The keys waiting in the terminal's input, read without blocking."""
        from prompt_toolkit.input.vt100_parser import Vt100Parser

        fd = sys.stdin.fileno()
        saved = termios.tcgetattr(fd)
        polling = termios.tcgetattr(fd)
        polling[3] &= ~termios.ICANON
        polling[6][termios.VMIN], polling[6][termios.VTIME] = 0, 0
        termios.tcsetattr(fd, termios.TCSANOW, polling)
        try:
            data = os.read(fd, 4096)
        finally:
            termios.tcsetattr(fd, termios.TCSANOW, saved)
        keys: list = []
        parser = Vt100Parser(keys.append)
        parser.feed(data.decode(errors="replace"))
        parser.flush()
        return keys
