"""Fast tier: the turn's event log on its own, and the turn registry's reaper."""
import threading
import time

import pytest

from rill.chat.events import Done, Start, Token, Usage
from rill.chat.log import TurnLog

START = Start(None, None, "t1", "scripted/echo", None, None)
DONE = Done(True, 3, "stop", 1.0, 2.0, None, Usage(1, 3, 0))


def test_events_are_numbered_and_any_reader_starts_anywhere():
    log = TurnLog("t1")
    log.append(START)
    for n, word in enumerate(("a", "b", "c")):
        log.append(Token(word, n + 1))
    log.append(DONE)
    assert [e.seq for e in log.events] == [0, 1, 2, 3, 4] and log.closed and log.last_seq == 4
    assert [[e.seq for e in batch] for batch in log.follow(after=2)] == [[3, 4]]  # what is there: one batch
    assert [[e.seq for e in batch] for batch in log.follow()] == [[0, 1, 2, 3, 4]]
    assert list(log.follow(after=4)) == []
    with pytest.raises(RuntimeError):
        log.append(Token("late", 4))


def test_live_readers_get_every_event_once_in_order():
    log = TurnLog("t2")
    log.append(START)
    results = [[], []]

    def read(into, after):
        into.extend(e.seq for batch in log.follow(after, keepalive=5) for e in batch if e.kind != "ping")

    readers = [threading.Thread(target=read, args=(results[0], -1)), threading.Thread(target=read, args=(results[1], 0))]
    for r in readers:
        r.start()
    for n in range(200):
        log.append(Token(str(n), n + 1))
    log.append(DONE)
    for r in readers:
        r.join(10)
    assert results[0] == list(range(202)) and results[1] == list(range(1, 202))


def test_a_silent_turn_gets_pings_and_reader_counts_are_kept():
    log = TurnLog("t3")
    log.append(START)
    reader = log.follow(keepalive=0.05)
    assert [e.kind for e in next(reader)] == ["start"] and log.readers == 1 and log.unread_for(time.monotonic()) == 0
    [ping] = next(reader)
    assert ping.kind == "ping" and ping.seq == 0
    reader.close()
    assert log.readers == 0
    time.sleep(0.02)
    assert log.unread_for(time.monotonic()) > 0


class Settings:
    orphan_seconds = 10.0
    turn_retention_seconds = 100.0
    max_concurrent_turns = 4


class FakeTurn:
    def __init__(self, user="u", running=True, ended_at=None):
        self.id, self.user, self.running, self.ended_at = f"t{id(self)}", user, running, ended_at
        self.log = TurnLog(self.id)
        self.cancelled = False

    def cancel(self):
        self.cancelled = True

    @property
    def cancelling(self):
        return self.cancelled


def test_the_reaper_cancels_orphans_and_forgets_old_turns():
    from rill.chat.turns import Turns

    turns = Turns(Settings())
    orphan, read, old, recent = FakeTurn(), FakeTurn(), FakeTurn(running=False, ended_at=0.0), \
        FakeTurn(running=False, ended_at=50.0)
    for t in (orphan, read, old, recent):
        turns.by_id[t.id] = t
    reading = read.log.follow()  # a reader attached (a generator counts once it starts)
    read.log.append(START)
    next(reading)
    now = orphan.log.unread_since + 11
    old.ended_at, recent.ended_at = now - 200, now - 50
    turns.reap(now=now)
    assert orphan.cancelled and not read.cancelled
    assert old.id not in turns.by_id and recent.id in turns.by_id
    assert turns.get(recent.id, "u") is recent and turns.get(recent.id, "someone else") is None


def test_the_cap_counts_running_turns_and_forgets_ended_ones_but_not_their_logs():
    from rill.chat.turns import Turns

    turns = Turns(Settings())
    mine, ending, theirs = FakeTurn(), FakeTurn(), FakeTurn(user="v")
    for t in (mine, ending, theirs):  # as add() keeps them, without starting a pump
        turns.by_id[t.id] = turns.live[t.id] = t
    assert turns.running("u") == [mine, ending] and turns.running() == [mine, ending, theirs]
    ending.running = False
    assert turns.running("u") == [mine] and ending.id not in turns.live
    assert turns.get(ending.id, "u") is ending  # still readable until the reaper forgets it
