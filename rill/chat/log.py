"""A turn's event log: append-only, numbered from 0, readable by any number of readers from any
point while the turn runs and for a while after it ends.

The writer is the turn's pump; readers are the connections following it (the request that
started it, a reloaded page, a second tab, another transport). The pump and the readers are
green threads under eventlet and real ones otherwise: runtime.condition() suits either.
"""
from __future__ import annotations

import time
from typing import Iterator

from ..runtime import condition
from .events import Payload, StreamEvent


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
            self.closed = event.final
            self.changed.notify_all()
        return event

    def follow(self, after: int = -1, keepalive: float = 15.0) -> Iterator[list[StreamEvent]]:
        """The events whose seq is greater than `after`, then the live ones until the final one,
        in batches: each is what has come since the last (a reader that fell behind, or one that
        starts from the past, gets it all at once and can send it in one write; one that keeps up
        gets each event alone, when it comes); a `ping` (seq of the last event sent) alone after
        `keepalive` seconds of silence."""
        with self.changed:
            self.readers += 1
            self.unread_since = None
        try:
            next_seq = after + 1
            while True:
                with self.changed:
                    if next_seq >= len(self.events) and not self.closed:
                        self.changed.wait(keepalive)
                    new = self.events[next_seq:]
                    closed = self.closed
                if not new:
                    if closed:
                        return
                    yield [StreamEvent("ping", {}, self.turn_id, next_seq - 1)]
                    continue
                yield new
                if closed:  # the final event was among them
                    return
                next_seq = new[-1].seq + 1
        finally:
            with self.changed:
                self.readers -= 1
                if not self.readers:
                    self.unread_since = time.monotonic()

    def unread_for(self, now: float) -> float:
        """Seconds since the last reader left (0 while someone reads)."""
        return 0.0 if self.unread_since is None else now - self.unread_since
