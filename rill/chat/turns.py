"""The turns of this process: running ones, and finished ones while they stay readable."""
from __future__ import annotations

import contextlib
import logging
import threading
import time

from .. import metrics
from ..refusals import Refused
from ..runtime import spawn
from .log import TurnLog
from .turn import Turn, TurnState, interrupted

log = logging.getLogger(__name__)


class Turns:
    """Running turns, and finished ones while they stay readable. A reaper cancels turns nobody
    has read for `orphan_seconds` and forgets finished ones after `retention_seconds`."""

    def __init__(self, settings):
        self.settings = settings
        self.lock = threading.Lock()  # green under eventlet, as it should be there
        self.by_id: dict[str, Turn] = {}
        self.live: dict[str, Turn] = {}  # the running ones among them, and those that ended since the last look
        self._started = False

    def running(self, user: str | None = None) -> list[Turn]:
        """Asked for every new turn (the user's cap): looks at the running turns only, however many
        finished ones are kept readable."""
        running = []
        for turn in list(self.live.values()):
            if not turn.running:
                self.live.pop(turn.id, None)
            elif user is None or turn.user == user:
                running.append(turn)
        return running

    def running_in(self, user: str, thread_id: str) -> list[dict]:
        """The user's replies being written in a thread, for a page that opens it to follow."""
        return [{"turn_id": t.id, "question_id": t.place.question_id, "reply_id": t.place.reply_id}
                for t in self.running(user) if t.thread_id == thread_id]

    def open_log(self, turn_id: str) -> TurnLog:
        return TurnLog(turn_id)

    @contextlib.contextmanager
    def reserve(self, user: str, turn_id: str):
        """Check the user's running-turn cap and the id, and hold them until add()."""
        with self.lock:
            self.check(user, turn_id)
            yield

    def check(self, user: str, turn_id: str | None = None) -> None:
        limit = self.settings.max_concurrent_turns
        if len(self.running(user)) >= limit:
            raise Refused("too_many_turns",
                           f"{limit} replies are already running for you; wait for one to finish or cancel it")
        if turn_id is not None and turn_id in self.by_id:
            raise Refused("turn_exists", f"turn {turn_id!r} already exists; choose another turn_id")

    def start_background(self) -> None:
        """The reaper (the server starts it; the first turn does where no server runs)."""
        if not self._started:
            self._started = True
            spawn(self._reap_forever)

    def add(self, turn: Turn) -> None:
        self.by_id[turn.id] = turn
        self.live[turn.id] = turn
        self.start_background()
        turn.begin()
        spawn(turn.run)

    def get(self, turn_id: str, user: str) -> Turn | None:
        """A running or retained turn of this user's; None for anyone else's."""
        turn = self.by_id.get(turn_id)
        return turn if turn is not None and turn.user == user else None

    def reap(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        for turn in list(self.by_id.values()):
            if turn.running and not turn.cancelling and \
                    turn.log.unread_for(now) >= self.settings.orphan_seconds:
                log.info("turn %s had no reader for %.0f s: cancelled", turn.id, turn.log.unread_for(now))
                metrics.ORPHAN_CANCELS.inc()
                turn.cancel()
            elif not turn.running and now - turn.ended_at >= self.settings.turn_retention_seconds:
                self.by_id.pop(turn.id, None)

    def _reap_forever(self) -> None:
        while True:
            time.sleep(min(1.0, self.settings.orphan_seconds / 4))
            try:
                self.reap()
            except Exception:
                log.exception("reaping turns failed")

    def interrupt_all(self, grace_seconds: float) -> None:
        """Shutting down: every running turn ends `interrupted`, saved with what it wrote."""
        turns = self.running()
        for turn in turns:
            turn.interrupt()
        deadline = time.monotonic() + grace_seconds
        while any(t.running for t in turns) and time.monotonic() < deadline:
            time.sleep(0.05)
        for turn in turns:  # a model that did not stop in time: end it without waiting
            turn.end(TurnState.INTERRUPTED, interrupted())
