"""Turns shared by several workers through Redis (RILL_REDIS_URL).

A turn still runs in the worker that started it (its owner), but everything about it that readers
need lives in Redis, so any worker can serve them:

- its event log is a Redis Stream whose entry ids are `<seq>-1`: "everything after seq N" is one
  XREAD from `N-1`, and a stale writer cannot add an event twice or after the final one;
- its record (`turn:<id>`: user, owner, status, where its reply goes) says who owns it, and
  `turn:<id>:readers` who follows it (`<worker>:<reader>`, so a dead worker's readers drop out);
- `running` (turn id -> owner) and `running:<user>` hold the running turns: the per-user cap is
  checked and taken in one script, so it holds across workers;
- a cancel sent to any worker is published on `cancel`, an approval of a tool call on `approve`;
  the owner acts on them;
- each worker refreshes `worker:<id>` every HEARTBEAT seconds. A worker that finds a running turn
  whose owner's key has expired ends it `interrupted` for its readers and saves what it wrote.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import time
import uuid
from typing import Iterator

import redis

from ..conversations.parts import reply_parts
from ..refusals import Refused
from ..runtime import spawn
from .events import Error, ErrorBody, Payload, StreamEvent
from .turn import TurnState, interrupted
from .turns import Turns

log = logging.getLogger(__name__)

HEARTBEAT = 2.0  # seconds between a worker's heartbeats
OWNER_TTL = 10  # seconds after its last heartbeat that a worker counts as dead
STORE_RETRY_SECONDS = 10.0  # how long a running turn's writes wait for Redis to come back

# ARGV: prefix, turn id, seq, kind, data, retention seconds; KEYS none (one Redis, not a cluster).
APPEND = """
local P, id = ARGV[1], ARGV[2]
local stream, record = P .. 'turn:' .. id .. ':events', P .. 'turn:' .. id
local last = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', 1)[1]
if last and (last[2][2] == 'done' or last[2][2] == 'error') then return 0 end
redis.call('XADD', stream, ARGV[3] .. '-1', 'k', ARGV[4], 'd', ARGV[5])
if ARGV[4] == 'done' or ARGV[4] == 'error' then
  local data = cjson.decode(ARGV[5])
  local status = 'complete'
  if ARGV[4] == 'error' then
    status = data.error.type == 'interrupted' and 'interrupted' or 'error'
  elseif data.finish_reason == 'cancelled' then
    status = 'cancelled'
  end
  local user = redis.call('HGET', record, 'user')
  redis.call('HSET', record, 'status', status)
  redis.call('HDEL', P .. 'running', id)
  if user then redis.call('SREM', P .. 'running:' .. user, id) end
  redis.call('EXPIRE', stream, ARGV[6])
  redis.call('EXPIRE', record, ARGV[6])
  redis.call('DEL', record .. ':readers')
end
return 1
"""

# ARGV: prefix, turn id, user, owner, limit, now
RESERVE = """
local P, id, user = ARGV[1], ARGV[2], ARGV[3]
if redis.call('EXISTS', P .. 'turn:' .. id) == 1 then return -1 end
if redis.call('SCARD', P .. 'running:' .. user) >= tonumber(ARGV[5]) then return 0 end
redis.call('HSET', P .. 'turn:' .. id, 'user', user, 'owner', ARGV[4], 'status', 'running',
           'unread_since', ARGV[6])
