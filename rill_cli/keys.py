"""The keyboard while a reply streams: Ctrl-C stops it, but never in the middle of drawing it."""
from __future__ import annotations

import contextlib
import signal
import sys
import termios


class ReplyKeys:
    """A Ctrl-C that lands while the live block is being drawn would leave half a frame on the
    screen, so it is held until the drawing is done; and keys are not echoed meanwhile (a `^C` or
    type-ahead would land inside the live block). Type-ahead still reaches the next prompt."""

    def __init__(self):
        self.drawing = False
        self.held = False

    def __enter__(self):
        self.previous = signal.signal(signal.SIGINT, self._interrupt)
        self.saved_tty = None
        if sys.stdin.isatty():
            self.saved_tty = termios.tcgetattr(sys.stdin)
            quiet = termios.tcgetattr(sys.stdin)
            quiet[3] &= ~termios.ECHO
            termios.tcsetattr(sys.stdin, termios.TCSANOW, quiet)
        return self

    def __exit__(self, *exc):
        signal.signal(signal.SIGINT, self.previous)
        if self.saved_tty is not None:
            termios.tcsetattr(sys.stdin, termios.TCSANOW, self.saved_tty)

    def _interrupt(self, signum, frame):
        if self.drawing:
            self.held = True
        else:
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def draw(self):
        self.drawing = True
        try:
            yield
        finally:
            self.drawing = False
        if self.held:
            self.held = False
            raise KeyboardInterrupt
