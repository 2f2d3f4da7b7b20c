"""A turn's event log: append-only, numbered from 0, readable by any number of readers from any
point while the turn runs and for a while after it ends.

The writer is the turn: its pump, or a reader waiting for the next event, which writes it itself
(Turn.follow). Readers are the connections following it (the request that started it, a reloaded
page, a second tab, another transport). The pump and the readers are green threads under eventlet
and real ones otherwise: runtime.condition() suits either.
"""
from __future__ import annotations

import time
from typing import Iterator, Protocol

from ..runtime import condition
from .events import FINAL, Payload, StreamEvent


class Writer(Protocol):
    """What writes a turn's events, for readers that write what they wait for (Turn)."""

    def joined(self) -> None:
        """A reader that may write follows."""

    def left(self) -> None:
        """It stopped following."""

    def take(self, timeout: float) -> bool:
        """The next events into the log, waiting `timeout` seconds at most; False: not now."""

    def taken(self) -> bool:
        """Under the log's lock, after take() said no: True while that stands (the reader waits,
        and is woken when it changes)."""


class TurnLog:
    def __init__(self, turn_id: str):
        self.turn_id = turn_id
        self.events: list[StreamEvent] = []
        self.changed = condition()
        self.readers = 0
        self.unread_since: float | None = time.monotonic()  # None while someone reads
        self.closed = False  # the final event is in

    @property
    def last_seq(self) -> int:
        return len(self.events) - 1

    def append(self, payload: Payload) -> StreamEvent:
        with self.changed:
            if self.closed:
                raise RuntimeError(f"turn {self.turn_id} already ended")
            event = StreamEvent(payload.kind, payload.as_data(), self.turn_id, len(self.events))
            self.events.append(event)
            self.closed = payload.kind in FINAL  # not event.final: a call less, once a token
            self.changed.notify_all()
        return event

    def follow(self, after: int = -1, keepalive: float = 15.0,
               writer: Writer | None = None) -> Iterator[list[StreamEvent]]:
        """The events whose seq is greater than `after`, then the live ones until the final one,
        in batches: each is what has come since the last (a reader that fell behind, or one that
        starts from the past, gets it all at once and can send it in one write; one that keeps up
        gets each event alone, when it comes); a `ping` (seq of the last event sent) alone after
        `keepalive` seconds of silence. With a `writer` (the turn), a reader waiting for the next
        event writes it itself where it can."""
        with self.changed:
            self.readers += 1
            self.unread_since = None
        if writer is not None:
            writer.joined()
        try:
            next_seq = after + 1
            quiet_until = time.monotonic() + keepalive
            while True:
                closed = self.closed  # read first: once it is set, the final event is in
                new = self.events[next_seq:]
                if new:
                    yield new
                    if new[-1].kind in FINAL:
                        return
                    next_seq = new[-1].seq + 1
                    quiet_until = time.monotonic() + keepalive
                    continue
                if closed:
                    return
                left = quiet_until - time.monotonic()
                if left <= 0:
                    yield [StreamEvent("ping", {}, self.turn_id, next_seq - 1)]
                    quiet_until = time.monotonic() + keepalive
                elif writer is None or not writer.take(left):
                    with self.changed:
                        if next_seq >= len(self.events) and not self.closed and (writer is None or writer.taken()):
                            self.changed.wait(left)
        finally:
            if writer is not None:
                writer.left()
            with self.changed:
                self.readers -= 1
                if not self.readers:
                    self.unread_since = time.monotonic()

    def unread_for(self, now: float) -> float:
        """Seconds since the last reader left (0 while someone reads)."""
        return 0.0 if self.unread_since is None else now - self.unread_since