redis.call('HSET', P .. 'running', id, ARGV[4])
redis.call('SADD', P .. 'running:' .. user, id)
return 1
"""


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RedisTurnLog:
    """The TurnLog contract on a Redis Stream (see the module docstring)."""

    def __init__(self, turns: "RedisTurns", turn_id: str):
        self.turns = turns
        self.client = turns.client
        self.turn_id = turn_id
        self.stream = f"{turns.prefix}turn:{turn_id}:events"
        self.record = f"{turns.prefix}turn:{turn_id}"
        self.readers = f"{self.record}:readers"
        self.next_seq = 0  # the writer's (the owner's) next seq

    def _last(self) -> StreamEvent | None:
        entries = self.client.xrevrange(self.stream, count=1)
        return self._event(*entries[0]) if entries else None

    @property
    def closed(self) -> bool:
        last = self._last()
        return last is not None and last.final

    @property
    def last_seq(self) -> int:
        last = self._last()
        return -1 if last is None else last.seq

    @property
    def events(self) -> list[StreamEvent]:
        return [self._event(*entry) for entry in self.client.xrange(self.stream)]

    def _event(self, entry_id, fields) -> StreamEvent:
        return StreamEvent(_text(fields[b"k"]), json.loads(fields[b"d"]), self.turn_id,
                           int(_text(entry_id).split("-")[0]))

    def append(self, payload: Payload) -> StreamEvent:
        """Write the next event; while Redis is away, wait for it (STORE_RETRY_SECONDS at most)."""
        event = StreamEvent(payload.kind, payload.as_data(), self.turn_id, self.next_seq)
        self.turns.write(self.turn_id, event)
        self.next_seq += 1
        return event

    def follow(self, after: int = -1, keepalive: float = 15.0) -> Iterator[list[StreamEvent]]:
        """As TurnLog.follow, read from Redis: any worker's readers see the owner's events, a
        batch a read."""
        reader = f"{self.turns.worker}:{uuid.uuid4().hex[:8]}"
        self.client.sadd(self.readers, reader)
        try:
            last_id = "0-0" if after < 0 else f"{after}-1"
            seq = after
            while True:
                reply = self.client.xread({self.stream: last_id}, block=int(min(keepalive, 10.0) * 1000), count=256)
                if not reply:
                    if not self.client.exists(self.record):
                        return  # expired, or lost with a Redis restart: nothing more will come
                    yield [StreamEvent("ping", {}, self.turn_id, seq)]
                    continue
                entries = reply[0][1]
                batch = [self._event(entry_id, fields) for entry_id, fields in entries]
                last_id, seq = _text(entries[-1][0]), batch[-1].seq
                yield batch
                if batch[-1].final:
                    return
        finally:
            with contextlib.suppress(redis.RedisError):
                self.client.srem(self.readers, reader)
                if not self.client.scard(self.readers):
                    self.client.hset(self.record, "unread_since", time.time())

    def unread_for(self, now_monotonic: float) -> float:
        """Seconds since the last reader on any live worker left (0 while someone reads); readers
        on a worker whose heartbeat stopped are dropped here, as if they had left now."""
        readers = {_text(r) for r in self.client.smembers(self.readers)}
        dead = [r for r in readers if not self.turns.alive(r.rsplit(":", 1)[0])]
        if dead:
            self.client.srem(self.readers, *dead)
            if len(dead) == len(readers):
                self.client.hset(self.record, "unread_since", time.time())
        if len(dead) < len(readers):
            return 0.0
        since = self.client.hget(self.record, "unread_since")
        return 0.0 if since is None else max(0.0, time.time() - float(since))


class RemoteTurn:
    """A turn as a reader on any worker sees it: its record and its log."""

    def __init__(self, turns: "RedisTurns", turn_id: str, record: dict):
        self.turns = turns
        self.id = turn_id
        self.user = record["user"]
        self.thread_id = record.get("thread_id") or None
        self.state = TurnState(record["status"])
        self.log = RedisTurnLog(turns, turn_id)

    @property
    def running(self) -> bool:
        return not self.state.ended

    def follow(self, after: int = -1, keepalive: float = 15.0) -> Iterator[list[StreamEvent]]:
        return self.log.follow(after, keepalive)

    def cancel(self) -> None:
        self.turns.client.publish(f"{self.turns.prefix}cancel", self.id)

    def decide(self, call_id: str, approved: bool) -> None:
        self.turns.client.publish(f"{self.turns.prefix}approve", json.dumps([self.id, call_id, approved]))


class RedisTurns(Turns):
    """The Turns directory for several workers (see the module docstring)."""

    def __init__(self, settings, client: redis.Redis, threads, prefix: str = "rill:"):
        super().__init__(settings)
        self.client = client
        self.threads = threads  # where a dead worker's turns are saved, interrupted
        self.prefix = prefix
        self.worker = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._append = client.register_script(APPEND)
        self._reserve = client.register_script(RESERVE)

    def start_background(self) -> None:
        """The reaper, the heartbeat (with the sweep for dead owners' turns), the listener for cancels and approvals."""
        if not self._started:
            super().start_background()
            spawn(self._heartbeat_forever)
            spawn(self._listen_for_controls)

    def open_log(self, turn_id: str) -> RedisTurnLog:
        return RedisTurnLog(self, turn_id)

    @contextlib.contextmanager
    def reserve(self, user: str, turn_id: str):
        """Take one of the user's running-turn slots in Redis, for every worker at once; given
        back if what follows (finding the session) refuses."""
        self.start_background()
        taken = self._reserve(args=[self.prefix, turn_id, user, self.worker, self.settings.max_concurrent_turns,
                                    time.time()])
        if taken == -1:
            raise Refused("turn_exists", f"turn {turn_id!r} already exists; choose another turn_id")
        if taken == 0:
            limit = self.settings.max_concurrent_turns
            raise Refused("too_many_turns",
                          f"{limit} replies are already running for you; wait for one to finish or cancel it")
        try:
            yield
        except BaseException:
            self._forget(turn_id, user)
            raise

    def add(self, turn) -> None:
        """What a worker needs to save the turn's reply if its owner dies: where it goes."""
        place = turn.place
        self.client.hset(f"{self.prefix}turn:{turn.id}", mapping={
            "thread_id": place.thread_id if place else "", "question_id": place.question_id if place else "",
            "reply_id": place.reply_id if place else "", "model": turn.model})
        super().add(turn)

    def running_in(self, user: str, thread_id: str) -> list[dict]:
        """Those of every worker."""
        found = []
        for turn_id in sorted(_text(t) for t in self.client.smembers(f"{self.prefix}running:{user}")):
            record = {_text(k): _text(v) for k, v in self.client.hgetall(f"{self.prefix}turn:{turn_id}").items()}
            if record.get("thread_id") == thread_id:
                found.append({"turn_id": turn_id, "question_id": record["question_id"], "reply_id": record["reply_id"]})
        return found

    def _forget(self, turn_id: str, user: str) -> None:
        with contextlib.suppress(redis.RedisError):
            pipe = self.client.pipeline()
            pipe.delete(f"{self.prefix}turn:{turn_id}", f"{self.prefix}turn:{turn_id}:readers")
            pipe.hdel(f"{self.prefix}running", turn_id)
            pipe.srem(f"{self.prefix}running:{user}", turn_id)
            pipe.execute()

    def write(self, turn_id: str, event: StreamEvent) -> bool:
        """Append one event (False if the log had already ended), retrying while Redis is away."""
        args = [self.prefix, turn_id, event.seq, event.kind, json.dumps(event.data, ensure_ascii=False),
                max(1, int(self.settings.turn_retention_seconds))]
        deadline = time.monotonic() + STORE_RETRY_SECONDS
        while True:
            try:
                return bool(self._append(args=args))
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def get(self, turn_id: str, user: str):
        local = super().get(turn_id, user)
        if local is not None and local.running:
            return local
        record = {_text(k): _text(v) for k, v in self.client.hgetall(f"{self.prefix}turn:{turn_id}").items()}
        if record.get("user") != user:
            return None
        return RemoteTurn(self, turn_id, record)

    def _heartbeat_forever(self) -> None:
        while True:
            try:
                self.client.set(f"{self.prefix}worker:{self.worker}", 1, ex=OWNER_TTL)
                self.sweep()
            except redis.RedisError as exc:
                log.warning("Redis heartbeat failed (%s); retrying", exc)
            except Exception:
                log.exception("sweeping dead workers' turns failed")
            time.sleep(HEARTBEAT)

    def sweep(self) -> None:
        """End the running turns of workers whose heartbeat stopped: `interrupted`, saved."""
        owners = {_text(k): _text(v) for k, v in self.client.hgetall(f"{self.prefix}running").items()}
        alive = {owner: self.alive(owner) for owner in set(owners.values())}
        for turn_id, owner in owners.items():
            if not alive[owner]:
                self._interrupt_orphan(turn_id)

    def alive(self, worker: str) -> bool:
        """Whether that worker's heartbeat is fresh (this one always is)."""
        return worker == self.worker or bool(self.client.exists(f"{self.prefix}worker:{worker}"))

    def _interrupt_orphan(self, turn_id: str) -> None:
        record_key = f"{self.prefix}turn:{turn_id}"
        if not self.client.exists(record_key) or not self.client.hsetnx(record_key, "ended_by", self.worker):
            return  # another worker is on it
        record = {_text(k): _text(v) for k, v in self.client.hgetall(record_key).items()}
        events = RedisTurnLog(self, turn_id).events
        if events and events[-1].final:
            return
        text = "".join(e.data["token"] for e in events if e.kind == "token")
        log.warning("turn %s: its worker %s stopped; ending it interrupted", turn_id, record.get("owner"))
        if record.get("thread_id"):
            try:
                self.threads.add_message(record["user"], record["thread_id"], record["question_id"], "assistant",
                                         reply_parts(text), id=record["reply_id"], status="interrupted",
                                         model=record.get("model"), turn_id=turn_id)
            except Refused as gone:  # the thread was deleted meanwhile
                log.info("turn %s: its reply is not saved: %s", turn_id, gone.message)
        error = interrupted("the worker writing this reply stopped; the partial reply is saved")
        final = Error(ErrorBody(error.type, error.message))
        self.write(turn_id, StreamEvent(final.kind, final.as_data(), turn_id, events[-1].seq + 1 if events else 0))

    def _listen_for_controls(self) -> None:
        """Cancels and approvals published by any worker; the owner acts on its own turns."""
        cancel, approve = f"{self.prefix}cancel", f"{self.prefix}approve"
        while True:
            try:
                pubsub = self.client.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(cancel, approve)
                for message in pubsub.listen():
                    if _text(message["channel"]) == cancel:
                        if (turn := self.by_id.get(_text(message["data"]))) is not None:
                            turn.cancel()
                    else:
                        turn_id, call_id, approved = json.loads(message["data"])
                        if (turn := self.by_id.get(turn_id)) is not None:
                            turn.decide(call_id, approved)
            except redis.RedisError as exc:
                log.warning("Redis control listener lost its connection (%s); reconnecting", exc)
                time.sleep(1.0)
